"""Flows by owner on one bridge, ref-counted, turned into the minimal delta for the reconciler.

Owners replace their whole flow set; the ledger keeps ``flow -> count`` so that a flow two owners
emit is installed once and removed only when neither wants it. ``take_delta`` returns what to
remove and add since the last call: a flow removed then re-added within one change cancels out,
and a removal whose key is re-added with new actions is left to the add (an OpenFlow add with
the same (table, priority, match) replaces in place; a delete after it would remove the new one).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aovs.firewall.base import OwnerKey
from aovs.openflow.flows import Flow, Match

LOG = logging.getLogger(__name__)
FlowKey = tuple[int, int, Match]
K = TypeVar("K")
V = TypeVar("V")
# keys changed in one delta after which ``_keys`` is checked for a table grown past its need
COMPACT_AFTER = 5_000


def compacted(table: dict[K, V]) -> dict[K, V]:
    """``table``, or a copy of it if its hash table is twice what its entries need: a dict
    never shrinks, and one whose every key was replaced (a reboot storm: 66k deleted, 66k
    added) has doubled (1000 ports: 5 MB instead of 2.5, kept for good)."""
    if sys.getsizeof(table) > 64 * len(table) + 1024:  # a fresh copy needs <= ~60 per entry
        return dict(table)
    return table


@dataclass(frozen=True, slots=True)
class FlowDelta:
    remove: frozenset[Flow]
    add: frozenset[Flow]

    def __bool__(self) -> bool:
        return bool(self.remove or self.add)

    def __len__(self) -> int:
        return len(self.remove) + len(self.add)

    def then(self, later: FlowDelta) -> FlowDelta:
        """This delta followed by ``later``, as one, by OpenFlow key: a later add or remove of
        a key supersedes an earlier add of it (an add replaces the rule with that key), and a
        removal is kept only for keys the combined delta does not add."""
        return FlowDelta.merged((self, later))

    @staticmethod
    def merged(deltas: Iterable[FlowDelta]) -> FlowDelta:
        """``deltas`` in order, as one (see ``then``), in one pass over them all: a burst's
        slices (5000 ports: 21 of them, 410k flows) merged pairwise would copy the growing
        result once per slice."""
        # one Flow per key, a set only where a key has several (rare): a set per key made
        # this merge the storm's peak (1000 ports: 130k one-flow sets, ~28 MB)
        adds: dict[FlowKey, Flow | set[Flow]] = {}
        removes: dict[FlowKey, Flow | set[Flow]] = {}
        for delta in deltas:
            added = {flow.key for flow in delta.add}
            for flow in delta.remove:
                adds.pop(flow.key, None)
            for key in added:
                adds.pop(key, None)
                removes.pop(key, None)
            for flow in delta.remove:
                if flow.key not in added:
                    _collect(removes, flow)
            for flow in delta.add:
                _collect(adds, flow)
            del added
        # each table let go as soon as its set is built (a storm's: 66k keys, 2.5 MB each)
        remove = frozenset(_each(removes.values()))
        del removes
        add = frozenset(_each(adds.values()))
        del adds
        return FlowDelta(remove=remove, add=add)


def _collect(by_key: dict[FlowKey, Flow | set[Flow]], flow: Flow) -> None:
    """Add ``flow`` to the flows ``by_key`` holds at its key."""
    key = flow.key
    have = by_key.get(key)
    if have is None:
        by_key[key] = flow
    elif isinstance(have, set):
        have.add(flow)
    elif have != flow:
        by_key[key] = {have, flow}


def _each(held: Iterable[Flow | set[Flow]]) -> Iterator[Flow]:
    """Every flow of ``_collect``'s values, in the order a set per key would give them."""
    for flows in held:
        if isinstance(flows, set):
            yield from flows
        else:
            yield flows


