"""A live migration's destination reports nothing about a port until its binding is activated,
as neutron's agent (it skips ``no_active_binding`` devices): neutron-server hands a DOWN from a
host whose binding is inactive to l2population, which (with an L3 plugin loaded) fans out
remove_fdb_entries for the port's MAC and IP to every agent."""

from __future__ import annotations

from agent_builders import details, row
from test_core import wire

from aovs.agent.core import AgentCore
from aovs.agent.state import PortPhase
from aovs.rpc.server_replies import NoActiveBinding, UnknownDevice


def test_destination_stays_silent_until_its_binding_is_activated(core: AgentCore) -> None:
    core.interface_changed(row("p-1", 5), 0.0)
    plugged = core.flush(0.0)
    assert plugged.fetch_details == ["p-1"]
    assert plugged.port_configs == {}  # waiting for details: no Port row write
    core.details_received({"p-1": NoActiveBinding("p-1")}, 0.1)
    refused = core.flush(0.1)
    assert core.ports["p-1"].phase is PortPhase.DEAD  # not wired
    assert refused.port_configs["tap-p-1"].tag == 4095
    assert plugged.reports == refused.reports == []  # and not reported: neither up nor down
    core.binding_activated("p-1", 1.0)
    assert core.flush(1.0).fetch_details == ["p-1"]
    core.details_received({"p-1": details("p-1")}, 1.1)
    up = core.flush(1.1)
    assert core.ports["p-1"].phase is PortPhase.WIRED
    assert up.reports == [("p-1", True)]


def test_a_port_reported_up_here_is_reported_down_when_bound_elsewhere(core: AgentCore) -> None:
    assert wire(core, "p-1", 5).reports == [("p-1", True)]
    core.port_updated("p-1", 1.0)
    core.flush(1.0)
    core.details_received({"p-1": NoActiveBinding("p-1")}, 1.1)
    plan = core.flush(1.1)
    assert core.ports["p-1"].phase is PortPhase.DEAD
    assert plan.reports == [("p-1", False)]


def test_an_unknown_port_is_still_reported_down(core: AgentCore) -> None:
    core.interface_changed(row("p-1", 5), 0.0)
    core.flush(0.0)
    core.details_received({"p-1": UnknownDevice("p-1")}, 0.1)
    assert core.flush(0.1).reports == [("p-1", False)]
