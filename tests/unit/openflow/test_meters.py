"""Meters: the Meter value and the meter instruction on the wire (encoded as os-ken does, decoded
back from a dump equal to what was built), and the plans around a bundle: what is added or
modified before it, deleted after it, and which flows are held back."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp
from test_flow_stats import reply, stats_entry

from aovs.openflow import codec
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flow_stats import FlowStatsDecoder
from aovs.openflow.flows import ApplyMeter, Flow, GotoTable, Match, Meter, Output, SetField
from aovs.openflow.meters import (
    decode_meter_config,
    decode_meter_mod,
    encode_meter_mod,
    held_back,
    meter_flags,
    meters_used,
    plan_meters,
)
from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import FlowModPlan

COOKIE = 0xABC
KBPS = Meter(30, "kbps", 1000, 800)
PPS = Meter(28, "pktps", 2000)


def metered(meter_id: int, table: int = 58, port: int = 7) -> Flow:
    return Flow(table, 100, Match(in_port=port), (ApplyMeter(meter_id), GotoTable(table + 1)))


def test_meter_values_are_checked() -> None:
    for bad in (
        lambda: Meter(1, "bps", 10),
        lambda: Meter(0, "kbps", 10),
        lambda: Meter(1, "kbps", 0),
        lambda: Meter(1, "kbps", 10, -1),
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="first"):
        Flow(58, 100, Match(in_port=1), (SetField("reg2", 1), ApplyMeter(5)))


@pytest.mark.parametrize(
    "actions",
    [
        (ApplyMeter(5), GotoTable(59)),
        (ApplyMeter(5),),
        (ApplyMeter(9), SetField("reg2", 1), Output(3, 0)),
    ],
)
def test_meter_instruction_encodes_as_osken_and_decodes_back(actions: tuple) -> None:  # type: ignore[type-arg]
    flow = Flow(58, 100, Match(in_port=3), actions)
    wire = FastEncoder().encode(flow, codec.ADD, COOKIE)
    assert wire == codec.encode_flow_mod(flow, codec.ADD, COOKIE)
    assert codec.decode_flow_mod(wire).replace(cookie=0) == flow
    # a dump of it (the struct decoder and os-ken's) is the flow that was built
    message = reply([stats_entry(flow, COOKIE)])
    (fast,) = FlowStatsDecoder(COOKIE).decode_reply(message)
    (osken,) = ofpp.OFPMultipartReply.parser(
        None, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(message), 7, message
    ).body
    assert fast == codec.decode_flow_stats(osken, COOKIE) == flow
    assert to_ofctl(flow).split("actions=")[1].startswith(f"meter:{actions[0].meter_id}")


def test_meter_mod_round_trip_and_flags() -> None:
    for meter in (KBPS, PPS, Meter(4, "pktps", 1, 1)):
        for command in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY):
            assert decode_meter_mod(encode_meter_mod(meter, command)) == (command, meter)
    assert meter_flags(KBPS) == ofp.OFPMF_KBPS | ofp.OFPMF_BURST
    assert meter_flags(PPS) == ofp.OFPMF_PKTPS  # no burst: no burst flag, as neutron


def config(flags: int, meter_id: int, *bands: object) -> object:
    return ofpp.OFPMeterConfigStats(flags=flags, meter_id=meter_id, bands=list(bands))


def test_meter_config_decodes_to_the_meter_or_to_none_when_aovs_never_makes_it() -> None:
    drop = ofpp.OFPMeterBandDrop(rate=1000, burst_size=800)
    burst = ofp.OFPMF_KBPS | ofp.OFPMF_BURST
    assert decode_meter_config(config(burst, 30, drop)) == KBPS
    # no burst flag: the band's burst is not ours
    assert decode_meter_config(config(ofp.OFPMF_KBPS, 30, drop)) == Meter(30, "kbps", 1000)
    remark = ofpp.OFPMeterBandDscpRemark(rate=10, burst_size=0, prec_level=1)
    assert decode_meter_config(config(burst, 30, remark)) is None
    assert decode_meter_config(config(burst, 30, drop, drop)) is None
    assert decode_meter_config(config(ofp.OFPMF_BURST, 30, drop)) is None  # no unit


def test_plan_adds_modifies_and_deletes_only_what_no_flow_uses() -> None:
    installed: dict[int, Meter | None] = {30: Meter(30, "kbps", 500, 400), 28: PPS, 8: None, 9: PPS}
    desired = {30: KBPS, 28: PPS, 8: Meter(8, "pktps", 5), 12: Meter(12, "kbps", 1)}
    plan = plan_meters(installed, desired, in_use={9})
    assert plan.add == [Meter(12, "kbps", 1)]
    assert plan.modify == [KBPS, Meter(8, "pktps", 5)]  # changed, and one we could not read
    assert plan.delete == []  # 9 is not desired but a flow still names it
    assert plan_meters(installed, desired).delete == [9]
    # nothing changed: nothing sent (an agent restart over the right meters)
    assert len(plan_meters({30: KBPS, 28: PPS}, {30: KBPS, 28: PPS})) == 0
    # a meter the switch refused is not sent again while it is the one desired
    assert plan_meters({}, {30: KBPS}, rejected={KBPS}).add == []
    assert plan_meters({}, {30: KBPS}, rejected={Meter(30, "kbps", 1)}).add == [KBPS]


def test_flows_naming_an_unusable_meter_are_held_back_from_the_bundle() -> None:
    ok, refused, plain = metered(28), metered(30, 59), Flow(0, 1, Match(in_port=2))
    plan = FlowModPlan(delete=[metered(8)], modify=[refused], add=[ok, plain])
    sent, kept = held_back(plan, lambda meter_id: meter_id == 28)
    assert sent.add == [ok, plain] and sent.modify == [] and sent.delete == plan.delete
    assert kept == [refused]
    same, none = held_back(plan, lambda meter_id: True)
    assert same is plan and none == []
    assert meters_used([ok, refused, plain]) == {28, 30}
