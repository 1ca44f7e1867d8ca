"""Tunnel networks in the owner-based composition: br-tun's base set and translation flows."""

from __future__ import annotations

from aovs.dataplane import compose
from aovs.dataplane.compose import PhysicalLink, Topology, TunnelLink
from aovs.model import NetworkSegment
from aovs.owners import bridge_owner
from aovs.pipelines import br_int, br_tun

LINK = TunnelLink("br-tun", patch_tun_ofport=3, patch_int_ofport=1,
                  network_types=frozenset({"vxlan"}), arp_responder=True)  # fmt: skip
TOPO = Topology("br-int", {"physnet1": PhysicalLink("physnet1", "br-phys", 10, 20)}, LINK)


def vxlan(seg: int | None = 1001, kind: str = "vxlan") -> NetworkSegment:
    return NetworkSegment.model_validate(
        {"network_id": "t", "network_type": kind, "segmentation_id": seg}
    )


def test_tunnel_bridge_is_a_bridge_with_its_base_owner() -> None:
    assert TOPO.bridges == ("br-int", "br-phys", "br-tun")
    owners = compose.bridge_flows(TOPO)
    assert owners[bridge_owner("br-tun")] == {
        "br-tun": br_tun.base_flows(1, True),
        "br-int": frozenset({br_int.uplink_flow(3)}),  # patch-tun's traffic is switched
    }


def test_tunnel_network_translates_on_br_tun_and_floods_to_patch_tun() -> None:
    assert compose.segment_problem(TOPO, vxlan()) is None
    assert compose.network_flows(TOPO, vxlan(), 7) == {
        "br-tun": br_tun.network_flows(vxlan(), 7),
        "br-int": br_int.local_vlan_flows(7, 3, ()),
    }


def test_tunnel_problems_name_the_reason() -> None:
    assert "tunnel_types" in str(compose.segment_problem(TOPO, vxlan(kind="gre")))
    assert "segmentation_id" in str(compose.segment_problem(TOPO, vxlan(seg=None)))
    without = Topology("br-int", {})
    assert "not supported" in str(compose.segment_problem(without, vxlan()))
    assert compose.network_flows(without, vxlan(), 7) == {}
