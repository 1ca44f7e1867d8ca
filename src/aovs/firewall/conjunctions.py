"""Conjunction ids as a pure function of the security-group rules (no arrival-order allocator).

neutron allocates conjunction ids in arrival order, so an agent restart renumbers them and
rewrites every remote-group flow. Here an id block is derived from the stable key
``(security group, remote group, direction, ethertype)``:

* the preferred block is ``blake2b(key) mod BLOCKS`` (29 bits: ids are ``block * 8``);
* keys are placed in sorted order, a key whose block is taken moves to the next free block
  (linear probing), so the result depends only on the SET of keys, never on order or history.

A collision (probability ~k^2/2^30 for k keys: 1e-3 with 1000 keys) costs churn only for the
keys that collide, and only when the colliding set changes. It never merges two keys: every key
gets its own block, which matters because sharing a block would let one group's members through
another group's rule.

Each block holds 8 ids, as in neutron: ``base + 2*offset + s`` where ``offset`` (0..3) is the
rule's priority offset (all flows of one conjunction must share a priority) and ``s`` is 0 for
established and 1 for new connections (the two ct_state variants).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

Direction: TypeAlias = Literal["ingress", "egress"]
Ethertype: TypeAlias = Literal["IPv4", "IPv6"]
ConjKey: TypeAlias = tuple[str, str, str, str]  # (sg_id, remote_sg_id, direction, ethertype)

BLOCK_SIZE = 8
BLOCKS = (1 << 29) - 1  # block 0 is never used: ids start at 8


def preferred_block(key: ConjKey) -> int:
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BLOCKS + 1


@dataclass(frozen=True, slots=True)
class ConjunctionIds:
    """The conjunction id block of every key in use."""

    bases: Mapping[ConjKey, int]

    @classmethod
    def for_keys(cls, keys: Iterable[ConjKey]) -> ConjunctionIds:
        taken: set[int] = set()
        bases: dict[ConjKey, int] = {}
        for key in sorted(set(keys)):
            block = preferred_block(key)
            while block in taken:
                block = block % BLOCKS + 1
            taken.add(block)
            bases[key] = block * BLOCK_SIZE
        return cls(bases)

    def conj_id(self, key: ConjKey, priority_offset: int) -> int:
        """The id for established connections; ``+1`` is the one for new connections."""
        if not 0 <= priority_offset <= 3:
            raise ValueError(f"priority offset {priority_offset} out of 0..3")
        return self.bases[key] + 2 * priority_offset
