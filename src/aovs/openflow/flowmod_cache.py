"""Encoded FlowMod ADD bytes per Flow value, for one bridge cookie.

A replay after an OVS restart, or a re-sync of 50k flows, re-sends bytes: it does not encode
again. Flows are immutable and hash once, so the lookup is one dict probe.

Only ADDs are kept, and only while their flow is wanted: what a replay sends is an ADD of every
installed flow. A strict delete or modify is sent once (the flow is gone, or replaced by another
whose ADD is the one to keep), so it is encoded and not kept, and the reconciler ``forget``s a
flow it deleted or replaced: the cache holds about one entry per installed flow, not every flow
the bridge ever had (5000 ports: 410k flows). Of each ADD it keeps what follows the
fixed head (see :func:`add_head`).
"""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp

from aovs.openflow import codec
from aovs.openflow.fast_encoder import FLOW_MOD_HEAD, FastEncoder
from aovs.openflow.flows import Flow
from aovs.openflow.messages import OFP_VERSION

DEFAULT_CAPACITY = 500_000
RENEW_ENCODER_GENERATIONS = 4  # a new encoder once 4x the cached flows were forgotten


def add_head(flow: Flow, cookie: int, body: int) -> bytes:
    """The fixed part of ``flow``'s ADD (xid 0) before a match and instructions of ``body``
    bytes: all of it follows from the Flow, so the cache keeps only what comes after it
    (48 of a FlowMod's ~120 bytes)."""
    return FLOW_MOD_HEAD.pack(
        OFP_VERSION, ofp.OFPT_FLOW_MOD, FLOW_MOD_HEAD.size + body, 0, flow.cookie or cookie,
        0, flow.table, codec.ADD, flow.idle_timeout, flow.hard_timeout, flow.priority,
        ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
    )  # fmt: skip


class FlowModCache:
    """``encode(flow, command)`` -> FlowMod bytes (xid 0); an ADD is computed once per flow."""

    def __init__(self, cookie: int, capacity: int = DEFAULT_CAPACITY) -> None:
        self.cookie = cookie
        self.capacity = capacity
        self.encoder = FastEncoder()
        self._bytes: dict[Flow, bytes] = {}  # an ADD's bytes after its fixed head
        self.hits = 0
        self.misses = 0  # FlowMods encoded (any command)
        self._forgotten = 0  # entries forgotten since the encoder was renewed

    def encode(self, flow: Flow, command: int) -> bytes:
        if command != codec.ADD:
            self.misses += 1
            if command == codec.DELETE_STRICT:
                # the flow leaves the switch: its ADD bytes go now, not after the commit, so a
                # bundle replacing every flow (a reboot storm) never holds two generations
                # (should the bundle fail, a replay encodes it again)
                self.forget(flow)
            return self.encoder.encode(flow, command, self.cookie)
        body = self._bytes.get(flow)
        if body is not None:
            self.hits += 1
            return add_head(flow, self.cookie, len(body)) + body
        self.misses += 1
        data = self.encoder.encode(flow, command, self.cookie)
        body = data[FLOW_MOD_HEAD.size :]
        if data[: FLOW_MOD_HEAD.size] != add_head(flow, self.cookie, len(body)):
            return data  # not the head this cache rebuilds (never seen): sent, not kept
        if len(self._bytes) >= self.capacity:
            # a backstop (forget keeps it near the installed set): drop the oldest half
            for stale in list(self._bytes)[: self.capacity // 2]:
                del self._bytes[stale]
        self._bytes[flow] = body
        return data

    def forget(self, flow: Flow) -> None:
        """``flow`` left the switch (deleted, or replaced by another with its key)."""
        if self._bytes.pop(flow, None) is None:
            return
        self._forgotten += 1
        if self._forgotten >= RENEW_ENCODER_GENERATIONS * max(len(self._bytes), 5_000):
            # generations of flows replaced (a reboot storm renumbers every port): most of
            # the encoder's remembered pieces are of flows gone (1000 ports: 10k action lists
            # per storm, ~2 MB, kept until its 200k bound); the next flows build their own
            # (~0.25 s of CPU at 1000 ports: once every few generations)
            self.encoder = FastEncoder()
            self._forgotten = 0

    def __len__(self) -> int:
        return len(self._bytes)

    def clear(self) -> None:
        self._bytes.clear()
