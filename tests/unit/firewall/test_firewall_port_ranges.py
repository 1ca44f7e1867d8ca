"""Port ranges -> masked matches, checked against brute force."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aovs.firewall.port_ranges import disjoint_segments, port_rule_masking


def minimal_prefix_cover(low: int, high: int, bits: int) -> set[tuple[int, int]]:
    """Oracle: walk the binary trie top-down; a node fully inside the range is one match."""
    top = (1 << bits) - 1
    out: set[tuple[int, int]] = set()

    def visit(start: int, size: int) -> None:
        end = start + size - 1
        if end < low or start > high:
            return
        if low <= start and end <= high:
            out.add((start, top ^ (size - 1)))
            return
        visit(start, size // 2)
        visit(start + size // 2, size // 2)

    visit(0, 1 << bits)
    return out


@st.composite
def ranges(draw: st.DrawFn, bits: int) -> tuple[int, int]:
    a = draw(st.integers(0, (1 << bits) - 1))
    b = draw(st.integers(0, (1 << bits) - 1))
    return min(a, b), max(a, b)


@given(ranges(10))
def test_masks_cover_exactly_the_range_brute_force(bounds: tuple[int, int]) -> None:
    low, high = bounds
    matches = port_rule_masking(low, high, bits=10)
    for port in range(1 << 10):
        hits = sum(port & mask == value for value, mask in matches)
        assert hits == (1 if low <= port <= high else 0), (port, matches)


@given(ranges(16))
def test_masks_are_the_minimal_prefix_cover(bounds: tuple[int, int]) -> None:
    low, high = bounds
    matches = port_rule_masking(low, high)
    assert len(matches) == len(set(matches))
    assert set(matches) == minimal_prefix_cover(low, high, 16)
    assert len(matches) <= 30  # 2 * (16 - 1): the worst case for 16 bits


def test_known_ranges() -> None:
    assert port_rule_masking(22, 22) == ((22, 0xFFFF),)
    assert port_rule_masking(0, 65535) == ((0, 0),)
    assert port_rule_masking(1000, 1999) == (
        (1000, 0xFFF8), (1008, 0xFFF0), (1024, 0xFE00), (1536, 0xFF00), (1792, 0xFF80),
        (1920, 0xFFC0), (1984, 0xFFF0),
    )  # fmt: skip
    assert len(port_rule_masking(1, 65534)) == 30


def test_bad_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="bad port range 30-20"):
        port_rule_masking(30, 20)
    with pytest.raises(ValueError, match="65536"):
        port_rule_masking(1, 65536)


@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 63), st.integers(1, 4)), max_size=6))
def test_disjoint_segments_brute_force(raw: list[tuple[int, int, int]]) -> None:
    items = [(min(a, b), max(a, b), tag) for a, b, tag in raw]
    segments = disjoint_segments(items)
    for port in range(64):
        expected = tuple(sorted({tag for low, high, tag in items if low <= port <= high}))
        covering = [tags for low, high, tags in segments if low <= port <= high]
        assert covering == ([expected] if expected else [])
    for (_, high, tags), (low, _, next_tags) in itertools.pairwise(segments):
        assert high < low
        assert not (high + 1 == low and tags == next_tags)  # merged when adjacent and equal
