"""Rules aovs cannot honour deny their traffic; address groups admit exactly their CIDRs.

Security groups only allow, so a dropped rule denies. The danger is the opposite: a rule parsed
without one of its narrowing fields admits more than asked (before this, a rule with
``remote_address_group_id`` lost its remote and admitted every source).
"""

from __future__ import annotations

from typing import Any

import pytest
from fw_scenarios import make_port

from aovs.firewall import SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import SecurityGroup
from aovs.openflow.flows import Conjunction, Flow
from aovs.rpc.server_replies import UnhonouredRule, security_group_info, security_group_rule

AG = "ag-0001"
SG = "sg-0001"


def _accepting_ingress(flows: frozenset[Flow]) -> list[Flow]:
    """Table-82 flows that admit traffic on their own (not a conjunction clause)."""
    return [
        f
        for f in flows
        if f.table == 82
        and 70 <= f.priority <= 77
        and not any(isinstance(a, Conjunction) for a in f.actions)
        and f.match.get("conj_id") is None
    ]


def _flows(wire_rule: dict[str, Any], members: dict[str, dict[str, frozenset[str]]]) -> Any:
    reply = {
        "devices": {"port-1": {"security_groups": [SG]}},
        "security_groups": {SG: [wire_rule]},
        "sg_member_ips": {},
    }
    info = security_group_info(reply)
    sgs = SecurityGroupState(info.security_groups, members)
    driver = OVSFirewall()
    port = make_port(1, (SG,))
    ports = {"port-1": port}
    return info, driver.port_flows(port, sgs), driver.shared_flows(ports, sgs)


def test_a_remote_address_group_rule_keeps_its_remote() -> None:
    rule = security_group_rule(
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
         "port_range_max": 22, "remote_address_group_id": AG}
    )  # fmt: skip
    assert rule.remote_address_group_id == AG and rule.remote_id == AG
    assert rule.remote_ip_prefix is None and rule.remote_group_id is None


def test_address_group_rule_admits_only_the_groups_cidrs() -> None:
    wire = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22, "remote_address_group_id": AG}  # fmt: skip
    members = {AG: {"IPv4": frozenset({"192.0.2.0/24", "198.51.100.7/32"}), "IPv6": frozenset()}}
    _, port_flows, shared = _flows(wire, members)
    # no flow admits tcp/22 by itself: only the conjunction of port side and member side
    assert not _accepting_ingress(port_flows)
    sources = {f.match.get("ipv4_src") for flows in shared.values() for f in flows}
    assert sources == {("192.0.2.0", "255.255.255.0"), "198.51.100.7"}


def test_address_group_with_no_known_addresses_admits_nobody() -> None:
    wire = {"direction": "ingress", "ethertype": "IPv4", "remote_address_group_id": AG}
    _, port_flows, shared = _flows(wire, {})
    assert not _accepting_ingress(port_flows)
    assert not any(shared.values())


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        # fields aovs does not enforce: the rule is dropped, never widened
        ({"direction": "ingress", "protocol": "udp", "port_range_min": 68,
          "source_port_range_min": 67}, "source_port_range_min"),
        ({"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_mac": "x"},
         "remote_mac"),
        # two remotes at once: ambiguous
        ({"direction": "ingress", "remote_group_id": SG, "remote_address_group_id": AG},
         "more than one"),
        ({"direction": "ingress", "source_ip_prefix": "10.0.0.0/8", "remote_group_id": SG},
         "more than one"),
        # malformed values
        ({"direction": "sideways"}, "direction"),
        ({"direction": "ingress", "protocol": "tcp", "port_range_min": 70000}, "port_range_min"),
        ({"direction": "ingress", "source_ip_prefix": "10.0.0.300/8"}, "remote_ip_prefix"),
        ({"direction": "ingress", "ethertype": "IPv5"}, "ethertype"),
    ],
)  # fmt: skip
def test_a_rule_that_cannot_be_honoured_is_dropped_and_said(wire: dict[str, Any], why: str) -> None:
    info, port_flows, _ = _flows(wire, {})
    assert info.security_groups[SG].rules == ()
    (problem,) = info.problems
    assert why in problem and SG in problem
    assert not _accepting_ingress(port_flows)


def test_unknown_field_raises_its_own_error() -> None:
    with pytest.raises(UnhonouredRule, match="future_field"):
        security_group_rule({"direction": "egress", "future_field": 1})


def test_descriptive_fields_do_not_drop_a_rule() -> None:
    rule = security_group_rule(
        {"direction": "egress", "ethertype": "IPv6", "id": "r1", "security_group_id": SG,
         "project_id": "p", "description": "any out", "normalized_cidr": None,
         "belongs_to_default_sg": True, "stateful": False}
    )  # fmt: skip
    assert rule.direction == "egress" and rule.ethertype == "IPv6" and not rule.stateful


def test_unknown_protocol_is_skipped_by_the_driver_and_admits_nothing() -> None:
    quic = security_group_rule({"direction": "ingress", "protocol": "quic"})
    sgs = SecurityGroupState({SG: SecurityGroup(id=SG, rules=(quic,))})
    flows = OVSFirewall().port_flows(make_port(1, (SG,)), sgs)
    assert not _accepting_ingress(flows)
