"""Keep CPython's cyclic collector off the agent's long-lived state.

At 1000 ports the agent holds ~800k objects (flows, matches, cached FlowMod bytes, ports). A
full collection walks every one of them (~320 ms, measured), and CPython starts one whenever
enough new objects have survived: at a random moment, e.g. in the middle of an OVS restart's
replay (a 190 ms gap between two chunks; replays of 1.1-1.5 s became 1.13-1.15 s) or of a VM
reboot's bundle.

``gc.freeze()`` moves everything alive into a permanent generation that collections skip, so
a collection only walks what changed since. Frozen objects are still freed by reference
counting (flows, ports and bytes hold no cycles); only a reference cycle that was alive at a
freeze and dropped later waits for the next full collection, one per ``full_after`` flow
changes. Young objects are frozen as they are, uncollected: a collection first would
walk them all (a restarted agent's 54k dumped flows: 250 ms), and nearly all of them live on.
"""

from __future__ import annotations

import gc
import logging
import time

LOG = logging.getLogger(__name__)

FREEZE_AFTER_FLOW_CHANGES = 5_000  # ~100 ports' flows: their objects are worth a freeze
FULL_COLLECTION_AFTER = 500_000  # flow changes: ~10 storms of 1000 VM reboots


class LongLivedHeap:
    """Freezes the heap once enough long-lived state was built and the agent is idle."""

    def __init__(
        self,
        freeze_after: int = FREEZE_AFTER_FLOW_CHANGES,
        full_after: int = FULL_COLLECTION_AFTER,
    ) -> None:
        self.freeze_after = freeze_after
        self.full_after = full_after
        self.freezes = 0
        self.full_collections = 0
        self._changes = 0  # since the last freeze
        self._since_full = 0  # since the last full collection

    def grew(self, flow_changes: int) -> None:
        """``flow_changes`` flows were added or replaced: their objects will live on."""
        self._changes += flow_changes
        self._since_full += flow_changes

    def settle(self, force: bool = False) -> bool:
        """Call when idle; returns True if it froze. A freeze costs microseconds (no count, no
        walk); after ``full_after`` flow changes the settle collects everything first, which
        frees what frozen cycles piled up (~0.4 s at 1000 ports, so rarely)."""
        if not force and self._changes < self.freeze_after:
            return False
        started = time.monotonic()
        full = self._since_full >= self.full_after
        if full:
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            self._since_full = 0
        gc.freeze()
        self._changes = 0
        self.freezes += 1
        LOG.debug("heap frozen", extra={"full": full, "ms": (time.monotonic() - started) * 1e3})
        return True
