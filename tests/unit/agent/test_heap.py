"""LongLivedHeap: freeze when enough state was built; collect frozen cycles now and then."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from aovs.agent.heap import LongLivedHeap


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    """One half of a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_small_changes_do_not_freeze() -> None:
    heap = LongLivedHeap(freeze_after=100)
    heap.grew(99)
    assert heap.settle() is False
    assert gc.get_freeze_count() == 0


def test_enough_changes_freeze_the_heap_and_start_counting_again() -> None:
    heap = LongLivedHeap(freeze_after=100)
    kept = [Node() for _ in range(10)]
    heap.grew(100)
    assert heap.settle() is True
    assert gc.get_freeze_count() >= len(kept)
    assert heap.settle() is False  # nothing new since
    assert heap.settle(force=True) is True


def test_a_frozen_cycle_survives_collections_until_the_full_one() -> None:
    heap = LongLivedHeap(freeze_after=1, full_after=1_000)
    dead = cycle()
    heap.grew(1)
    heap.settle()  # the cycle, still referenced by nothing but itself, is frozen
    gc.collect()
    assert dead() is not None
    heap.grew(1_000)
    assert heap.settle() is True
    assert heap.full_collections == 1
    assert dead() is None
    assert gc.get_freeze_count() > 0  # and what lives is frozen again
