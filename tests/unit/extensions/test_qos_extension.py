"""The qos agent extension: each rule type's flows and Interface columns (pure functions)."""

from __future__ import annotations

import pytest

from aovs.extensions.base import ExtensionPort, PortContribution
from aovs.extensions.qos import (
    DSCP_PRIORITY,
    SLOT_EGRESS_PPS,
    SLOT_INGRESS_KBPS,
    SLOT_INGRESS_PPS,
    QosExtension,
    dscp_flows,
    egress_policing,
    policy_contribution,
    rule_contribution,
)
from aovs.model import PortDetails
from aovs.openflow import codec
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flows import (
    ApplyMeter,
    Flow,
    GotoTable,
    Match,
    Meter,
    RegLoad,
    Resubmit,
    SetField,
    vid,
)
from aovs.openflow.ofctl_text import to_ofctl
from aovs.pipelines import tables
from aovs.rpc.resources import (
    QOS_POLICY,
    QosPolicyPush,
    QosPolicyValue,
    QosRuleValue,
    ResourceCache,
)

POLICY = "11111111-2222-3333-4444-555555555555"


def port(policy: str | None = POLICY, ofport: int = 7) -> ExtensionPort:
    details = PortDetails.model_validate({
        "device": "p-1", "port_id": "p-1", "network_id": "net-a",
        "mac_address": "fa:16:3e:00:00:01", "network_type": "vxlan", "segmentation_id": 1001,
        "qos_policy_id": policy,
    })  # fmt: skip
    return ExtensionPort("p-1", "tapp-1", ofport, details, local_vlan=3)


def bw(kbps: int | None, burst: int | None = None, direction: str = "egress") -> QosRuleValue:
    return QosRuleValue("r-bw", "bandwidth_limit", direction, max_kbps=kbps, max_burst_kbps=burst)


def dscp(mark: int) -> QosRuleValue:
    return QosRuleValue("r-dscp", "dscp_marking", dscp_mark=mark)


def test_dscp_marking_is_neutrons_two_table_0_flows() -> None:
    flows = dscp_flows(7, 26)
    assert {f.match.get("eth_type") for f in flows} == {0x0800, 0x86DD}
    for flow in flows:
        assert (flow.table, flow.priority) == (tables.LOCAL_SWITCHING, DSCP_PRIORITY) == (0, 65535)
        assert flow.match.get("in_port") == 7 and flow.match.get("reg2") == 0
        assert flow.actions == (SetField("reg2", 1), SetField("ip_dscp", 26), Resubmit(0))


def test_dscp_flows_encode_as_os_ken_does() -> None:
    encoder = FastEncoder()
    for flow in dscp_flows(7, 46):
        for command in (codec.ADD, codec.DELETE_STRICT):
            wire = encoder.encode(flow, command, 1)
            assert wire == codec.encode_flow_mod(flow, command, 1)
        decoded = codec.decode_flow_mod(encoder.encode(flow, codec.ADD, 1))
        assert decoded.replace(cookie=0) == flow


