"""Keep CPython's cyclic collector off the agent's long-lived state; give freed memory back.

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

A big change (a reboot storm replaces all 66k flows of 1000 ports) frees a whole generation of
objects, but glibc keeps the freed pages: ``settle(release=True)`` once the change is done hands
them back (``malloc_trim``, ~1 ms; at 1000 ports RSS after a storm 157-175 -> 142-149 MB). And
the big tables such a change builds for a moment (dicts and sets of 10k+ entries) are mapped
apart: glibc raises its mmap threshold to the size of every mapped block freed, so after the
first they came from the heap and fragmented it (a fixed threshold: storm peak -5 MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)

FREEZE_AFTER_FLOW_CHANGES = 5_000  # ~100 ports' flows: their objects are worth a freeze
FULL_COLLECTION_AFTER = 500_000  # flow changes: ~10 storms of 1000 VM reboots


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another libc: nothing to release this way)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()
M_MMAP_THRESHOLD = -3  # mallopt's parameter (glibc malloc.h)
MMAP_THRESHOLD = 256 * 1024  # bytes: blocks from this size are mapped apart, always


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Blocks of ``threshold`` bytes and more mapped apart and unmapped when freed, the
    threshold no longer raised by glibc; False where glibc's ``mallopt`` is not there."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


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
        self._since_release = 0  # since memory was last handed back to the OS
        self.releases = 0
        self.mmap_threshold_fixed = fix_mmap_threshold()

    def grew(self, flow_changes: int) -> None:
        """``flow_changes`` flows were added or replaced: their objects will live on."""
        self._changes += flow_changes
        self._since_full += flow_changes
        self._since_release += flow_changes

    def settle(self, force: bool = False, *, release: bool = False) -> bool:
        """Call when idle; returns True if it froze. A freeze costs microseconds (no count, no
        walk); after ``full_after`` flow changes the settle collects everything first, which
        frees what frozen cycles piled up (~0.4 s at 1000 ports, so rarely). ``release``: the
        change is over (no slice to follow): after ``freeze_after`` flow changes, free pages
        go back to the OS."""
        froze = self._freeze(force)
        if release and (force or self._since_release >= self.freeze_after):
            self._release()
        return froze

    def _freeze(self, force: bool) -> bool:
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

    def _release(self) -> None:
        self._since_release = 0
        if MALLOC_TRIM is None:
            return
        started = time.monotonic()
        MALLOC_TRIM(0)
        self.releases += 1
        LOG.debug("heap released", extra={"ms": (time.monotonic() - started) * 1e3})
