from __future__ import annotations

from agent_builders import TOPO, details, row

from aovs.agent.core import AgentCore, Plan
from aovs.agent.state import PortPhase
from aovs.firewall.noop import NoopFirewall
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import SecurityGroup, SecurityGroupRule
from aovs.openflow.flows import Flow
from aovs.owners import port_owner
from aovs.rpc.server_replies import FailedDevice, SecurityGroupInfo, UnknownDevice


def in_ports(flows: frozenset[Flow]) -> set[object]:
    return {f.match.get("in_port") for f in flows}


def wire(core: AgentCore, iface: str, ofport: int, now: float = 0.0, **kw: object) -> Plan:
    core.interface_changed(row(iface, ofport), now)
    core.flush(now)
    core.details_received({iface: details(iface, **kw)}, now)  # type: ignore[arg-type]
    return core.flush(now)


def test_new_port_is_dropped_until_details_then_wired(core: AgentCore) -> None:
    core.interface_changed(row("p-1", None), 0.0)
    first = core.flush(0.0)
    assert first.fetch_details == ["p-1"]  # asked before OVS even gave an ofport
    assert in_ports(first.flows["br-int"].add) == {None, 100}  # base + patch drop, no port
    core.interface_changed(row("p-1", 5), 0.1)
    pending = core.flush(0.1)
    assert in_ports(pending.flows["br-int"].add) == {5}
    assert pending.port_configs == {}  # no dead tag first: the flows drop it already
    core.details_received({"p-1": details("p-1")}, 0.2)
    wired = core.flush(0.2)
    assert core.ports["p-1"].phase is PortPhase.WIRED
    assert wired.port_configs["tap-p-1"].tag == 1
    assert dict(wired.port_configs["tap-p-1"].other_config or ())["net_uuid"] == "net-a"
    assert wired.reports == [("p-1", True)]
    assert wired.flows["br-int"].remove  # the pending drop went
    phys = wired.flows["br-phys"].add
    assert any(f.match.get("vlan_vid") == 1 | 0x1000 for f in phys)
    assert [t.event for t in pending.transitions] == ["plugged"]


