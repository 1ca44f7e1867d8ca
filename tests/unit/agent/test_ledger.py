from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aovs.agent.ledger import FlowDelta, FlowLedger
from aovs.openflow.flows import Flow, Match, Output, SetField, normal

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


def _port_flow(ofport: int, vlan: int) -> Flow:
    return Flow(60, 100, Match(in_port=ofport), (SetField("reg6", vlan), Output(9)))


def test_renumbered_ports_swapping_ofports_keep_both_flows() -> None:
    # an OVS restart renumbers: x takes ofport 1 while y still has its flows there
    ledger = FlowLedger("br")
    ledger.replace(("x",), {_port_flow(5, 2)})
    ledger.replace(("y",), {_port_flow(1, 3)})
    ledger.take_delta()
    ledger.replace(("x",), {_port_flow(1, 2)})  # y's in_port=1 still held: the newest wins
    ledger.replace(("y",), {_port_flow(5, 3)})
    delta = ledger.take_delta()
    assert delta.add == {_port_flow(1, 2), _port_flow(5, 3)} and not delta.remove
    assert ledger.desired() == {_port_flow(1, 2), _port_flow(5, 3)}


def test_a_departing_owner_never_deletes_another_owners_rule_with_its_key() -> None:
    # the soak's loss: x unplugged (its flows kept through the grace), y plugged on x's old
    # ofport, then x removed: its strict delete would have taken y's rule with it
    ledger = FlowLedger("br")
    ledger.replace(("x",), {_port_flow(1, 2)})
    ledger.take_delta()
    ledger.replace(("y",), {_port_flow(1, 3)})
    assert ledger.take_delta().add == {_port_flow(1, 3)}
    ledger.replace(("x",), ())
    assert not ledger.take_delta()
    assert ledger.desired() == {_port_flow(1, 3)}


def test_the_waiting_flow_takes_the_key_back_when_the_winner_goes() -> None:
    ledger = FlowLedger("br")
    ledger.replace(("x",), {_port_flow(1, 2)})
    ledger.replace(("y",), {_port_flow(1, 3)})
    assert ledger.take_delta().add == {_port_flow(1, 3)}
    ledger.replace(("y",), ())
    assert ledger.take_delta().add == {_port_flow(1, 2)}
    ledger.replace(("x",), ())
    assert ledger.take_delta().remove == {_port_flow(1, 2)}
    assert len(ledger) == 0


# -- merging queued deltas (plans that piled up go out as one bundle) ---------------------------
def _flow(key: int, action: int) -> Flow:
    return Flow(60, 90, Match(reg5=key), (SetField("reg6", action), Output(1)))


def _apply(installed: dict[tuple[int, int, Match], Flow], delta: FlowDelta) -> None:
    """What the switch does with a delta: strict deletes by key, then adds replace by key."""
    keys = {flow.key for flow in delta.add}
    if len(keys) != len(delta.add):
        raise AssertionError("two adds with one key")
    for flow in delta.remove:
        installed.pop(flow.key, None)
    for flow in delta.add:
        installed[flow.key] = flow


def test_a_later_add_of_a_key_replaces_an_earlier_one() -> None:
    # a VM reboot seen in two slices: its flows with the old ofport, then the new one (the
    # ledger leaves the old flow's removal to the add that replaces it)
    first = FlowDelta(remove=frozenset(), add=frozenset({_flow(1, 815)}))
    second = FlowDelta(remove=frozenset(), add=frozenset({_flow(1, 1042)}))
    merged = first.then(second)
    assert merged.add == {_flow(1, 1042)} and not merged.remove


deltas = st.builds(
    lambda rm, ad: FlowDelta(
        remove=frozenset(_flow(k, a) for k, a in rm.items()),
        add=frozenset(_flow(k, a) for k, a in ad.items()),
    ),
    st.dictionaries(st.integers(0, 5), st.integers(0, 2), max_size=4),
    st.dictionaries(st.integers(0, 5), st.integers(0, 2), max_size=4),
)


@given(st.dictionaries(st.integers(0, 5), st.integers(0, 2)), deltas, deltas)
def test_merged_delta_does_what_the_two_do_in_turn(
    start: dict[int, int], first: FlowDelta, second: FlowDelta
) -> None:
    one_by_one = {(f.key): f for f in (_flow(k, a) for k, a in start.items())}
    merged_state = dict(one_by_one)
    _apply(one_by_one, first)
    _apply(one_by_one, second)
    _apply(merged_state, first.then(second))
    assert merged_state == one_by_one


@given(st.dictionaries(st.integers(0, 5), st.integers(0, 2)), st.lists(deltas, max_size=6))
def test_a_burst_merged_in_one_pass_does_what_its_slices_do_in_turn(
    start: dict[int, int], slices: list[FlowDelta]
) -> None:
    """The committer merges a burst's slices (up to hundreds of thousands of flows) at once."""
    one_by_one = {(f.key): f for f in (_flow(k, a) for k, a in start.items())}
    merged_state = dict(one_by_one)
    for delta in slices:
        _apply(one_by_one, delta)
    _apply(merged_state, FlowDelta.merged(slices))
    assert merged_state == one_by_one
