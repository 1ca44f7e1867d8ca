"""The suite's expected-flow model with br-tun: what the switch must hold for a mixed world."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.suite.expected import (
    ExpectationError,
    Overlay,
    ServerView,
    expected_flows,
    local_vlans,
    patch_port_names,
)
from benchmarks.suite.usage import CpuSample, cpu_between
from benchmarks.suite.world import PHYSICAL_BRIDGE, TUNNEL_BRIDGE, VmPort

from aovs.openflow.flows import GotoTable, Output, SetField
from aovs.pipelines import tables
from aovs.testing.cloud import SimulatedCloud

LOCAL_IP = "192.0.2.3"  # the topology's third endpoint: this host, so no port to it


def world(ports: int = 8) -> tuple[ServerView, list[VmPort], SimulatedCloud]:
    topology = SimulatedCloud.generate(ports, networks=4, network_types=("vlan", "vxlan"),
                                 security_groups=2, tunnels=3)  # fmt: skip
    vms = [VmPort(i, p.port_id, f"tap{i}", p.mac_address, p.network_id)
           for i, p in enumerate(topology.ports)]  # fmt: skip
    return ServerView.of(topology, vms), vms, topology


def switch_ofports(vms: list[VmPort], overlay: Overlay) -> dict[str, int]:
    ofports = {vm.tap: 10 + vm.index for vm in vms}
    ofports.update(zip(patch_port_names(overlay), (1, 2, 3, 4), strict=True))  # patch-int = 4
    ofports.update({"vxlan-c0000201": 7, "vxlan-c0000202": 6})
    return ofports


def test_br_tun_holds_tunnel_ports_flood_and_translation_for_each_vxlan_network() -> None:
    server, vms, topology = world()
    overlay = Overlay("vxlan", LOCAL_IP, tuple(t.ip_address for t in topology.tunnels))
    assert overlay.tunnel_ports() == {"vxlan-c0000201": "192.0.2.1", "vxlan-c0000202": "192.0.2.2"}
    vlans = local_vlans(vms, {}, provisional=True)
    flows = expected_flows(server, vms, switch_ofports(vms, overlay), vlans, overlay)

    vxlan_nets = {n for n, net in topology.networks.items() if net.network_type == "vxlan"}
    assert len(vxlan_nets) == 2
    br_tun = flows[TUNNEL_BRIDGE]
    from_tunnels = {f.match.get("in_port"): f.actions for f in br_tun
                    if f.table == 0 and f.match.get("in_port") in (6, 7)}  # fmt: skip
    assert from_tunnels == {p: (GotoTable(tables.VXLAN_TUN_TO_LV),) for p in (6, 7)}
    floods = [f for f in br_tun if f.table == tables.FLOOD_TO_TUN and f.priority == 1]
    assert len(floods) == len(vxlan_nets)
    for flood in floods:
        outputs = [a.port for a in flood.actions if isinstance(a, Output)]
        assert outputs == [6, 7]  # both remote endpoints, sorted, none to this host
    vnis = {a.value for f in floods for a in f.actions if isinstance(a, SetField)}
    assert vnis == {topology.networks[n].segmentation_id for n in vxlan_nets}
    translations = [f for f in br_tun if f.table == tables.VXLAN_TUN_TO_LV and f.priority == 1]
    assert {f.match.get("tunnel_id") for f in translations} == vnis
    from_br_int = [f for f in br_tun if f.match.get("in_port") == 4]
    assert from_br_int, "br-tun's base flows (from patch-int) are expected too"


def test_vxlan_networks_have_no_flows_on_the_physical_bridge() -> None:
    server, vms, topology = world()
    overlay = Overlay("vxlan", LOCAL_IP, tuple(t.ip_address for t in topology.tunnels))
    vlans = local_vlans(vms, {}, provisional=True)
    mixed = expected_flows(server, vms, switch_ofports(vms, overlay), vlans, overlay)
    vlan_vms = [vm for vm in vms if topology.networks[vm.network_id].network_type == "vlan"]
    vlan_only = expected_flows(server, vlan_vms, switch_ofports(vms, overlay),
                               local_vlans(vlan_vms, {}, provisional=True), overlay)  # fmt: skip
    assert mixed[PHYSICAL_BRIDGE] == vlan_only[PHYSICAL_BRIDGE]


def test_an_overlay_needs_its_patch_and_tunnel_ports() -> None:
    server, vms, topology = world()
    overlay = Overlay("vxlan", LOCAL_IP, tuple(t.ip_address for t in topology.tunnels))
    vlans = local_vlans(vms, {}, provisional=True)
    ofports = switch_ofports(vms, overlay)
    without = {name: ofport for name, ofport in ofports.items() if name != "vxlan-c0000202"}
    with pytest.raises(ExpectationError, match="tunnel port vxlan-c0000202 has no ofport"):
        expected_flows(server, vms, without, vlans, overlay)
    without = {name: ofport for name, ofport in ofports.items() if name != "patch-tun"}
    with pytest.raises(ExpectationError, match="patch ports patch-tun have no ofport"):
        expected_flows(server, vms, without, vlans, overlay)
    with pytest.raises(ExpectationError, match=r"vxlan.* not supported by this agent"):
        expected_flows(server, vms, ofports, vlans, None)  # vxlan networks need the overlay


def test_switch_cpu_between_samples_and_across_a_restart() -> None:
    assert cpu_between(CpuSample(7, 1.0), CpuSample(7, 3.5)) == (2.5, False)
    assert cpu_between(CpuSample(7, 1.0), CpuSample(9, 0.4)) == (0.4, True)
    assert cpu_between(CpuSample(7, 1.0), None) == (None, False)
