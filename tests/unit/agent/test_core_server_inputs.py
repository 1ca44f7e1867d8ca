"""What neutron-server says beyond details: other hosts' ports, live migration, networks,
address groups (each a pure core input)."""

from __future__ import annotations

from agent_builders import TOPO, details, row
from test_core import wire

from aovs.agent.core import AgentCore
from aovs.agent.state import PortPhase
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import SecurityGroup, SecurityGroupRule
from aovs.openflow.flows import Flow
from aovs.rpc.server_replies import NoActiveBinding, SecurityGroupInfo


def test_port_update_for_another_hosts_port_costs_nothing(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.port_updated("p-elsewhere", 1.0)
    core.port_deleted("p-elsewhere", 1.0)
    plan = core.flush(1.0)
    assert plan.fetch_details == [] and plan.reports == []
    assert "p-elsewhere" not in core.refusals  # nothing kept for it either
    core.port_updated("p-1", 2.0)
    assert core.flush(2.0).fetch_details == ["p-1"]


def test_port_update_for_a_row_still_waiting_for_its_ofport_asks(core: AgentCore) -> None:
    core.interface_changed(row("p-2", None), 0.0)
    assert core.flush(0.0).fetch_details == ["p-2"]
    core.details_received({"p-2": details("p-2")}, 0.1)
    core.flush(0.1)
    core.port_updated("p-2", 0.2)
    assert core.flush(0.2).fetch_details == ["p-2"]


def test_binding_deactivated_unwires_and_activated_rewires(core: AgentCore) -> None:
    wire(core, "p-1", 5)
    core.binding_deactivated("p-1", 1.0)
    plan = core.flush(1.0)
    assert core.ports["p-1"].phase is PortPhase.DEAD
    assert plan.reports == [("p-1", False)]
    assert plan.port_configs["tap-p-1"].tag == 4095
    # a port_update meanwhile is answered "no active binding here": stays dead
    core.port_updated("p-1", 1.5)
    core.flush(1.5)
    core.details_received({"p-1": NoActiveBinding("p-1")}, 1.6)
    core.flush(1.6)
    assert core.ports["p-1"].phase is PortPhase.DEAD
    core.binding_activated("p-1", 2.0)
    assert core.flush(2.0).fetch_details == ["p-1"]
    core.details_received({"p-1": details("p-1")}, 2.1)
    up = core.flush(2.1)
    assert core.ports["p-1"].phase is PortPhase.WIRED
    assert up.reports == [("p-1", True)] and up.port_configs["tap-p-1"].tag == 1


def test_binding_events_for_unknown_ports_are_ignored(core: AgentCore) -> None:
    core.binding_activated("p-9", 0.0)
    core.binding_deactivated("p-9", 0.0)
    plan = core.flush(0.0)
    assert plan.fetch_details == [] and "p-9" not in core.refusals


def test_network_update_asks_again_about_its_ports_only(core: AgentCore) -> None:
    wire(core, "p-1", 5, net="net-a")
    wire(core, "p-2", 6, net="net-b")
    core.network_changed("net-a", 1.0)
    assert core.flush(1.0).fetch_details == ["p-1"]


def _ag_core() -> AgentCore:
    core = AgentCore(TOPO, OVSFirewall(), needs_security_groups=True)
    rule = SecurityGroupRule(direction="ingress", protocol="tcp", port_range_min=22,
                             port_range_max=22, remote_address_group_id="ag-1")  # fmt: skip
    groups = {"sg1": SecurityGroup(id="sg1", rules=(rule,))}
    members = {"ag-1": {"IPv4": frozenset({"192.0.2.0/24"}), "IPv6": frozenset()}}
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1")}, 0.0)
    core.security_groups_received(["p-1"], SecurityGroupInfo({"p-1": ("sg1",)}, groups, members),
                                  0.0)  # fmt: skip
    core.flush(0.0)
    assert core.ports["p-1"].phase is PortPhase.WIRED
    return core


def _sources(flows: frozenset[Flow]) -> set[object]:
    return {f.match.get("ipv4_src") for f in flows if f.table == 82} - {None}


def test_address_group_push_rewrites_only_its_member_flows() -> None:
    core = _ag_core()
    assert _sources(core.desired("br-int")) == {("192.0.2.0", "255.255.255.0")}
    core.address_group_changed(
        "ag-1", {"IPv4": frozenset({"192.0.2.0/24", "198.51.100.0/24"}), "IPv6": frozenset()}
    )
    plan = core.flush(1.0)
    assert plan.fetch_security_groups == []  # no RPC: the push carries the addresses
    delta = plan.flows["br-int"]
    assert not delta.remove and _sources(frozenset(delta.add)) == {
        ("198.51.100.0", "255.255.255.0")
    }
    core.address_group_changed("ag-1", {"IPv4": frozenset(), "IPv6": frozenset()})
    core.flush(2.0)
    assert _sources(core.desired("br-int")) == set()  # emptied: nobody is admitted


def test_a_stale_reply_never_brings_back_what_a_push_removed() -> None:
    core = _ag_core()
    core.address_group_changed("ag-1", {"IPv4": frozenset(), "IPv6": frozenset()}, revision=3)
    core.flush(1.0)
    # a security_group_info reply computed before the push arrives after it
    rule = SecurityGroupRule(direction="ingress", protocol="tcp", port_range_min=22,
                             port_range_max=22, remote_address_group_id="ag-1")  # fmt: skip
    stale = SecurityGroupInfo(
        {"p-1": ("sg1",)},
        {"sg1": SecurityGroup(id="sg1", rules=(rule,))},
        {"ag-1": {"IPv4": frozenset({"192.0.2.0/24"}), "IPv6": frozenset()}},
    )
    core.security_groups_received(["p-1"], stale, 1.1)
    core.flush(1.1)
    assert _sources(core.desired("br-int")) == set()


def test_an_older_revision_does_not_override_a_newer_one() -> None:
    core = _ag_core()
    newer = {"IPv4": frozenset({"198.51.100.0/24"}), "IPv6": frozenset()}
    core.address_group_changed("ag-1", newer, revision=5)
    core.address_group_changed("ag-1", {"IPv4": frozenset({"10.0.0.0/8"})}, revision=4)
    core.flush(1.0)
    assert _sources(core.desired("br-int")) == {("198.51.100.0", "255.255.255.0")}


def test_a_push_before_its_rule_is_known_still_wins_later() -> None:
    core = _ag_core()
    core.address_group_changed("ag-2", {"IPv4": frozenset({"203.0.113.0/24"})}, revision=2)
    assert core.flush(1.0).flows == {}  # nothing refers to it yet: no flows
    rule = SecurityGroupRule(direction="ingress", remote_address_group_id="ag-2")
    info = SecurityGroupInfo(
        {"p-1": ("sg1",)},
        {"sg1": SecurityGroup(id="sg1", rules=(rule,))},
        {"ag-2": {"IPv4": frozenset({"192.0.2.0/24"})}},  # computed before the push
    )
    core.security_groups_received(["p-1"], info, 1.1)
    core.flush(1.1)
    assert _sources(core.desired("br-int")) == {("203.0.113.0", "255.255.255.0")}


def test_a_deleted_group_admits_nobody() -> None:
    core = _ag_core()
    core.address_group_changed("ag-1", None)
    core.flush(1.0)
    assert _sources(core.desired("br-int")) == set()
    assert "ag-1" not in core.pushed_address_groups


def test_every_details_answer_is_followed_by_an_up_again(core: AgentCore) -> None:
    # ML2 sets an ACTIVE port to BUILD whenever an agent asks its details: report UP again
    first = wire(core, "p-1", 5)
    assert first.reports == [("p-1", True)]
    core.port_updated("p-1", 1.0)
    assert core.flush(1.0).fetch_details == ["p-1"]
    core.details_received({"p-1": details("p-1")}, 1.1)
    again = core.flush(1.1)
    assert again.reports == [("p-1", True)]
    assert "br-int" not in again.flows  # nothing changed on the switch
