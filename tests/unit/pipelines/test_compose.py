from __future__ import annotations

from aovs.firewall.noop import NoopFirewall
from aovs.model import NetworkSegment, PortDetails
from aovs.pipelines import compose
from aovs.pipelines.compose import PhysicalLink, PortPlan, Topology, Wiring

TOPO = Topology("br-int", {"physnet1": PhysicalLink("physnet1", "br-phys", 10, 20)})


def segment(**kw: object) -> NetworkSegment:
    base: dict[str, object] = {"network_id": "n", "network_type": "vlan",
                               "physical_network": "physnet1", "segmentation_id": 100}  # fmt: skip
    base.update(kw)
    return NetworkSegment.model_validate(base)


def test_segment_problems_name_the_reason() -> None:
    assert compose.segment_problem(TOPO, segment()) is None
    assert compose.segment_problem(TOPO, segment(network_type="local", physical_network=None,
                                                 segmentation_id=None)) is None  # fmt: skip
    assert "not supported" in str(compose.segment_problem(TOPO, segment(network_type="vxlan")))
    assert "bridge_mappings" in str(compose.segment_problem(TOPO, segment(physical_network="x")))
    assert "segmentation_id" in str(compose.segment_problem(TOPO, segment(segmentation_id=5000)))
    assert "segmentation_id" in str(compose.segment_problem(TOPO, segment(network_type="flat")))


def test_bridge_flows_cover_both_bridges() -> None:
    owners = compose.bridge_flows(TOPO)
    assert set(owners) == {("bridge", "br-int"), ("bridge", "br-phys"), ("patch", "physnet1")}
    assert set(owners[("patch", "physnet1")]) == {"br-int"}


def test_network_flows_on_both_bridges_and_none_for_unsupported() -> None:
    flows = compose.network_flows(TOPO, segment(), 5)
    assert set(flows) == {"br-int", "br-phys"}
    assert compose.network_flows(TOPO, segment(physical_network="nope"), 5) == {}


def test_dead_port_is_a_drop_and_wired_port_asks_the_firewall() -> None:
    fw = NoopFirewall()
    sgs = compose.SecurityGroupState(groups={})
    dead = compose.port_flows(TOPO, PortPlan("p", 5, Wiring.DEAD), fw, sgs)
    assert [f.match.get("in_port") for f in dead["br-int"]] == [5]
    details = PortDetails(device="p", port_id="p", network_id="n", mac_address="fa:16:3e:00:00:01",
                          network_type="vlan", physical_network="physnet1", segmentation_id=100,
                          fixed_ips=[{"ip_address": "10.0.0.5"}])  # type: ignore[list-item]  # fmt: skip
    wired = compose.port_flows(TOPO, PortPlan("p", 5, Wiring.WIRED, details, 3), fw, sgs)
    assert wired["br-int"]
    assert all(f.match.get("in_port") == 5 for f in wired["br-int"])
