from __future__ import annotations

from aovs.agent.ledger import FlowLedger
from aovs.openflow.flows import Flow, Match, normal

A = Flow(0, 5, Match(in_port=1))
B = Flow(0, 5, Match(in_port=2))
SHARED = Flow(60, 3, actions=(normal(),))


def test_shared_flow_is_refcounted() -> None:
    ledger = FlowLedger("br")
    ledger.replace(("x",), {A, SHARED})
    ledger.replace(("y",), {SHARED})
    assert ledger.take_delta().add == {A, SHARED}
    ledger.replace(("x",), ())
    assert ledger.take_delta().remove == {A}
    ledger.replace(("y",), ())
    assert ledger.take_delta().remove == {SHARED}
    assert len(ledger) == 0


def test_remove_then_readd_cancels() -> None:
    ledger = FlowLedger("br")
    ledger.replace(("x",), {A})
    ledger.take_delta()
    ledger.replace(("x",), {B})
    ledger.replace(("x",), {A})
    assert not ledger.take_delta()


def test_same_key_new_actions_is_an_add_only() -> None:
    ledger = FlowLedger("br")
    ledger.replace(("x",), {A})
    ledger.take_delta()
    changed = A.replace(actions=(normal(),))
    ledger.replace(("x",), {changed})
    delta = ledger.take_delta()
    assert delta.add == {changed} and delta.remove == frozenset()
    assert ledger.desired() == {changed}