class FlowLedger:
    """One bridge's desired flows, by owner.

    Kept compact (5000 ports: 410k flows, 60k owners): each owner's flows as a tuple (a
    frozenset costs 2-3x the memory, and a member owner's one or two flows ~200 bytes), and
    reference counts with one entry per flow: ``_keys`` holds the flow that has each key (the
    one the switch gets), counted once; ``_counts`` only the exceptions, a count above one, or
    a flow whose key another flow holds.

    A switch keeps ONE rule per (table, priority, match): two owners wanting one key with
    different actions (an OVS restart renumbers ports, and for a moment the port that took
    ofport 1 and the port that still has its flows for ofport 1 both claim ``in_port=1``) is
    settled by the newest claim winning, the other waiting, counted, to take the key back if
    the winner goes first. The delta is computed per key from what it held at the last
    ``take_delta``, so a departing owner's removal never deletes another owner's rule with the
    same key (a strict delete matches the key, not the actions).
    """

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self._owners: dict[OwnerKey, tuple[Flow, ...]] = {}
        self._keys: dict[FlowKey, Flow] = {}
        self._counts: dict[Flow, int] = {}
        self._unkeyed = 0  # flows in _counts whose key another flow holds
        self._before: dict[FlowKey, Flow | None] = {}  # changed keys: their flow at the last delta
        self._conflicts = 0  # keys claimed while held, since the last delta (one log line)
        self._conflict: tuple[OwnerKey, Flow, Flow] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def owners(self) -> Mapping[OwnerKey, frozenset[Flow]]:
        return {owner: frozenset(flows) for owner, flows in self._owners.items()}

    def flows_of(self, owner: OwnerKey) -> frozenset[Flow]:
        return frozenset(self._owners.get(owner, ()))

    def desired(self) -> frozenset[Flow]:
        """One flow per key: what the switch should hold."""
        return frozenset(self._keys.values())

    def replace(self, owner: OwnerKey, flows: Iterable[Flow]) -> None:
        new = frozenset(flows)
        old = frozenset(self._owners.get(owner, ()))
        if new == old:
            return
        if new:
            self._owners[owner] = tuple(new)
        else:
            self._owners.pop(owner, None)
        for flow in old - new:
            self._unref(flow)
        for flow in new - old:
            self._ref(flow, owner)

    @property
    def pending(self) -> int:
        """Keys changed since the last take_delta (an add or a removal each, at most)."""
        return len(self._before)

    def take_delta(self) -> FlowDelta:
        add: list[Flow] = []
        remove: list[Flow] = []
        keys = self._keys
        for key, before in self._before.items():
            now = keys.get(key)
            if now is None:
                if before is not None:
                    remove.append(before)
            elif now != before:
                add.append(now)  # an add replaces whatever rule has the key
        if len(self._before) > COMPACT_AFTER:
            self._keys = compacted(self._keys)
        self._before = {}
        if self._conflict is not None:
            owner, flow, holder = self._conflict
            LOG.warning(
                "owners wanted different actions for one flow key: the newest claim wins",
                extra={"bridge": self.bridge, "keys": self._conflicts, "owner": owner,
                       "flow": flow, "other_flow": holder},
            )  # fmt: skip
            self._conflicts, self._conflict = 0, None
        return FlowDelta(remove=frozenset(remove), add=frozenset(add))

    def _holds(self, flow: Flow) -> bool:
        return self._keys.get(flow.key) == flow

    def _count(self, flow: Flow) -> int:
        count = self._counts.get(flow)
        if count is not None:
            return count
        return 1 if self._holds(flow) else 0

    def _touch(self, key: FlowKey) -> None:
        if key not in self._before:
            self._before[key] = self._keys.get(key)

    def _ref(self, flow: Flow, owner: OwnerKey) -> None:
        count = self._count(flow)
        if count:
            self._counts[flow] = count + 1
            return
        key = flow.key
        holder = self._keys.get(key)
        self._touch(key)
        if holder is not None:
            self._conflicts += 1
            self._conflict = (owner, flow, holder)
            self._counts[holder] = self._count(holder)  # explicit: it no longer holds the key
            self._unkeyed += 1
        self._keys[key] = flow

    def _unref(self, flow: Flow) -> None:
        holds = self._holds(flow)
        count = self._count(flow) - 1
        if count:
            if count == 1 and holds:
                del self._counts[flow]  # back to the implicit one
            else:
                self._counts[flow] = count
            return
        if not holds:  # waiting for its key: never on the switch, nothing to remove
            del self._counts[flow]
            self._unkeyed -= 1
            return
        key = flow.key
        self._touch(key)
        self._counts.pop(flow, None)
        heir = self._heir(key) if self._unkeyed else None
        if heir is None:
            del self._keys[key]
            return
        self._keys[key] = heir  # the flow that waited for the key takes it
        self._unkeyed -= 1
        if self._counts[heir] == 1:
            del self._counts[heir]

    def _heir(self, key: FlowKey) -> Flow | None:
        """A flow some owner still wants with ``key``, waiting (rare: a scan is fine)."""
        return next((f for f in self._counts if f.key == key and not self._holds(f)), None)
