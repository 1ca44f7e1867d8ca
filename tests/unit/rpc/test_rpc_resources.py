"""neutron's resource pushes (versioned-object primitives) and the agent_state aovs reports."""

from __future__ import annotations

from typing import Any

import pytest

from aovs.agent.configurations import ovs_capabilities, reported_configurations
from aovs.config import AgentConfig
from aovs.rpc.resources import (
    CONSUMED_RESOURCES,
    address_group_push,
    resource_topic,
)


def _association(address: str, group: str = "ag-1") -> dict[str, Any]:
    return {
        "versioned_object.name": "AddressAssociation",
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.0",
        "versioned_object.data": {"address": address, "address_group_id": group},
    }


def _group(*addresses: str, group: str = "ag-1") -> dict[str, Any]:
    # the shape neutron 29's AddressGroup.obj_to_primitive() sends
    return {
        "versioned_object.name": "AddressGroup",
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.2",
        "versioned_object.data": {
            "id": group, "name": "office", "project_id": "p", "shared": False,
            "revision_number": 4,
            "description": "", "addresses": [_association(a, group) for a in addresses],
        },
        "versioned_object.changes": ["addresses"],
    }  # fmt: skip


def test_address_group_push_parses_normalised_cidrs_by_ethertype() -> None:
    push = address_group_push(
        {"resource_list": [_group("192.0.2.7/24", "2001:db8::1/128")], "event_type": "updated"}
    )
    (group,) = push.groups
    assert push.event_type == "updated" and group.id == "ag-1" and group.revision == 4
    assert group.by_ethertype() == {
        "IPv4": frozenset({"192.0.2.0/24"}),
        "IPv6": frozenset({"2001:db8::1/128"}),
    }


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"resource_list": [_group("10.0.0.0/8")], "event_type": "exploded"}, "event_type"),
        ({"event_type": "updated"}, "resource_list"),
        ({"resource_list": [{"versioned_object.name": "Port"}], "event_type": "updated"},
         "not a AddressGroup"),
        ({"resource_list": [_group("not-an-ip")], "event_type": "updated"}, "no CIDR"),
        ({"resource_list": ["junk"], "event_type": "updated"}, "primitive is a str"),
    ],
)  # fmt: skip
def test_malformed_pushes_raise_one_line(args: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        address_group_push(args)


def test_topics_follow_neutrons_pattern() -> None:
    assert resource_topic("AddressGroup", CONSUMED_RESOURCES["AddressGroup"]) == (
        "neutron-vo-AddressGroup-1.2"
    )


def test_reported_configurations_carry_every_key_neutrons_agent_sends() -> None:
    config = AgentConfig.model_validate(
        {"host": "h1", "ovs": {"local_ip": "127.0.0.11", "bridge_mappings": ["physnet1:br-phys"],
                                "datapath_type": "netdev"},
         "agent": {"tunnel_types": ["vxlan"], "l2_population": True, "arp_responder": True}}
    )  # fmt: skip
    caps = ovs_capabilities(
        {"datapath_types": frozenset({"system", "netdev"}), "iface_types": frozenset({"vxlan"})}
    )
    reported = reported_configurations(config, firewall_driver="openvswitch", capabilities=caps)
    neutron_29_keys = {
        "bridge_mappings", "resource_provider_bandwidths",
        "resource_provider_inventory_defaults",
        "resource_provider_packet_processing_without_direction",
        "resource_provider_packet_processing_with_direction",
        "resource_provider_packet_processing_inventory_defaults",
        "resource_provider_hypervisors", "integration_bridge", "tunnel_types", "tunneling_ip",
        "l2_population", "arp_responder_enabled", "enable_distributed_routing",
        "log_agent_heartbeats", "extensions", "datapath_type", "ovs_capabilities",
        "vhostuser_socket_dir", "ovs_hybrid_plug", "baremetal_smartnic", "in_distributed_mode",
    }  # fmt: skip
    assert neutron_29_keys <= set(reported)
    assert reported["tunneling_ip"] == "127.0.0.11"
    assert reported["bridge_mappings"] == {"physnet1": "br-phys"}
    assert reported["tunnel_types"] == ["vxlan"] and reported["l2_population"] is True
    assert reported["arp_responder_enabled"] is True
    assert reported["datapath_type"] == "netdev" and reported["ovs_hybrid_plug"] is False
    assert reported["ovs_capabilities"] == {"datapath_types": ["netdev", "system"],
                                            "iface_types": ["vxlan"]}  # fmt: skip
