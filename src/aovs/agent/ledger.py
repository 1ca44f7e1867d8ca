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
        later_keys = {flow.key for flow in later.add} | {flow.key for flow in later.remove}
        add = {flow for flow in self.add if flow.key not in later_keys} | later.add
        added_keys = {flow.key for flow in add}
        remove = {flow for flow in self.remove | later.remove if flow.key not in added_keys}
        return FlowDelta(remove=frozenset(remove), add=frozenset(add))


class FlowLedger:
    """One bridge's desired flows, by owner."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self._owners: dict[OwnerKey, frozenset[Flow]] = {}
        self._refs: dict[Flow, int] = {}
        self._key_owner: dict[FlowKey, tuple[Flow, OwnerKey]] = {}
        self._added: set[Flow] = set()
        self._removed: set[Flow] = set()

    def __len__(self) -> int:
        return len(self._refs)

    def owners(self) -> Mapping[OwnerKey, frozenset[Flow]]:
        return self._owners

    def flows_of(self, owner: OwnerKey) -> frozenset[Flow]:
        return self._owners.get(owner, frozenset())

    def desired(self) -> frozenset[Flow]:
        return frozenset(self._refs)

    def replace(self, owner: OwnerKey, flows: Iterable[Flow]) -> None:
        new = frozenset(flows)
        old = self._owners.get(owner, frozenset())
        if new == old:
            return
        if new:
            self._owners[owner] = new
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

    def _ref(self, flow: Flow, owner: OwnerKey) -> None:
        count = self._refs.get(flow, 0)
        self._refs[flow] = count + 1
        if count:
            return
        holder = self._key_owner.get(flow.key)
        if holder is not None and holder[0] != flow:
            LOG.error(
                "two owners want different actions for one flow key",
                extra={"bridge": self.bridge, "owner": owner, "other_owner": holder[1],
                       "flow": flow, "other_flow": holder[0]},
            )  # fmt: skip
        self._key_owner[flow.key] = (flow, owner)
        if flow in self._removed:
            self._removed.discard(flow)
        else:
            self._added.add(flow)

    def _unref(self, flow: Flow) -> None:
        count = self._refs[flow] - 1
        if count:
            self._refs[flow] = count
            return
        del self._refs[flow]
        holder = self._key_owner.get(flow.key)
        if holder is not None and holder[0] == flow:
            del self._key_owner[flow.key]
        if flow in self._added:
            self._added.discard(flow)
        else:
            self._removed.add(flow)
