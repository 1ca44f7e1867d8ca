"""The ``trunk`` extension's pure parts: neutron's names, the ports a trunk needs, what OVSDB's
trunk bridges hold."""

from __future__ import annotations

import json

from aovs.extensions.base import AgentExtension, load_extensions
from aovs.extensions.trunk import (
    ACTIVE,
    DEGRADED,
    IfaceView,
    TrunkBridge,
    TrunkExtension,
    is_service_port,
    observed_bridges,
    parent_pair,
    subport_pair,
    tap_metadata,
    trunk_bridge_name,
    trunk_status,
    wanted_ports,
)
from aovs.rpc.resources import SubPortValue, TrunkValue, consumed_resources

TRUNK_ID = "11111111-2222-4333-8444-555555555555"
PARENT = "aaaaaaaa-2222-4333-8444-555555555555"
SUB1 = "bbbbbbbb-2222-4333-8444-555555555555"
SUB2 = "cccccccc-2222-4333-8444-555555555555"


def test_names_are_neutrons() -> None:
    # gen_trunk_br_name: 14 characters; get_br_int_port_name / get_br_trunk_port_name: 15
    assert trunk_bridge_name(TRUNK_ID) == "tbr-11111111-2"
    pair = parent_pair(PARENT, "fa:16:3e:00:00:01")
    assert (pair.int_name, pair.trunk_name) == ("tpi-aaaaaaaa-22", "tpt-aaaaaaaa-22")
    sub = subport_pair(SUB1, "fa:16:3e:00:00:02", 101)
    assert (sub.int_name, sub.trunk_name, sub.tag) == ("spi-bbbbbbbb-22", "spt-bbbbbbbb-22", 101)
    assert sub.external_ids == {"iface-id": SUB1, "attached-mac": "fa:16:3e:00:00:02"}
    assert parent_pair(PARENT, None).external_ids == {"iface-id": PARENT}
    assert all(is_service_port(n) for n in ("tbr-x", "tpt-x", "tpi-x", "spt-x", "spi-x"))
    assert not is_service_port("tapaaaaaaaa-22")


def test_wanted_ports_patch_the_parent_and_the_bound_vlan_subports() -> None:
    value = TrunkValue(TRUNK_ID, PARENT, (
        SubPortValue(SUB1, TRUNK_ID, "vlan", 101),
        SubPortValue(SUB2, TRUNK_ID, "vlan", 102),
    ))  # fmt: skip
    pairs = wanted_ports(value, "fa:16:3e:00:00:01", {SUB1: "fa:16:3e:00:00:02"})
    # SUB2 is not bound here (the server answered no MAC for it): not patched
    assert pairs == (parent_pair(PARENT, "fa:16:3e:00:00:01"),
                     subport_pair(SUB1, "fa:16:3e:00:00:02", 101))  # fmt: skip
    inherit = TrunkValue(TRUNK_ID, PARENT, (SubPortValue(SUB2, TRUNK_ID, "inherit", 7),))
    assert wanted_ports(inherit, None, {SUB2: "m"}) == (parent_pair(PARENT, None),)
    assert trunk_status(2, 1) == DEGRADED and trunk_status(1, 1) == ACTIVE


def test_observed_bridges_find_the_vm_port_and_service_ports() -> None:
    bridges = {"br-int": ["p-int"], "tbr-11111111-2": ["p-br", "p-tap", "p-tpt"],
               "tbr-empty": ["p-br2"]}  # fmt: skip
    ports = {
        "p-int": ("br-int", ["i-int"]),
        "p-br": ("tbr-11111111-2", ["i-br"]),
        "p-tap": ("tapaaaaaaaa-22", ["i-tap"]),
        "p-tpt": ("tpt-aaaaaaaa-22", ["i-tpt"]),
        "p-br2": ("tbr-empty", ["i-br2"]),
    }
    ifaces = {
        "i-tap": IfaceView("tapaaaaaaaa-22", {"iface-id": PARENT, "attached-mac": "m1"}),
        "i-tpt": IfaceView("tpt-aaaaaaaa-22", {"iface-id": PARENT}),
        "i-br": IfaceView("tbr-11111111-2", {}),
    }
    found = observed_bridges(bridges, ports, ifaces)
    assert found == {
        "tbr-11111111-2": TrunkBridge("tbr-11111111-2", "tapaaaaaaaa-22", PARENT, "m1",
                                       frozenset({"tpt-aaaaaaaa-22"})),
        "tbr-empty": TrunkBridge("tbr-empty", None, None, None, frozenset()),
    }  # fmt: skip


def test_tap_metadata_is_neutrons() -> None:
    meta = tap_metadata("tbr-11111111-2", TRUNK_ID, [SUB2, SUB1])
    assert meta["bridge_name"] == "tbr-11111111-2" and meta["trunk_id"] == TRUNK_ID
    assert json.loads(meta["subport_ids"]) == [SUB1, SUB2]


def test_the_extension_is_built_in_and_consumes_trunks() -> None:
    (extension,) = load_extensions(["trunk"])
    assert isinstance(extension, TrunkExtension) and isinstance(extension, AgentExtension)
    assert consumed_resources(extension.resource_types) == {
        "AddressGroup": "1.2", "Trunk": "1.1", "SubPort": "1.0"}  # fmt: skip
    assert extension.interface_columns == {}
