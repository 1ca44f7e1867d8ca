"""Encoded FlowMod bytes per Flow value, for one bridge cookie.

A replay after an OVS restart, or a re-sync of 50k flows, re-sends bytes: it does not encode
again. Flows are immutable and hash once, so the lookup is one dict probe.
"""

from __future__ import annotations

from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flows import Flow

DEFAULT_CAPACITY = 500_000


class FlowModCache:
    """``encode(flow, command)`` -> FlowMod bytes (xid 0), computed once per (flow, command)."""

    def __init__(self, cookie: int, capacity: int = DEFAULT_CAPACITY) -> None:
        self.cookie = cookie
        self.capacity = capacity
        self.encoder = FastEncoder()
        self._bytes: dict[tuple[Flow, int], bytes] = {}
        self.hits = 0
        self.misses = 0

    def encode(self, flow: Flow, command: int) -> bytes:
        key = (flow, command)
        data = self._bytes.get(key)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        data = self.encoder.encode(flow, command, self.cookie)
        if len(self._bytes) >= self.capacity:
            # drop the oldest half: flows of long-gone ports go first (dicts keep insertion order)
            for stale in list(self._bytes)[: self.capacity // 2]:
                del self._bytes[stale]
        self._bytes[key] = data
        return data

    def __len__(self) -> int:
        return len(self._bytes)

    def clear(self) -> None:
        self._bytes.clear()
