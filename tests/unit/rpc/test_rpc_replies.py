from __future__ import annotations

from typing import Any

from aovs.model import PortDetails
from aovs.rpc.server_replies import (
    FailedDevice,
    NoActiveBinding,
    UnknownDevice,
    device_list_result,
    devices_details,
    security_group_info,
    tunnel_endpoints,
)

GOOD: dict[str, Any] = {
    "device": "p1", "port_id": "p1", "network_id": "n1", "mac_address": "FA:16:3E:00:00:01",
    "admin_state_up": True, "network_type": "vxlan", "segmentation_id": 1001,
    "physical_network": None, "mtu": 1450,
    "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
    "device_owner": "compute:nova", "allowed_address_pairs": [], "port_security_enabled": True,
    "qos_policy_id": None, "qos_network_policy_id": None, "profile": {},
    "propagate_uplink_status": False,
}  # fmt: skip


def test_each_device_gets_a_typed_outcome() -> None:
    reply = {
        "devices": [
            GOOD,
            {"device": "unknown"},
            {"device": "elsewhere", "no_active_binding": True},
            {**GOOD, "device": "badmac", "mac_address": "zz:zz"},
            {**GOOD, "device": "badip", "fixed_ips": [{"ip_address": "10.0.0.300"}]},
            {**GOOD, "device": "geneveish", "network_type": "stt"},
            "garbage",
        ],
        "failed_devices": ["srvfail"],
    }
    requested = ["p1", "unknown", "elsewhere", "badmac", "badip", "geneveish", "srvfail", "lost"]
    details = devices_details(requested, reply)
    assert set(details.outcomes) == set(requested)
    port = details.outcomes["p1"]
    assert isinstance(port, PortDetails)
    assert port.mac_address == "fa:16:3e:00:00:01" and port.segment.is_tunnel and port.mtu == 1450
    assert details.outcomes["unknown"] == UnknownDevice("unknown")
    assert details.outcomes["elsewhere"] == NoActiveBinding("elsewhere")
    failed = details.failed
    assert set(failed) == {"badmac", "badip", "geneveish", "srvfail", "lost"}
    assert "mac_address" in failed["badmac"] and "not a MAC" in failed["badmac"]
    assert "fixed_ips" in failed["badip"]
    assert "network_type" in failed["geneveish"]
    assert failed["lost"] == "missing from the server's reply"
    assert details.ports.keys() == {"p1"}
    assert details.unknown == {"unknown"} and details.no_active_binding == {"elsewhere"}


def test_a_non_object_reply_fails_every_device() -> None:
    details = devices_details(["a", "b"], None)
    assert all(isinstance(o, FailedDevice) for o in details.outcomes.values())


def test_null_mtu_falls_back_to_the_default() -> None:
    details = devices_details(["p1"], {"devices": [{**GOOD, "mtu": None}]})
    assert details.ports["p1"].mtu == 1500


def test_update_device_list_result_splits_unknown_down() -> None:
    result = device_list_result(
        {
            "devices_up": ["a"],
            "failed_devices_up": ["b"],
            "devices_down": [{"device": "c", "exists": True}, {"device": "d", "exists": False}],
            "failed_devices_down": [],
        }
    )
    assert result.devices_up == ("a",) and result.failed_devices_up == ("b",)
    assert result.devices_down == ("c",) and result.unknown_down == ("d",)


def test_security_group_info_maps_direction_prefixes_to_remote_ip_prefix() -> None:
    reply = {
        "devices": {
            "p1": {
                "id": "p1", "device": "p1", "fixed_ips": ["10.0.0.5"], "security_groups": ["sg1"],
                "security_group_rules": [
                    {"direction": "ingress", "ethertype": "IPv4", "protocol": "udp",
                     "port_range_min": 68, "port_range_max": 68, "source_port_range_min": 67},
                ],
            }
        },
        "security_groups": {
            "sg1": [
                {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                 "port_range_min": 22, "port_range_max": 22, "source_ip_prefix": "10.1.0.0/16",
                 "stateful": True},
                {"direction": "egress", "ethertype": "IPv6", "dest_ip_prefix": "2001:db8::/32"},
                {"direction": "ingress", "ethertype": "IPv4", "remote_group_id": "sg1"},
                {"direction": "sideways"},
                {"direction": "ingress", "protocol": 6, "port_range_min": 99999},
            ]
        },
        "sg_member_ips": {"sg1": {"IPv4": ["10.0.0.5", ["10.0.0.6", "fa:16:3e:00:00:02"]],
                                  "IPv6": []}},
    }  # fmt: skip
    info = security_group_info(reply)
    assert info.devices == {"p1": ("sg1",)}
    rules = info.security_groups["sg1"].rules
    assert [r.remote_ip_prefix for r in rules] == ["10.1.0.0/16", "2001:db8::/32", None]
    assert rules[0].direction == "ingress" and rules[0].port_range_max == 22
    assert rules[2].remote_group_id == "sg1"
    assert len(info.problems) == 2 and all("sg1" in p for p in info.problems)
    assert info.member_ips["sg1"]["IPv4"] == {"10.0.0.5", "10.0.0.6"}


def test_tunnel_sync_reply() -> None:
    reply = {"tunnels": [{"ip_address": "192.0.2.1", "udp_port": 4789, "host": "c1"}, "junk"]}
    (tunnel,) = tunnel_endpoints(reply)
    assert tunnel.ip_address == "192.0.2.1" and tunnel.host == "c1" and tunnel.udp_port == 4789


def test_security_group_info_1_3_as_neutron_29_sends_address_groups() -> None:
    # security_group_info_for_ports at 1.3: members as [ip, mac] pairs, address groups' CIDRs
    # in sg_member_ips too, as [cidr, null] (neutron "aligns" them with remote groups)
    reply = {
        "devices": {
            "p1": {"id": "p1", "device": "p1", "fixed_ips": ["10.0.0.5"],
                   "security_groups": ["sg1"], "security_group_source_groups": ["sg1"],
                   "security_group_remote_address_groups": ["ag1"],
                   "security_group_rules": [{"direction": "ingress", "ethertype": "IPv4",
                                             "remote_address_group_id": "ag1"}]},
        },
        "security_groups": {
            "sg1": [
                {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                 "port_range_min": 22, "port_range_max": 22, "remote_address_group_id": "ag1",
                 "stateful": True},
                {"direction": "ingress", "ethertype": "IPv4", "remote_group_id": "sg1",
                 "stateful": True},
            ]
        },
        "sg_member_ips": {
            "sg1": {"IPv4": [["10.0.0.5", "fa:16:3e:00:00:05"]]},
            "ag1": {"IPv4": [["192.0.2.0/24", None]], "IPv6": [["2001:db8::/64", None]]},
        },
    }  # fmt: skip
    info = security_group_info(reply)
    ag_rule, sg_rule = info.security_groups["sg1"].rules
    assert ag_rule.remote_address_group_id == "ag1" and ag_rule.remote_ip_prefix is None
    assert sg_rule.remote_group_id == "sg1"
    assert info.member_ips["ag1"] == {"IPv4": {"192.0.2.0/24"}, "IPv6": {"2001:db8::/64"}}
    assert info.member_ips["sg1"]["IPv4"] == {"10.0.0.5"}
    assert not info.problems
