"""Flows by owner on one bridge, ref-counted, turned into the minimal delta for the reconciler.

Owners replace their whole flow set; the ledger keeps ``flow -> count`` so that a flow two owners
emit is installed once and removed only when neither wants it. ``take_delta`` returns what to
remove and add since the last call: a flow removed then re-added within one change cancels out,
and a removal whose key is re-added with new actions is left to the add (an OpenFlow add with
the same (table, priority, match) replaces in place; a delete after it would remove the new one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aovs.firewall.base import OwnerKey
from aovs.openflow.flows import Flow, Match

LOG = logging.getLogger(__name__)
FlowKey = tuple[int, int, Match]


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
        adds: dict[FlowKey, set[Flow]] = {}
        removes: dict[FlowKey, set[Flow]] = {}
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
        add = frozenset(flow for flows in adds.values() for flow in flows)
        remove = frozenset(flow for flows in removes.values() for flow in flows)
        return FlowDelta(remove=remove, add=add)


class FlowLedger:
    """One bridge's desired flows, by owner.

    Kept compact (5000 ports: 410k flows, 60k owners): each owner's flows as a tuple (a
    frozenset costs 2-3x the memory, and a member owner's one or two flows ~200 bytes), and
    reference counts with one entry per flow: ``_keys`` holds the flow that claimed each key,
    counted once; ``_counts`` only the exceptions, a count above one, or a flow whose key
    another flow holds (two owners disagreeing, logged).
    """

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self._owners: dict[OwnerKey, tuple[Flow, ...]] = {}
        self._keys: dict[FlowKey, Flow] = {}
        self._counts: dict[Flow, int] = {}
        self._unkeyed = 0  # flows in _counts whose key another flow holds
        self._added: set[Flow] = set()
        self._removed: set[Flow] = set()

    def __len__(self) -> int:
        return len(self._keys) + self._unkeyed

    def owners(self) -> Mapping[OwnerKey, frozenset[Flow]]:
        return {owner: frozenset(flows) for owner, flows in self._owners.items()}

    def flows_of(self, owner: OwnerKey) -> frozenset[Flow]:
        return frozenset(self._owners.get(owner, ()))

    def desired(self) -> frozenset[Flow]:
        flows = frozenset(self._keys.values())
        if self._unkeyed:
            flows |= {flow for flow in self._counts if not self._holds(flow)}
        return flows

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
    def pending(self) -> tuple[int, int]:
        """(adds, removes) accumulated since the last take_delta."""
        return len(self._added), len(self._removed)

    def take_delta(self) -> FlowDelta:
        added_keys = {flow.key for flow in self._added}
        remove = frozenset(f for f in self._removed if f.key not in added_keys)
        delta = FlowDelta(remove=remove, add=frozenset(self._added))
        self._added.clear()
        self._removed.clear()
        return delta

    def _holds(self, flow: Flow) -> bool:
        return self._keys.get(flow.key) == flow

    def _count(self, flow: Flow) -> int:
        count = self._counts.get(flow)
        if count is not None:
            return count
        return 1 if self._holds(flow) else 0

    def _ref(self, flow: Flow, owner: OwnerKey) -> None:
        count = self._count(flow)
        if count:
            self._counts[flow] = count + 1
            return
        holder = self._keys.get(flow.key)
        if holder is None:
            self._keys[flow.key] = flow
        else:
            other = next((o for o, held in self._owners.items() if holder in held), None)
            LOG.error(
                "two owners want different actions for one flow key",
                extra={"bridge": self.bridge, "owner": owner, "other_owner": other,
                       "flow": flow, "other_flow": holder},
            )  # fmt: skip
            self._counts[flow] = 1
            self._unkeyed += 1
        if flow in self._removed:
            self._removed.discard(flow)
        else:
            self._added.add(flow)

    def _unref(self, flow: Flow) -> None:
        holds = self._holds(flow)
        count = self._count(flow) - 1
        if count:
            if count == 1 and holds:
                del self._counts[flow]  # back to the implicit one
            else:
                self._counts[flow] = count
            return
        if holds:
            del self._keys[flow.key]
            self._counts.pop(flow, None)
        else:
            del self._counts[flow]
            self._unkeyed -= 1
        if flow in self._added:
            self._added.discard(flow)
        else:
            self._removed.add(flow)
