"""The reconciler's pure planning: what to delete, modify and add."""

from __future__ import annotations

from aovs.openflow.flows import Flow, GotoTable, Match, Output
from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import plan_change, plan_sync, stable_cookie

A = Flow(0, 10, Match(in_port=1), [Output(2, 0)])
A_NEW_ACTIONS = Flow(0, 10, Match(in_port=1), [Output(3, 0)])
A_NEW_TIMEOUT = Flow(0, 10, Match(in_port=1), [Output(2, 0)], idle_timeout=30)
B = Flow(0, 10, Match(in_port=2), [GotoTable(24)])
C = Flow(24, 5, Match(eth_type=0x806), [])


def keyed(*flows: Flow) -> dict[tuple[int, int, Match], Flow]:
    return {f.key: f for f in flows}


def test_equal_sets_plan_nothing() -> None:
    assert len(plan_sync(keyed(A, B), keyed(A, B))) == 0


def test_sync_deletes_modifies_and_adds() -> None:
    plan = plan_sync(keyed(A, B), keyed(A_NEW_ACTIONS, C))
    assert plan.delete == [B]
    assert plan.modify == [A_NEW_ACTIONS]  # same key, only actions changed: keeps counters
    assert plan.add == [C]


def test_timeout_change_is_an_add_not_a_modify() -> None:
    plan = plan_sync(keyed(A), keyed(A_NEW_TIMEOUT))
    assert plan.add == [A_NEW_TIMEOUT] and not plan.modify


def test_change_touches_only_the_given_keys() -> None:
    plan = plan_change(keyed(A, B), {B.key: None, C.key: C})
    assert (plan.delete, plan.modify, plan.add) == ([B], [], [C])
    assert len(plan_change(keyed(A), {B.key: None})) == 0  # removing what is absent


def test_opaque_installed_flows_are_replaced() -> None:
    plan = plan_sync(keyed(A), keyed(A), opaque={A.key})
    assert plan.add == [A]


def test_stable_cookie_is_stable_and_per_bridge() -> None:
    assert stable_cookie("br-int") == stable_cookie("br-int") != stable_cookie("br-tun")


def test_to_ofctl_renders_add_flows_syntax() -> None:
    line = to_ofctl(B, cookie=0xAB)
    assert line == "cookie=0xab,table=0,priority=10,in_port=2,actions=goto_table:24"
    assert to_ofctl(C).endswith("eth_type=0x806,actions=drop")
