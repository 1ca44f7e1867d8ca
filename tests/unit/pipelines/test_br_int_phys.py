from __future__ import annotations

import pytest

from aovs.model import NetworkSegment
from aovs.openflow.flows import (
    Flow,
    GotoTable,
    Match,
    PopVlan,
    PushVlan,
    SetField,
    normal,
    vid,
)
from aovs.pipelines import br_int, br_phys, tables

VLAN = NetworkSegment(
    network_id="n1", network_type="vlan", physical_network="p", segmentation_id=101
)
FLAT = NetworkSegment(network_id="n2", network_type="flat", physical_network="p")


def test_br_int_base_has_canary_dead_vlan_and_no_normal() -> None:
    flows = br_int.base_flows()
    assert br_int.canary_flow() in flows
    assert Flow(0, 0xFFFF, Match(vlan_vid=vid(4095))) in flows
    assert Flow(0, 0, actions=(GotoTable(tables.TRANSIENT_TABLE),)) in flows
    # neutron's NORMAL (which switches by Port.tag) becomes aovs' switching tables
    assert Flow(tables.TRANSIENT_TABLE, 3, actions=(GotoTable(tables.LOCAL_VLAN_TABLE),)) in flows
    assert all(normal() not in flow.actions for flow in flows)
    for table in (tables.LOCAL_VLAN_TABLE, tables.L2_FORWARD_TABLE, tables.L2_FLOOD_TABLE):
        assert Flow(table, 0) in flows  # default: drop
    # neutron 29's 58 -> 59 -> 60 exists, so its agent taking the host back loses no frame
    assert Flow(58, 0, actions=(GotoTable(59),)) in flows
    assert Flow(59, 0, actions=(GotoTable(tables.TRANSIENT_TABLE),)) in flows


def test_br_int_translates_segmentation_vlan_to_local() -> None:
    (flow,) = br_int.network_flows(7, VLAN, 3)
    assert flow.key == (0, 3, Match(in_port=7, vlan_vid=vid(101)))
    assert flow.actions == (SetField("vlan_vid", vid(3)), GotoTable(tables.TRANSIENT_TABLE))


def test_br_int_tags_untagged_flat_traffic() -> None:
    (flow,) = br_int.network_flows(7, FLAT, 4)
    assert flow.match == Match(in_port=7, vlan_vid=0)
    assert flow.actions[:2] == (PushVlan(), SetField("vlan_vid", vid(4)))


def test_br_phys_translates_local_vlan_back() -> None:
    (vlan_flow,) = br_phys.network_flows(2, VLAN, 3)
    assert vlan_flow.key == (0, 4, Match(in_port=2, vlan_vid=vid(3)))
    assert vlan_flow.actions == (SetField("vlan_vid", vid(101)), normal())
    (flat_flow,) = br_phys.network_flows(2, FLAT, 4)
    assert flat_flow.actions == (PopVlan(), normal())
    assert Flow(0, 2, Match(in_port=2)) in br_phys.base_flows(2)


@pytest.mark.parametrize("kind", ["vxlan", "local"])
def test_non_physical_networks_are_refused(kind: str) -> None:
    segment = NetworkSegment(network_id="n", network_type=kind, segmentation_id=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        br_int.network_flows(1, segment, 1)
    with pytest.raises(ValueError):
        br_phys.network_flows(1, segment, 1)
