"""Port ranges as OpenFlow masked matches, and overlapping ranges as disjoint segments.

OpenFlow matches a transport port by (value, mask), not by range: a range becomes the fewest
aligned power-of-two blocks that tile it exactly (neutron's ``port_rule_masking``), e.g.
1000-1999 -> 8 matches instead of 1000 flows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

PORT_BITS = 16
MAX_PORT = (1 << PORT_BITS) - 1


def port_rule_masking(low: int, high: int, bits: int = PORT_BITS) -> tuple[tuple[int, int], ...]:
    """The minimal list of ``(value, mask)`` matches whose union is exactly ``[low, high]``.

    Greedy from the low end: take the largest block aligned at ``low`` that still fits. Each
    block is a prefix of the port's binary form, and the greedy cover is the unique minimal
    prefix cover. A single port comes back with the full mask (the Flow value drops it).
    """
    top = (1 << bits) - 1
    if not 0 <= low <= high <= top:
        raise ValueError(f"bad port range {low}-{high} (ports are 0..{top})")
    matches: list[tuple[int, int]] = []
    while low <= high:
        size = low & -low if low else 1 << bits  # the largest block aligned at `low`
        while low + size - 1 > high:
            size >>= 1
        matches.append((low, top ^ (size - 1)))
        low += size
    return tuple(matches)


def disjoint_segments(
    ranges: Iterable[tuple[int, int, int]],
) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(low, high, tag)`` triples -> disjoint ``(low, high, tags)`` segments, sorted.

    Two remote-group rules with overlapping port ranges must not produce overlapping
    conjunction flows at the same priority (OpenFlow would pick one arbitrarily), so the
    ranges are cut where any range starts or ends; each piece carries every tag covering it.
    """
    items: Sequence[tuple[int, int, int]] = sorted(set(ranges))
    cuts = sorted({low for low, _, _ in items} | {high + 1 for _, high, _ in items})
    segments: list[tuple[int, int, tuple[int, ...]]] = []
    for start, stop in itertools.pairwise(cuts):
        tags = tuple(sorted({tag for low, high, tag in items if low <= start and stop - 1 <= high}))
        if tags:
            if segments and segments[-1][2] == tags and segments[-1][1] == start - 1:
                segments[-1] = (segments[-1][0], stop - 1, tags)
            else:
                segments.append((start, stop - 1, tags))
    return segments
