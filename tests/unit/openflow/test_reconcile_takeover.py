"""The takeover's pure planning: a bridge another agent ran, replaced in one bundle.

The property test runs the plan on a model of ovs-vswitchd's flow table with the semantics the
integration tests (tests/integration/test_takeover_neutron.py) check on a real one: one rule per
(table, priority, match); DELETE_STRICT without a cookie mask removes the rule whatever its
cookie; MODIFY_STRICT changes the instructions and KEEPS the rule's cookie; ADD replaces the
rule, cookie included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from aovs.openflow.flows import Action, Flow, GotoTable, Match, Output
from aovs.openflow.reconcile import (
    FlowKey,
    FlowModPlan,
    expires,
    plan_sync,
    plan_takeover,
    takeover_summary,
)

OURS = 0xA0B5  # our cookie: the decoder reports it as 0
NEUTRON = 0x1F2E3D4C5B6A7988

FOREIGN_ONLY = Flow(0, 2, Match(in_port=7), [], cookie=NEUTRON)  # neutron's drop: not ours
OURS_TOO = Flow(0, 0, Match(), [GotoTable(60)], cookie=NEUTRON)  # we want exactly this
LEARNED = Flow(20, 1, Match(vlan_vid=0x1001, eth_dst="fa:16:3e:00:00:01"), [Output(3, 0)],
               cookie=NEUTRON, hard_timeout=300)  # fmt: skip
# a learned flow with cookie 0
LEARNED_ZERO = LEARNED.replace(match=Match(vlan_vid=0x1001, eth_dst="fa:16:3e:00:00:02"), cookie=0)
MINE = Flow(60, 3, Match(), [GotoTable(110)])
MINE_NEW = Flow(60, 3, Match(), [GotoTable(94)])


def keyed(*flows: Flow) -> dict[FlowKey, Flow]:
    return {f.key: f for f in flows}


def test_foreign_flows_not_desired_are_strict_deleted() -> None:
    plan = plan_takeover({}, keyed(FOREIGN_ONLY), keyed(MINE))
    assert plan.delete_foreign == [FOREIGN_ONLY]
    assert plan.add == [MINE] and not plan.delete and not plan.modify
    assert len(plan) == 2


def test_a_desired_key_held_by_a_foreign_flow_is_added_not_modified() -> None:
    """Same key, same actions, neutron's cookie: an ADD (replaces the rule and its cookie);
    a MODIFY_STRICT would leave neutron's cookie on it, and a delete would unwire it."""
    want = OURS_TOO.replace(cookie=0)
    plan = plan_takeover({}, keyed(OURS_TOO), keyed(want))
    assert plan.add == [want]
    assert not plan.modify and not plan.delete and not plan.delete_foreign


def test_flows_that_expire_by_themselves_are_left() -> None:
    plan = plan_takeover({}, keyed(LEARNED, LEARNED_ZERO, FOREIGN_ONLY), keyed(MINE))
    assert plan.delete_foreign == [FOREIGN_ONLY]
    assert expires(LEARNED) and expires(LEARNED_ZERO) and not expires(FOREIGN_ONLY)


def test_our_own_flows_are_diffed_as_a_plain_sync() -> None:
    plan = plan_takeover(keyed(MINE), keyed(FOREIGN_ONLY), keyed(MINE_NEW))
    assert plan.modify == [MINE_NEW] and plan.delete_foreign == [FOREIGN_ONLY]


def test_an_agent_restart_over_its_own_flows_plans_nothing() -> None:
    """No foreign flow (or only learned ones) and our flows as desired: zero FlowMods."""
    assert len(plan_takeover(keyed(MINE), {}, keyed(MINE))) == 0
    assert len(plan_takeover(keyed(MINE), keyed(LEARNED_ZERO), keyed(MINE))) == 0


def test_summary_counts_what_the_plan_does() -> None:
    foreign = keyed(FOREIGN_ONLY, OURS_TOO, LEARNED, LEARNED_ZERO)
    summary = takeover_summary(foreign, keyed(OURS_TOO.replace(cookie=0), MINE))
    assert (summary.deleted, summary.replaced, summary.left) == (1, 1, 2)
    assert summary.found == 4 and summary.cookies == {NEUTRON, 0}


# -- the property: a modelled switch ends with exactly our flows -------------------------------
def run_on_switch(switch: dict[FlowKey, Flow], plan: FlowModPlan) -> None:
    """ovs-vswitchd's semantics for the bundle's FlowMods, in the order the reconciler sends
    them (foreign deletes, deletes, modifies, adds); a rule's cookie is its real cookie."""
    for flow in [*plan.delete_foreign, *plan.delete]:
        switch.pop(flow.key, None)
    for flow in plan.modify:
        have = switch.get(flow.key)
        if have is not None:
            switch[flow.key] = flow.replace(cookie=have.cookie)
    for flow in plan.add:
        switch[flow.key] = flow.replace(cookie=OURS)


def split(switch: Mapping[FlowKey, Flow]) -> tuple[dict[FlowKey, Flow], dict[FlowKey, Flow]]:
    """What the reconciler's dump makes of the switch: ours (cookie reported as 0), others."""
    ours = {k: f.replace(cookie=0) for k, f in switch.items() if f.cookie == OURS}
    return ours, {k: f for k, f in switch.items() if f.cookie != OURS}


keys = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 4))
ACTIONS: list[tuple[Action, ...]] = [(), (Output(1, 0),), (Output(2, 0),), (GotoTable(60),)]
actions = st.sampled_from(ACTIONS)


@st.composite
def rules(draw: st.DrawFn, cookies: Iterable[int]) -> Flow:
    table, priority, port = draw(keys)
    return Flow(
        table,
        priority,
        Match(in_port=port),
        draw(actions),
        cookie=draw(st.sampled_from(list(cookies))),
        hard_timeout=draw(st.sampled_from([0, 0, 0, 300])),
    )


@given(
    on_switch=st.lists(rules([OURS, NEUTRON, 0, 0x55]), max_size=25),
    wanted=st.lists(rules([0]).map(lambda f: f.replace(hard_timeout=0)), max_size=25),
)
def test_takeover_leaves_exactly_the_desired_flows_with_our_cookie(
    on_switch: list[Flow], wanted: list[Flow]
) -> None:
    switch = {f.key: f for f in on_switch}  # one rule per key, as on the switch
    desired = {f.key: f for f in wanted}
    installed, foreign = split(switch)
    plan = plan_takeover(installed, foreign, desired)
    summary = takeover_summary(foreign, desired)
    assert len(plan.delete_foreign) == summary.deleted
    run_on_switch(switch, plan)

    for key, want in desired.items():
        assert switch[key] == want.replace(cookie=OURS)  # wired, and ours
    leftovers = {k: f for k, f in switch.items() if k not in desired}
    assert all(f.cookie != OURS and expires(f) for f in leftovers.values())
    assert len(leftovers) == summary.left
    # a second sync (e.g. after a reconnect, own cookie only) has nothing to do
    assert len(plan_sync(split(switch)[0], desired)) == 0