def test_vm_reboot_in_one_flush_swaps_flows_in_one_delta(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    before = core.desired("br-int")
    core.interface_deleted("uuid-p-1", 1.0)
    core.interface_changed(row("p-1", None, uuid="uuid-new"), 1.0)
    core.interface_changed(row("p-1", 9, uuid="uuid-new"), 1.1)
    plan = core.flush(1.1)
    assert plan.fetch_details == []  # cached details: no RPC on the critical path
    delta = plan.flows["br-int"]
    assert 5 in in_ports(delta.remove) and 9 in in_ports(delta.add)
    assert 5 not in in_ports(core.desired("br-int")) and len(core.desired("br-int")) == len(before)
    assert "br-phys" not in plan.flows  # the network kept its VLAN
    assert plan.reports == [("p-1", False), ("p-1", True)]
    assert plan.port_configs["tap-p-1"].tag == 1


def test_vm_reboot_across_flushes_still_one_flow_bundle(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.interface_deleted("uuid-p-1", 1.0)
    down = core.flush(1.0)
    assert down.flows == {} and down.reports == [("p-1", False)]
    core.interface_changed(row("p-1", None, uuid="uuid-new"), 1.05)
    assert core.flush(1.05).flows == {}
    core.interface_changed(row("p-1", 9, uuid="uuid-new"), 1.2)
    up = core.flush(1.2)
    assert set(up.flows) == {"br-int"}
    assert 5 in in_ports(up.flows["br-int"].remove) and 9 in in_ports(up.flows["br-int"].add)
    assert up.reports == [("p-1", True)]
    assert "replugged" in up.transitions[0].event or "ofport" in up.transitions[0].event


def test_ofport_change_on_the_same_row_rewires(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.interface_changed(row("p-1", 6), 1.0)
    plan = core.flush(1.0)
    assert 6 in in_ports(plan.flows["br-int"].add) and 5 in in_ports(plan.flows["br-int"].remove)


def test_unplugged_port_flows_go_after_the_grace_and_vlan_is_released(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.interface_deleted("uuid-p-1", 1.0)
    core.flush(1.0)
    assert core.next_deadline() == 2.0
    core.expire(1.5)
    assert core.flush(1.5).flows == {}
    core.expire(2.0)
    plan = core.flush(2.0)
    assert 5 in in_ports(plan.flows["br-int"].remove)
    assert plan.flows["br-phys"].remove and core.vlans.get("net-a") is None
    assert [t.event for t in plan.transitions] == ["removed"]
    assert "p-1" not in core.ports


def test_a_port_taking_an_unplugged_ports_ofport_ends_its_grace(core: AgentCore) -> None:
    # OVS reuses ofports: the old VM's flows on in_port=5 / reg5=5 would apply to the new VM
    wire(core, "p-1", 5, net="net-b")
    core.interface_deleted("uuid-p-1", 1.0)
    core.flush(1.0)
    assert core.ports["p-1"].unplugged_at == 1.0  # in its grace, flows kept
    wire(core, "p-2", 5, now=1.1)
    assert "p-1" not in core.ports  # gone at once, not after the grace
    assert core.ledgers["br-int"].flows_of(port_owner("p-1")) == frozenset()
    on_5 = {f for f in core.desired("br-int") if f.match.get("in_port") == 5}
    assert on_5 and on_5 <= core.ledgers["br-int"].flows_of(port_owner("p-2"))


def test_details_arriving_during_the_unplug_grace_do_not_report_it_up(core: AgentCore) -> None:
    """tests/faults: a refresh answered (or failed) after the VM's row was deleted, while its
    flows wait out the grace, reported the gone port UP again, and it stayed UP."""
    wire(core, "p-1", 5)
    core.port_updated("p-1", 1.0)
    assert core.flush(1.0).fetch_details == ["p-1"]
    core.interface_deleted("uuid-p-1", 1.1)
    assert ("p-1", False) in core.flush(1.1).reports
    core.details_received({"p-1": FailedDevice("p-1", "failed by the server")}, 1.2)
    core.details_received({"p-1": details("p-1")}, 1.3)
    assert ("p-1", True) not in core.flush(1.3).reports


def test_failures_and_dead_ports(core: AgentCore) -> None:
    core.interface_changed(row("bad", -1), 0.0)
    plan = core.flush(0.0)
    assert core.ports["bad"].phase is PortPhase.FAILED and "ofport -1" in core.ports["bad"].reason
    assert ("bad", False) in plan.reports
    wire(core, "down-1", 7, admin_state_up=False)
    assert core.ports["down-1"].phase is PortPhase.DEAD
    assert in_ports(core.ledgers["br-int"].flows_of(port_owner("down-1"))) == {7}
    wire(core, "tun-1", 8, network_type="vxlan", physical_network=None)
    assert core.ports["tun-1"].phase is PortPhase.FAILED
    assert "not supported" in core.ports["tun-1"].reason
    core.interface_changed(row("gone-1", 9), 0.0)
    core.details_received({"gone-1": UnknownDevice("gone-1")}, 0.0)
    core.flush(0.0)
    assert core.ports["gone-1"].phase is PortPhase.DEAD


def test_server_failure_marks_failed_and_retries_with_backoff(core: AgentCore) -> None:
    core.interface_changed(row("p-1", 5), 0.0)
    assert core.flush(0.0).fetch_details == ["p-1"]
    core.details_received({"p-1": FailedDevice("p-1", "malformed details: mac")}, 0.5)
    plan = core.flush(0.5)
    assert core.ports["p-1"].phase is PortPhase.FAILED and ("p-1", False) in plan.reports
    assert plan.fetch_details == [] and core.next_deadline() == 1.5
    assert core.flush(1.5).fetch_details == ["p-1"]
    core.details_received({"p-1": details("p-1")}, 1.6)
    assert core.flush(1.6).reports == [("p-1", True)]


def test_cached_details_survive_a_failed_refresh(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.port_updated("p-1", 1.0)
    assert core.flush(1.0).fetch_details == ["p-1"]
    core.details_received({"p-1": FailedDevice("p-1", "RpcTimeout")}, 2.0)
    plan = core.flush(2.0)
    assert core.ports["p-1"].phase is PortPhase.WIRED and plan.flows == {}


def test_two_networks_get_distinct_vlans_and_share_the_bridge_flows(core: AgentCore) -> None:
    wire(core, "a-1", 5, net="net-a")
    wire(core, "b-2", 6, net="net-b", segmentation_id=102)
    assert core.vlans.get("net-a") != core.vlans.get("net-b")
    assert len([f for f in core.desired("br-phys") if f.priority == 4]) == 2


def test_port_rows_already_right_are_not_rewritten() -> None:
    core = AgentCore(TOPO, NoopFirewall(), needs_security_groups=False)
    other = {"net_uuid": "net-a", "tag": "7", "network_type": "vlan",
             "physical_network": "physnet1", "segmentation_id": "101"}  # fmt: skip
    core.port_row("tap-p-1", 7, other)
    core.recover_vlans()
    core.details_received({"p-1": details("p-1")}, 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    plan = core.flush(0.0)
    assert core.vlans.get("net-a") == 7
    assert plan.port_configs == {}


def test_same_inputs_same_flows_whatever_the_order() -> None:
    """An agent restart must compute identical flows (zero FlowMods)."""
    ports = [f"p-{i}" for i in range(1, 30)]
    cores = []
    for order in (ports, list(reversed(ports))):
        core = AgentCore(TOPO, NoopFirewall(), needs_security_groups=False)
        for i, iface in enumerate(ports):
            net = f"net-{i % 3}"
            core.port_row(f"tap-{iface}"[:15], 1 + i % 3, {"net_uuid": net, "tag": str(1 + i % 3)})
        core.recover_vlans()
        for iface in order:
            i = ports.index(iface)
            core.details_received({iface: details(iface, net=f"net-{i % 3}")}, 0.0)
            core.interface_changed(row(iface, 10 + i), 0.0)
        core.flush(0.0)
        cores.append(core)
    assert cores[0].desired("br-int") == cores[1].desired("br-int")
    assert cores[0].desired("br-phys") == cores[1].desired("br-phys")


def test_openvswitch_firewall_waits_for_security_groups() -> None:
    core = AgentCore(TOPO, OVSFirewall(), needs_security_groups=True)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1")}, 0.0)  # neutron sends no groups here
    plan = core.flush(0.0)
    assert core.ports["p-1"].phase is PortPhase.PENDING
    assert plan.fetch_security_groups == ["p-1"]
    rule = SecurityGroupRule(direction="ingress", protocol="tcp", port_range_min=22,
                             port_range_max=22)  # fmt: skip
    groups = {"sg1": SecurityGroup(id="sg1", rules=(rule,))}
    members = {"sg1": {"IPv4": frozenset({"10.0.0.1"})}}
    info = SecurityGroupInfo({"p-1": ("sg1",)}, groups, members)
    core.security_groups_received(["p-1"], info, 0.1)
    wired = core.flush(0.1)
    assert core.ports["p-1"].phase is PortPhase.WIRED
    tables = {f.table for f in wired.flows["br-int"].add}
    assert {60, 71, 82}.issubset(tables)
    # a rule change re-fetches for the ports that use the group
    core.security_groups_changed(["sg1"], 1.0)
    assert core.flush(1.0).fetch_security_groups == ["p-1"]


def test_a_burst_is_flushed_in_slices_each_port_whole(core: AgentCore) -> None:
    for i in range(1, 11):
        core.details_received({f"p-{i}": details(f"p-{i}")}, 0.0)
        core.interface_changed(row(f"p-{i}", 10 + i), 0.0)
    first = core.flush(0.0, max_ports=4)
    assert core.has_dirty_ports
    assert len(first.transitions) == 4
    while core.has_dirty_ports:
        core.flush(0.0, max_ports=4)
    assert core.counts()["wired"] == 10
    assert {f.match.get("in_port") for f in core.desired("br-int")} >= set(range(11, 21))
