"""br-int's meters in the core: a plan carries the whole meter set when a port's QoS rules
change it (applied, changed, detached, port removed), and a meter the switch refused is a
problem of the port that wants it until the switch takes it."""

from __future__ import annotations

from agent_builders import TOPO, details, row

from aovs.agent.core import AgentCore
from aovs.agent.snapshot import LocalSnapshot
from aovs.extensions.qos import SLOT_INGRESS_KBPS, QosExtension
from aovs.firewall.noop import NoopFirewall
from aovs.openflow.flows import Meter
from aovs.rpc.resources import QosPolicyPush, QosPolicyValue, QosRuleValue

POLICY = "pol-1"


def qos_core() -> AgentCore:
    return AgentCore(TOPO, NoopFirewall(), needs_security_groups=False, extensions=[QosExtension()])


def policy(*rules: QosRuleValue, revision: int = 1) -> QosPolicyPush:
    return QosPolicyPush("updated", (QosPolicyValue(POLICY, rules, revision),))


def ingress(kbps: int) -> QosRuleValue:
    return QosRuleValue("r-i", "bandwidth_limit", "ingress", max_kbps=kbps, max_burst_kbps=kbps)


def meter(ofport: int, kbps: int) -> Meter:
    return Meter(ofport * 4 + SLOT_INGRESS_KBPS, "kbps", kbps, kbps)


def test_the_plan_carries_the_meter_set_when_it_changes() -> None:
    core = qos_core()
    core.resources_received(policy(ingress(1000)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    assert core.flush(0.0).meters == {meter(5, 1000)}
    assert core.flush(0.1).meters is None  # unchanged: not sent again
    core.resources_received(policy(ingress(2000), revision=2), 0.2)
    assert core.flush(0.2).meters == {meter(5, 2000)}  # rule changed
    core.interface_changed(row("p-2", 6), 0.3)
    core.details_received({"p-2": details("p-2", qos_policy_id=POLICY)}, 0.3)
    assert core.flush(0.3).meters == {meter(5, 2000), meter(6, 2000)}
    core.resources_received(policy(revision=3), 0.4)  # rules removed
    assert core.flush(0.4).meters == frozenset()
    core.resources_received(policy(ingress(10), revision=4), 0.5)
    assert core.flush(0.5).meters == {meter(5, 10), meter(6, 10)}
    core.interface_deleted("uuid-p-1", 1.0)
    core.flush(1.0)
    core.expire(5.0)  # after the unplug grace its flows and its meter go
    assert core.flush(5.0).meters == {meter(6, 10)}
    assert core.desired_meters() == {meter(6, 10)}


def test_a_refused_meter_is_the_ports_problem_until_accepted() -> None:
    core = qos_core()
    core.resources_received(policy(ingress(1000)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    core.flush(0.0)
    assert "p-1" not in core.extension_problems
    core.meters_rejected({meter(5, 1000): "OFPMMFC_INVALID_METER"})
    core.flush(0.1)
    (problem,) = core.extension_problems["p-1"]
    assert f"meter {meter(5, 1000).id}" in problem and "OFPMMFC_INVALID_METER" in problem
    core.meters_rejected({})
    core.flush(0.2)
    assert "p-1" not in core.extension_problems


def test_a_restart_applies_the_snapshots_policy_before_pulling_it_again() -> None:
    core = qos_core()
    core.resources_received(policy(ingress(1000)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1", qos_policy_id=POLICY)}, 0.0)
    before = core.flush(0.0)
    snapshot = LocalSnapshot.from_json(core.snapshot().to_json())
    assert set(snapshot.qos_policies) == {POLICY}

    restarted = qos_core()
    restarted.restore(snapshot.ports.values(), snapshot.local_vlans, snapshot.security_groups)
    restarted.restore_resources(snapshot.qos_policies, 10.0)
    restarted.interface_changed(row("p-1", 5), 10.0)
    after = restarted.flush(10.0)
    assert after.meters == before.meters == {meter(5, 1000)}
    assert restarted.desired("br-int") == core.desired("br-int")  # no FlowMod to send
    assert after.fetch_resources == [f"QosPolicy/{POLICY}"]  # asked again all the same
    restarted.resources_received(policy(ingress(1000)), 10.5)  # unchanged: nothing to do
    assert restarted.flush(10.5).meters is None
