"""br-tun's pure flows: neutron's tables, priorities and matches (see also the trace tests)."""

from __future__ import annotations

import pytest

from aovs.model import NetworkSegment
from aovs.openflow.flows import (
    OFPP_IN_PORT,
    Flow,
    GotoTable,
    Learn,
    LearnMatch,
    Match,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    vid,
)
from aovs.pipelines import br_tun, tables


def segment(kind: str = "vxlan", seg: int | None = 1000) -> NetworkSegment:
    return NetworkSegment(network_id="n", network_type=kind, segmentation_id=seg)


def by_table(flows: frozenset[Flow]) -> dict[int, list[Flow]]:
    result: dict[int, list[Flow]] = {}
    for flow in flows:
        result.setdefault(flow.table, []).append(flow)
    return result


def test_base_splits_patch_traffic_and_drops_the_rest() -> None:
    flows = by_table(br_tun.base_flows(patch_int_ofport=7, arp_responder=False))
    table0 = {f.match: f.actions for f in flows[0]}
    assert table0[Match(in_port=7)] == (GotoTable(tables.PATCH_LV_TO_TUN),)
    assert table0[Match()] == ()  # default drop
    split = {f.match.get("eth_dst"): f.actions[-1] for f in flows[tables.PATCH_LV_TO_TUN]}
    assert split == {
        ("00:00:00:00:00:00", "01:00:00:00:00:00"): GotoTable(tables.UC_TO_TUN),
        ("01:00:00:00:00:00", "01:00:00:00:00:00"): GotoTable(tables.FLOOD_TO_TUN),
    }
    for table in (tables.GRE_TUN_TO_LV, tables.VXLAN_TUN_TO_LV, tables.GENEVE_TUN_TO_LV):
        assert flows[table] == [Flow(table, 0)]
    assert tables.ARP_RESPONDER not in flows
    assert flows[tables.UC_TO_TUN] == [
        Flow(tables.UC_TO_TUN, 0, actions=(GotoTable(tables.FLOOD_TO_TUN),))
    ]
    assert flows[tables.FLOOD_TO_TUN] == [Flow(tables.FLOOD_TO_TUN, 0)]


def test_learning_writes_table_20_and_outputs_to_patch_int() -> None:
    (learn_flow,) = by_table(br_tun.base_flows(7, False))[tables.LEARN_FROM_TUN]
    learn, output = learn_flow.actions
    assert isinstance(learn, Learn)
    assert learn.table == tables.UC_TO_TUN and learn.hard_timeout == 300
    assert output == Output(7, 0)
    matched = {spec.dst for spec in learn.specs if isinstance(spec, LearnMatch)}
    assert matched == {"vlan_tci", "eth_dst"}


def test_arp_responder_adds_the_broadcast_arp_detour_and_its_miss() -> None:
    without = br_tun.base_flows(7, False)
    with_arp = br_tun.base_flows(7, True)
    added = by_table(with_arp - without)
    (detour,) = added[tables.PATCH_LV_TO_TUN]
    assert detour.priority == 1
    assert detour.match == Match(eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806)
    assert detour.actions == (GotoTable(tables.ARP_RESPONDER),)
    assert added[tables.ARP_RESPONDER] == [
        Flow(tables.ARP_RESPONDER, 0, actions=(GotoTable(tables.FLOOD_TO_TUN),))
    ]


@pytest.mark.parametrize(("kind", "table"), [("vxlan", 4), ("gre", 3)])
def test_tunnel_id_becomes_the_local_vlan_then_learns(kind: str, table: int) -> None:
    (flow,) = br_tun.network_flows(segment(kind, 77), local_vlan=5)
    assert (flow.table, flow.priority, flow.match) == (table, 1, Match(tunnel_id=77))
    assert flow.actions == (PushVlan(), SetField("vlan_vid", vid(5)), GotoTable(10))
    (port_flow,) = br_tun.tunnel_port_flows(kind, 9)
    assert port_flow == Flow(0, 1, Match(in_port=9), (GotoTable(table),))


@pytest.mark.parametrize(
    ("kind", "seg"), [("vxlan", None), ("vxlan", 0), ("vxlan", 1 << 24), ("gre", 1 << 32)]
)
def test_bad_tunnel_ids_are_refused_with_a_reason(kind: str, seg: int | None) -> None:
    with pytest.raises(ValueError, match="segmentation_id"):
        br_tun.network_flows(segment(kind, seg), 5)


def test_gre_keys_may_use_32_bits_and_vlan_is_not_a_tunnel() -> None:
    assert br_tun.network_flows(segment("gre", (1 << 32) - 1), 5)
    with pytest.raises(ValueError, match="not a tunnel"):
        br_tun.tunnel_table("vlan")


def test_flood_pops_sets_the_id_and_outputs_in_a_stable_order() -> None:
    (flow,) = br_tun.flood_flows(5, 1000, [12, 3, 12, 8])
    assert flow.match == Match(vlan_vid=vid(5)) and flow.priority == 1
    assert flow.actions == (PopVlan(), SetField("tunnel_id", 1000),
                            Output(3, 0), Output(8, 0), Output(12, 0))  # fmt: skip
    assert br_tun.flood_flows(5, 1000, []) == frozenset()


def test_unicast_beats_learned_entries() -> None:
    flow = br_tun.unicast_flow(5, 1000, 3, "FA:16:3E:00:00:01")
    assert flow.priority > 1  # learned flows are priority 1
    assert flow.match == Match(vlan_vid=vid(5), eth_dst="fa:16:3e:00:00:01")
    assert flow.actions == (PopVlan(), SetField("tunnel_id", 1000), Output(3, 0))


def test_arp_reply_is_built_in_place_and_sent_back() -> None:
    flow = br_tun.arp_responder_flow(5, "10.0.0.9", "FA:16:3E:00:00:09")
    assert flow is not None
    assert flow.match == Match(vlan_vid=vid(5), eth_type=0x0806, arp_tpa="10.0.0.9")
    sets = {a.field: a.value for a in flow.actions if isinstance(a, SetField)}
    assert sets == {"arp_op": 2, "arp_sha": "fa:16:3e:00:00:09", "arp_spa": "10.0.0.9",
                    "eth_src": "fa:16:3e:00:00:09"}  # fmt: skip
    assert flow.actions[-1] == Output(OFPP_IN_PORT, 0)
    assert br_tun.arp_responder_flow(5, "2001:db8::9", "fa:16:3e:00:00:09") is None
