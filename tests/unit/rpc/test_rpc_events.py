from __future__ import annotations

import pytest

from aovs.model import FdbEntry
from aovs.rpc import events


def test_port_update_keeps_the_segment_and_the_raw_port() -> None:
    event = events.port_update(
        {"port": {"id": "p1", "admin_state_up": False}, "network_type": "vlan",
         "segmentation_id": 101, "physical_network": "physnet1"}
    )  # fmt: skip
    assert event.port_id == "p1" and event.segmentation_id == 101
    assert event.port["admin_state_up"] is False


def test_l2pop_add_entries_with_flooding_entry() -> None:
    event = events.add_fdb_entries(
        {"fdb_entries": {"net1": {"segment_id": 1001, "network_type": "vxlan", "ports": {
            "192.0.2.7": [["00:00:00:00:00:00", "0.0.0.0"], ["FA:16:3E:00:00:09", "10.0.0.9"]]}}}}
    )  # fmt: skip
    (network,) = event.networks
    assert network.network_id == "net1" and network.segment_id == 1001
    entries = network.ports["192.0.2.7"]
    assert entries[0] == events.FLOODING_ENTRY
    assert entries[1] == FdbEntry(mac_address="fa:16:3e:00:00:09", ip_address="10.0.0.9")


def test_l2pop_update_chg_ip() -> None:
    event = events.update_fdb_entries(
        {"fdb_entries": {"chg_ip": {"net1": {"192.0.2.7": {
            "before": [["fa:16:3e:00:00:09", "10.0.0.9"]],
            "after": [["fa:16:3e:00:00:09", "10.0.0.19"]]}}}}}
    )  # fmt: skip
    (change,) = event.changes
    assert change.agent_ip == "192.0.2.7"
    assert change.before[0].ip_address == "10.0.0.9" and change.after[0].ip_address == "10.0.0.19"


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("port_update", {"port": "p1"}),
        ("port_delete", {}),
        ("network_delete", {"network_id": 5}),
        ("security_groups_rule_updated", {"security_groups": "sg1"}),
        ("add_fdb_entries", {"fdb_entries": {"n": {"ports": {"ip": [["mac"]]}}}}),
        ("update_fdb_entries", {"fdb_entries": {"chg_mac": {}}}),
        ("tunnel_update", {"tunnel_ip": None}),
        ("add_fdb_entries", {"fdb_entries": {"n": {"segment_id": "x", "ports": {}}}}),
        ("binding_activate", {"port_id": "p1"}),
        ("binding_deactivate", {"host": "h1"}),
        ("network_update", {"network": {"name": "no id"}}),
        ("security_groups_provider_updated", {"devices_to_update": "p1"}),
    ],
)
def test_malformed_arguments_raise_value_error(method: str, args: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        events.PARSERS[method](args)


def test_live_migration_bindings_name_port_and_host() -> None:
    # AgentNotifierApi 1.5 casts these on q-agent-notifier-binding-(de)activate
    activate = events.binding_activate({"port_id": "p1", "host": "dest"})
    deactivate = events.binding_deactivate({"port_id": "p1", "host": "src"})
    assert (activate.port_id, activate.host) == ("p1", "dest")
    assert (deactivate.port_id, deactivate.host) == ("p1", "src")


def test_network_update_and_provider_update_shapes() -> None:
    update = events.network_update({"network": {"id": "n1", "mtu": 1400}})
    assert update.network_id == "n1" and update.network["mtu"] == 1400
    assert events.security_groups_provider_updated({"devices_to_update": None}).devices is None
    provider = events.security_groups_provider_updated({"devices_to_update": ["p1"]})
    assert provider.devices == ("p1",)
