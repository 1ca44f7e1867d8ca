"""Agent extensions in the core: a port's QoS policy is pulled, applied, changed and removed
through the same flush as everything else (flows in the port's owner, Interface columns in the
plan), and the core still holds exactly ``compose.desired_flows(core.dataplane_state())``."""

from __future__ import annotations

from agent_builders import TOPO, details, row

from aovs.agent.core import AgentCore, Plan
from aovs.dataplane import compose
from aovs.extensions.qos import QosExtension, dscp_flows
from aovs.firewall.noop import NoopFirewall
from aovs.rpc.resources import QosPolicyPush, QosPolicyValue, QosRuleValue

POLICY = "pol-1"
RATE = {"ingress_policing_rate": 1000, "ingress_policing_burst": 800}
NEUTRAL = {"ingress_policing_rate": 0, "ingress_policing_burst": 0}


def qos_core() -> AgentCore:
    return AgentCore(TOPO, NoopFirewall(), needs_security_groups=False, extensions=[QosExtension()])


def policy(*rules: QosRuleValue, revision: int = 1) -> QosPolicyPush:
    return QosPolicyPush("updated", (QosPolicyValue(POLICY, rules, revision),))


def dscp(mark: int) -> QosRuleValue:
    return QosRuleValue("r-d", "dscp_marking", dscp_mark=mark)


BW = QosRuleValue("r-b", "bandwidth_limit", "egress", max_kbps=1000)


def assert_specified(core: AgentCore) -> None:
    spec = compose.desired_flows(core.dataplane_state())
    for bridge in core.ledgers:
        assert core.desired(bridge) == spec.get(bridge, frozenset())


def added(plan: Plan) -> set[object]:
    delta = plan.flows.get("br-int")
    return set(delta.add) if delta is not None else set()


def removed(plan: Plan) -> set[object]:
    delta = plan.flows.get("br-int")
    return {f.key for f in delta.remove} if delta is not None else set()


def test_policy_pulled_then_applied_changed_detached_and_port_removed() -> None:
    core = qos_core()
    core.interface_changed(row("p-1", 5), 0.0)
    core.flush(0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    first = core.flush(0.0)
    assert first.fetch_resources == [f"QosPolicy/{POLICY}"]  # pulled, once
    assert "tap-p-1" not in first.interface_columns  # unknown policy: OVS keeps what it has
    assert core.flush(0.1).fetch_resources == []

    core.resources_received(policy(BW, dscp(26)), 0.2)
    applied = core.flush(0.2)
    assert dscp_flows(5, 26) <= added(applied)
    assert applied.interface_columns == {"tap-p-1": RATE}
    assert_specified(core)

    core.resources_received(policy(dscp(46), revision=2), 0.3)  # a push: rules changed
    changed = core.flush(0.3)
    assert dscp_flows(5, 46) <= added(changed)
    assert changed.interface_columns == {"tap-p-1": NEUTRAL}  # bandwidth rule deleted
    assert_specified(core)

    core.details_received({"p-1": details("p-1")}, 0.4)  # port_update: policy detached
    detached = core.flush(0.4)
    assert {f.key for f in dscp_flows(5, 46)} <= removed(detached)
    assert detached.interface_columns == {}  # already neutral
    assert not any(f.match.get("reg2") == 0 for f in core.desired("br-int"))
    assert_specified(core)

    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.5)  # cached now
    again = core.flush(0.5)
    assert again.fetch_resources == [] and dscp_flows(5, 46) <= added(again)
    core.interface_deleted("uuid-p-1", 0.6)
    core.port_row_deleted("tap-p-1")
    core.expire(2.0)
    gone = core.flush(2.0)
    assert {f.key for f in dscp_flows(5, 46)} <= removed(gone)
    assert not core.extension_problems and not core._contributions and not core._needed_by
    assert_specified(core)


def test_reboot_moves_the_marking_to_the_new_ofport_and_rewrites_the_new_row() -> None:
    core = qos_core()
    core.resources_received(policy(BW, dscp(8)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    assert core.flush(0.0).interface_columns == {"tap-p-1": RATE}
    core.interface_deleted("uuid-p-1", 1.0)
    core.interface_changed(row("p-1", 9, uuid="uuid-p-1b"), 1.1)
    rebooted = core.flush(1.1)
    assert dscp_flows(9, 8) <= added(rebooted)
    assert {f.key for f in dscp_flows(5, 8)} <= removed(rebooted)
    assert rebooted.interface_columns == {"tap-p-1": RATE}  # a new row starts unlimited
    assert_specified(core)


def test_unsupported_rules_are_reported_per_port() -> None:
    core = qos_core()
    ingress = QosRuleValue("r-i", "packet_rate_limit", "any", max_kpps=10)
    core.resources_received(policy(ingress, dscp(8)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    plan = core.flush(0.0)
    assert dscp_flows(5, 8) <= added(plan)  # what it can apply, it applies
    (problem,) = core.extension_problems["p-1"]
    assert "packet_rate_limit any rule r-i" in problem


def test_a_failed_pull_is_retried_with_back_off() -> None:
    core = qos_core()
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    assert core.flush(0.0).fetch_resources == [f"QosPolicy/{POLICY}"]
    core.resources_unavailable([f"QosPolicy/{POLICY}"], 0.1)
    assert core.flush(0.2).fetch_resources == []
    assert core.next_deadline() is not None
    assert core.flush(5.0).fetch_resources == [f"QosPolicy/{POLICY}"]


def test_without_extensions_nothing_is_asked_or_written() -> None:
    core = AgentCore(TOPO, NoopFirewall(), needs_security_groups=False)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    plan = core.flush(0.0)
    assert plan.fetch_resources == [] and plan.interface_columns == {}


def test_a_policy_the_server_does_not_have_resets_the_port_and_is_not_asked_again() -> None:
    core = qos_core()
    core.resources_received(policy(BW), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    assert core.flush(0.0).interface_columns == {"tap-p-1": RATE}
    core.details_received({"p-1": details("p-1", qos_policy_id="gone")}, 1.0)
    asked = core.flush(1.0)
    assert asked.fetch_resources == ["QosPolicy/gone"] and asked.interface_columns == {}
    # the pull's answer: no such policy (missing_as_deleted)
    core.resources_received(QosPolicyPush("deleted", (QosPolicyValue("gone"),)), 1.1)
    reset = core.flush(1.1)
    assert reset.interface_columns == {"tap-p-1": NEUTRAL} and reset.fetch_resources == []
    core.port_updated("p-1", 2.0)
    core.details_received({"p-1": details("p-1", qos_policy_id="gone")}, 2.1)
    assert core.flush(2.1).fetch_resources == []
