"""What keeps a reboot storm's memory down: one-pass merges without a set per key, ledger
tables compacted after a big change, freed pages handed back once the change is over."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aovs.agent import heap as heap_module
from aovs.agent.heap import LongLivedHeap
from aovs.agent.ledger import FlowDelta, FlowLedger, compacted
from aovs.openflow.flows import Flow, Match, Output


def _flow(key: int, port: int) -> Flow:
    return Flow(10, 5, Match(reg5=key), (Output(port),))


def _merged_with_a_set_per_key(deltas: Iterable[FlowDelta]) -> FlowDelta:
    """The merge as it was written before (a set per key): the reference."""
    adds: dict[object, set[Flow]] = {}
    removes: dict[object, set[Flow]] = {}
    for delta in deltas:
        added = {flow.key for flow in delta.add}
        for flow in delta.remove:
            adds.pop(flow.key, None)
        for key in added:
            adds.pop(key, None)
            removes.pop(key, None)
        for flow in delta.remove:
            if flow.key not in added:
                removes.setdefault(flow.key, set()).add(flow)
        for flow in delta.add:
            adds.setdefault(flow.key, set()).add(flow)
    return FlowDelta(
        remove=frozenset(f for fs in removes.values() for f in fs),
        add=frozenset(f for fs in adds.values() for f in fs),
    )


# several flows with one key in one delta (ports 1-3 on keys 0-3): the rare set path
some_flows = st.frozensets(st.builds(_flow, st.integers(0, 3), st.integers(1, 3)), max_size=6)
deltas = st.builds(FlowDelta, remove=some_flows, add=some_flows)


@given(st.lists(deltas, max_size=6))
def test_a_merge_gives_the_same_delta_in_the_same_order(slices: list[FlowDelta]) -> None:
    merged = FlowDelta.merged(slices)
    reference = _merged_with_a_set_per_key(slices)
    assert merged == reference
    assert list(merged.add) == list(reference.add)  # the same bundle, FlowMod for FlowMod
    assert list(merged.remove) == list(reference.remove)


def test_a_table_grown_past_its_entries_is_copied_and_a_fitting_one_kept() -> None:
    grown = {n: n for n in range(50_000)}
    for n in range(45_000):
        del grown[n]
    small = compacted(grown)
    assert small == grown and small is not grown
    assert compacted(small) is small


def test_a_storm_leaves_the_ledger_keys_table_its_size() -> None:
    ledger = FlowLedger("br")
    ports, per_port = 600, 10
    for port in range(ports):
        ledger.replace(
            ("port", str(port)), [_flow(port * per_port + n, 1) for n in range(per_port)]
        )
    ledger.take_delta()
    fitted = sys.getsizeof(compacted(dict(ledger._keys)))
    for port in range(ports):  # every port renumbered: each of its flows under a new key
        base = (ports + port) * per_port
        ledger.replace(("port", str(port)), [_flow(base + n, 1) for n in range(per_port)])
    delta = ledger.take_delta()
    assert len(delta.add) == len(delta.remove) == ports * per_port
    assert sys.getsizeof(ledger._keys) <= fitted


def test_release_hands_pages_back_once_enough_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(heap_module, "MALLOC_TRIM", trim)
    heap = LongLivedHeap(freeze_after=100)
    heap.grew(150)
    heap.settle()  # mid-burst: frozen, nothing released
    assert (heap.freezes, trims) == (1, [])
    heap.grew(10)
    heap.settle(release=True)  # the burst is over: 160 changes since the last release
    assert trims == [0] and heap.releases == 1
    heap.grew(10)
    heap.settle(release=True)
    assert heap.releases == 1  # too little since
    heap.settle(force=True, release=True)
    assert heap.releases == 2
