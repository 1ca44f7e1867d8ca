"""AgentCore with the qos extension under random sequences of plugs, reboots, unplugs, details
naming a policy (or none, or one the server does not have), policy pushes and pull answers.

After every step and flush, with the shell's pulls answered from the "server" and the plan's
Interface columns applied to a model of OVSDB's rows (new rows start unlimited): the core holds
exactly ``compose.desired_flows`` of its state; every wired port whose policy is known has
exactly its policy's DSCP flows (on its current ofport) and its current row exactly its
policy's policing; a port without a policy, with a policy the server lacks, or not wired has no
marking and neutral policing; no DSCP flow names an ofport that is no wired port's.
"""

from __future__ import annotations

import itertools

from agent_builders import TOPO, details
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aovs.agent.core import AgentCore, Plan, resource_of
from aovs.agent.state import InterfaceRow, PortPhase
from aovs.dataplane.compose import desired_flows
from aovs.extensions.qos import QosExtension, dscp_flows, egress_policing
from aovs.firewall.noop import NoopFirewall
from aovs.rpc.resources import QOS_POLICY, QosPolicyPush, QosPolicyValue, QosRuleValue

IFACES = ("p-1", "p-2", "p-3")
POLICIES = ("pol-a", "pol-b", "pol-gone")  # the server never has pol-gone
NEUTRAL = {"ingress_policing_rate": 0, "ingress_policing_burst": 0}
GRACE = 1.0
rules = st.lists(
    st.one_of(
        st.builds(lambda m: QosRuleValue("r-d", "dscp_marking", dscp_mark=m),
                  st.sampled_from([0, 10, 26, 46])),
        st.builds(lambda k, b: QosRuleValue("r-b", "bandwidth_limit", "egress", max_kbps=k,
                                            max_burst_kbps=b),
                  st.sampled_from([0, 1000, 2500]), st.sampled_from([None, 0, 300])),
    ),
    max_size=2,
    unique_by=lambda r: r.id,
).map(tuple)  # fmt: skip


class QosMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = AgentCore(TOPO, NoopFirewall(), needs_security_groups=False,
                              unplug_grace=GRACE, extensions=[QosExtension()])  # fmt: skip
        self.now = 0.0
        self.server: dict[str, QosPolicyValue] = {}  # what a pull finds
        self.revisions = itertools.count(1)
        self.rows: dict[str, InterfaceRow] = {}  # iface -> its current Interface row
        self.ovsdb: dict[str, dict[str, int]] = {}  # row uuid -> columns
        self.uuids = itertools.count()
        self._flush()  # the start's first flush: the bridges' base flows

    def _flush(self) -> None:
        self.core.expire(self.now)
        for _ in range(4):  # pulls answered at once, as the shell would (a few rounds)
            plan = self.core.flush(self.now)
            self._apply(plan)
            if not plan.fetch_resources:
                break
            for key in plan.fetch_resources:
                kind, policy_id = resource_of(key)
                assert kind == QOS_POLICY
                found = self.server.get(policy_id)
                push = (QosPolicyPush("updated", (found,)) if found is not None
                        else QosPolicyPush("deleted", (QosPolicyValue(policy_id),)))  # fmt: skip
                self.core.resources_received(push, self.now)

    def _apply(self, plan: Plan) -> None:
        by_name = {row.name: row for row in self.rows.values()}
        for name, columns in plan.interface_columns.items():
            row = by_name.get(name)
            if row is not None:  # a row gone meanwhile is skipped, as the command does
                self.ovsdb[row.uuid].update(columns)

    @rule(iface=st.sampled_from(IFACES), ofport=st.integers(1, 9))
    def plug(self, iface: str, ofport: int) -> None:
        """A new Interface row (a plug, or a VM reboot's new row) with its ofport."""
        if any(r.ofport == ofport for i, r in self.rows.items() if i != iface):
            return  # OVS never gives two ports one ofport
        old = self.rows.get(iface)
        row = InterfaceRow(f"uuid-{next(self.uuids)}", f"tap-{iface}", iface, ofport)
        if old is not None:
            self.core.interface_deleted(old.uuid, self.now)
        self.rows[iface] = row
        self.ovsdb[row.uuid] = dict(NEUTRAL)
        self.core.interface_changed(row, self.now)
        self._flush()

    @rule(iface=st.sampled_from(IFACES))
    def unplug(self, iface: str) -> None:
        row = self.rows.pop(iface, None)
        if row is not None:
            self.core.interface_deleted(row.uuid, self.now)
            self.core.port_row_deleted(row.name)
            self._flush()

    @rule(iface=st.sampled_from(IFACES), policy=st.sampled_from((None, *POLICIES)))
    def details(self, iface: str, policy: str | None) -> None:
        """neutron-server answers the port's details (a port_update's re-read)."""
        self.core.details_received({iface: details(iface, qos_policy_id=policy)}, self.now)
        self._flush()

    @rule(policy=st.sampled_from(POLICIES[:2]), policy_rules=rules)
    def push(self, policy: str, policy_rules: tuple[QosRuleValue, ...]) -> None:
        """A policy created or its rules changed: on the server, and pushed."""
        value = QosPolicyValue(policy, policy_rules, next(self.revisions))
        self.server[policy] = value
        self.core.resources_received(QosPolicyPush("updated", (value,)), self.now)
        self._flush()

    @rule(seconds=st.sampled_from([0.1, 2.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self._flush()

    @invariant()
    def specified(self) -> None:
        spec = desired_flows(self.core.dataplane_state())
        for bridge in self.core.ledgers:
            assert self.core.desired(bridge) == spec.get(bridge, frozenset())

    @invariant()
    def exactly_the_policy(self) -> None:
        flows = self.core.desired("br-int")
        marking = {f for f in flows if f.match.get("reg2") == 0}
        expected_marking = set()
        for iface, port in self.core.ports.items():
            cached = self.core.details.get(iface)
            policy_id = cached.details.qos_policy_id if cached is not None else None
            policy = self.core.resources.get(QOS_POLICY, policy_id) if policy_id else None
            wired = port.phase is PortPhase.WIRED and port.ofport is not None
            want_columns = dict(NEUTRAL)
            if wired and isinstance(policy, QosPolicyValue):
                for each in policy.rules:
                    if each.type == "dscp_marking" and each.dscp_mark is not None:
                        assert port.ofport is not None
                        expected_marking |= dscp_flows(port.ofport, each.dscp_mark)
                    elif each.type == "bandwidth_limit":
                        want_columns.update(egress_policing(each))
            row = self.rows.get(iface)
            waiting = (
                wired
                and policy_id is not None
                and policy is None
                and (
                    policy_id in self.server  # a pull would find it: answered within the flush
                )
            )
            assert not waiting, f"{iface} still waits for {policy_id}"
            if row is not None and port.interface is not None:
                assert self.ovsdb[row.uuid] == want_columns, (iface, policy_id, policy)
        assert marking == expected_marking


QosMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_core_with_qos = QosMachine.TestCase