@pytest.mark.parametrize(
    ("kbps", "burst", "columns"),
    [
        (1000, 800, {"ingress_policing_rate": 1000, "ingress_policing_burst": 800}),
        (1000, None, {"ingress_policing_rate": 1000, "ingress_policing_burst": 800}),  # 80 %
        (2500, 0, {"ingress_policing_rate": 2500, "ingress_policing_burst": 2000}),
        (0, 100, {}),  # no rate: no limit
        (None, None, {}),
    ],
)
def test_egress_bandwidth_limit_is_the_interfaces_policing(
    kbps: int | None, burst: int | None, columns: dict[str, int]
) -> None:
    assert egress_policing(bw(kbps, burst)) == columns
    assert rule_contribution(port(), bw(kbps, burst)) == PortContribution(interface=columns)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            QosRuleValue("r-min", "minimum_bandwidth", "egress", min_kbps=10),
            "minimum_bandwidth egress rule r-min: only on vlan/flat networks",  # port: vxlan
        ),
        (
            QosRuleValue("r-pps", "packet_rate_limit", "any", max_kpps=5),
            "packet_rate_limit any rule r-pps: not supported",
        ),
        (
            QosRuleValue("r-pps", "packet_rate_limit", "egress", max_kpps=0),
            "packet_rate_limit rule r-pps: no max_kpps",
        ),
        (QosRuleValue("r-new", "FancyNew", "egress"), "FancyNew egress rule r-new"),
        (QosRuleValue("r-bad", "dscp_marking"), "dscp_marking rule r-bad: no valid mark"),
    ],
)
def test_rules_the_agent_cannot_apply_are_reported(rule: QosRuleValue, problem: str) -> None:
    contribution = rule_contribution(port(), rule)
    assert not contribution.flows and not contribution.interface
    (line,) = contribution.problems
    assert line.startswith(problem)


def test_minimum_packet_rate_is_placement_only_as_in_neutron() -> None:
    rule = QosRuleValue("r-mpps", "minimum_packet_rate", "any", min_kpps=1000)
    assert rule_contribution(port(), rule) == PortContribution()


def test_a_policy_is_the_union_of_its_rules() -> None:
    pps_any = QosRuleValue("r-pps", "packet_rate_limit", "any", max_kpps=5)
    ingress = bw(5, direction="ingress")
    policy = QosPolicyValue(POLICY, (bw(1000, 100), dscp(10), ingress, pps_any))
    got = policy_contribution(port(ofport=9), policy)
    assert got.flows == dscp_flows(9, 10) | rule_contribution(port(ofport=9), ingress).flows
    assert got.meters == {Meter(9 * 4 + SLOT_INGRESS_KBPS, "kbps", 5, 4)}
    assert got.interface == {"ingress_policing_rate": 1000, "ingress_policing_burst": 100}
    assert got.needs == {(QOS_POLICY, POLICY)}
    assert len(got.problems) == 1 and "any" in got.problems[0]


def pps(kpps: int, burst: int | None = None, direction: str = "egress") -> QosRuleValue:
    return QosRuleValue("r-pps", "packet_rate_limit", direction, max_kpps=kpps,
                        max_burst_kpps=burst)  # fmt: skip


def by_table(flows: frozenset[Flow]) -> dict[int, list[Flow]]:
    tables_of: dict[int, list[Flow]] = {}
    for flow in sorted(flows, key=lambda f: (f.table, f.priority)):
        tables_of.setdefault(flow.table, []).append(flow)
    return tables_of


def test_ingress_bandwidth_limit_is_a_kbps_meter_on_the_ports_vlan_and_mac() -> None:
    got = rule_contribution(port(ofport=7), bw(1000, None, "ingress"))
    meter = Meter(7 * 4 + SLOT_INGRESS_KBPS, "kbps", 1000, 800)  # burst: 80 % as egress
    assert got.meters == {meter} and not got.interface and not got.problems
    flows = by_table(got.flows)
    to_port = Match(vlan_vid=vid(3), eth_dst="fa:16:3e:00:00:01")
    (metering,) = flows[tables.BANDWIDTH_RATE_LIMIT]
    assert (metering.priority, metering.match) == (100, to_port)  # neutron's
    assert metering.actions == (ApplyMeter(meter.id), GotoTable(tables.TRANSIENT_TABLE))
    (divert,) = flows[tables.TRANSIENT_TABLE]
    assert divert.match == Match(vlan_vid=vid(3), eth_dst="fa:16:3e:00:00:01", reg2=(0, 2))
    assert divert.priority > 100  # before the openvswitch firewall's table 60 flows
    assert divert.actions == (RegLoad("reg2", 1, 1, 1), Resubmit(tables.PACKET_RATE_LIMIT))
    assert set(flows) == {tables.BANDWIDTH_RATE_LIMIT, tables.TRANSIENT_TABLE}
    assert rule_contribution(port(), bw(0, 10, "ingress")) == PortContribution()  # no limit


