from __future__ import annotations

from aovs.dataplane import compose
from aovs.dataplane.compose import PhysicalLink, PortPlan, Topology, Wiring
from aovs.firewall.base import FilteredPort
from aovs.firewall.noop import NoopFirewall
from aovs.model import NetworkSegment, PortDetails
from aovs.owners import (
    FIREWALL_BASE_OWNER,
    bridge_owner,
    network_owner,
    patch_owner,
    port_owner,
)
from aovs.pipelines import tables

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
    assert set(owners) == {bridge_owner("br-int"), bridge_owner("br-phys"), patch_owner("physnet1")}
    assert set(owners[patch_owner("physnet1")]) == {"br-int"}


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
    filtered = FilteredPort(details=details, ofport=5, local_vlan=3)
    assert wired["br-int"] == fw.port_flows(filtered, sgs) | compose.switching(filtered)
    delivery = [f for f in wired["br-int"] if f.table == tables.L2_FORWARD_TABLE]
    assert [f.match.get("eth_dst") for f in delivery] == ["fa:16:3e:00:00:01"]
    assert all(f.match.get("in_port") == 5 for f in wired["br-int"] if f not in delivery)


def test_desired_owners_is_every_owner_of_the_state() -> None:
    details = PortDetails.model_validate({
        "device": "p-1", "port_id": "p-1", "network_id": "n", "mac_address": "fa:16:3e:00:00:01",
        "network_type": "vlan", "physical_network": "physnet1", "segmentation_id": 100,
    })  # fmt: skip
    state = compose.DataplaneState(
        topology=TOPO,
        firewall=NoopFirewall(),
        ports={
            "p-1": PortPlan("p-1", 5, Wiring.WIRED, details, 1),
            "p-2": PortPlan("p-2", 6, Wiring.DEAD),
        },
        networks={"n": details.segment, "unused": segment(network_id="unused")},
        local_vlans={"n": 1, "gone": 2},  # "gone": a VLAN without a known segment: no flows
    )
    owners = compose.desired_owners(state)
    assert set(owners) == {
        bridge_owner("br-int"), bridge_owner("br-phys"), patch_owner("physnet1"),
        network_owner("n"), port_owner("p-1"), port_owner("p-2"), FIREWALL_BASE_OWNER,
    }  # fmt: skip
    dead = compose.port_flows(TOPO, state.ports["p-2"], NoopFirewall(), state.security_groups)
    assert owners[port_owner("p-2")] == dead
    flows = compose.desired_flows(state)
    assert set(flows) == {"br-int", "br-phys"}
    assert flows == compose.union(owners)