@pytest.mark.parametrize(
    ("direction", "slot", "match"),
    [
        ("egress", SLOT_EGRESS_PPS, Match(in_port=7)),
        ("ingress", SLOT_INGRESS_PPS, Match(vlan_vid=vid(3), eth_dst="fa:16:3e:00:00:01")),
    ],
)
def test_packet_rate_limit_is_a_pktps_meter_in_table_58(
    direction: str, slot: int, match: Match
) -> None:
    got = rule_contribution(port(ofport=7), pps(2, 1, direction))
    meter = Meter(7 * 4 + slot, "pktps", 2000, 1000)  # kpps * 1000, as neutron
    assert got.meters == {meter}
    flows = by_table(got.flows)
    (metering,) = flows[tables.PACKET_RATE_LIMIT]
    assert (metering.priority, metering.match) == (100, match)
    assert metering.actions == (ApplyMeter(meter.id), GotoTable(tables.BANDWIDTH_RATE_LIMIT))
    (divert,) = flows[tables.TRANSIENT_TABLE]
    assert divert.actions[-1] == Resubmit(tables.PACKET_RATE_LIMIT)
    no_burst = rule_contribution(port(ofport=7), pps(3, None, direction))
    assert no_burst.meters == {Meter(7 * 4 + slot, "pktps", 3000, 0)}


def test_meters_of_ports_and_kinds_never_share_an_id() -> None:
    ids = [
        meter.id
        for ofport in (1, 2, 3, 65535)
        for rule in (pps(1), pps(1, direction="ingress"), bw(10, direction="ingress"))
        for meter in rule_contribution(port(ofport=ofport), rule).meters
    ]
    assert len(ids) == len(set(ids)) == 12
    assert max(ids) < 262144  # ovs-vswitchd's max_meter (userspace datapath)


def test_metered_flows_encode_decode_and_render() -> None:
    encoder = FastEncoder()
    policy = QosPolicyValue(POLICY, (pps(2, 1), pps(3, None, "ingress"), bw(9, 9, "ingress")))
    got = policy_contribution(port(), policy)
    assert len(got.meters) == 3 and len(got.flows) == 5  # 2 diverts, 3 meter flows
    for flow in got.flows:
        wire = encoder.encode(flow, codec.ADD, 1)
        assert wire == codec.encode_flow_mod(flow, codec.ADD, 1)
        assert codec.decode_flow_mod(wire).replace(cookie=0) == flow
    text = {to_ofctl(flow) for flow in got.flows}
    assert any("actions=meter:28,goto_table:59" in line for line in text), text


def test_extension_without_policy_contributes_nothing() -> None:
    assert not QosExtension().port_contribution(port(policy=None), ResourceCache())


def test_extension_asks_for_an_unknown_policy_then_applies_it() -> None:
    cache = ResourceCache()
    waiting = QosExtension().port_contribution(port(), cache)
    assert waiting == PortContribution(needs=frozenset({(QOS_POLICY, POLICY)}))
    cache.apply(QosPolicyPush("updated", (QosPolicyValue(POLICY, (dscp(26),), 3),)))
    applied = QosExtension().port_contribution(port(), cache)
    assert applied.flows == dscp_flows(7, 26)
    cache.apply(QosPolicyPush("updated", (QosPolicyValue(POLICY, (), 4),)))  # rules removed
    assert QosExtension().port_contribution(port(), cache).flows == frozenset()


def test_dscp_flow_of_one_port_never_matches_another() -> None:
    ours = {f.key for f in dscp_flows(7, 26)}
    theirs = {f.key for f in dscp_flows(8, 26)}
    assert not ours & theirs
    assert Match(in_port=7, reg2=0, eth_type=0x0800) in {k[2] for k in ours}
