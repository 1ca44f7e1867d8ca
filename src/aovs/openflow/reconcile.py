"""Keep one bridge's aovs-owned flows equal to a desired set, one atomic bundle per change.

``FlowReconciler`` holds what is installed (keyed by ``Flow.key``) and the last desired set.
- ``sync(desired)`` diffs the whole set: DELETE_STRICT what is no longer wanted, MODIFY_STRICT
  where only the actions changed (keeps the flow's counters), ADD the rest; one bundle.
- ``apply(remove, add)`` sends a delta in O(delta) (a few ports' flows, no 50k-flow diff).
- After every (re)connect it dumps the bridge's flows with its cookie first, so an agent
  restart against a switch that has the right flows sends nothing, and an OVS restart (empty
  tables) replays everything in one bundle from cached bytes.
Only flows carrying the bridge cookie are aovs's: others are never dumped, modified or deleted
(dumps filter on the cookie; strict modify/delete name the exact key WITHOUT a cookie mask, see
:func:`aovs.openflow.codec.flow_mod`, and only for keys this reconciler installed or dumped). The
installed view changes only after a commit.
Bundles are serialised per bridge; concurrent ``sync`` calls coalesce to the latest set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow import codec
from aovs.openflow.bundle import commit_bundle
from aovs.openflow.channel import ChannelEvent, Connected, OpenFlowChannel
from aovs.openflow.errors import BundleError, ChannelClosedError, OpenFlowError
from aovs.openflow.flow_stats import FlowStatsDecoder, Undecoded, collector_paused
from aovs.openflow.flowmod_cache import FlowModCache
from aovs.openflow.flows import Flow, Match
from aovs.openflow.messages import DATAPATH

LOG = logging.getLogger(__name__)

FlowKey = tuple[int, int, Match]


def stable_cookie(bridge: str) -> int:
    """A per-bridge cookie that is the same at every agent start (no churn on restart)."""
    digest = hashlib.sha256(f"aovs:{bridge}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass
class FlowModPlan:
    """The FlowMods that turn installed into desired."""

    delete: list[Flow] = field(default_factory=list)
    modify: list[Flow] = field(default_factory=list)
    add: list[Flow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.delete) + len(self.modify) + len(self.add)


def plan_change(
    installed: Mapping[FlowKey, Flow],
    changes: Mapping[FlowKey, Flow | None],
    opaque: Container[FlowKey] = (),
) -> FlowModPlan:
    """What to send so each key in ``changes`` ends up as given (None: absent).

    ``opaque`` keys are installed flows we could not decode: always replaced by an ADD.
    """
    plan = FlowModPlan()
    for key, want in changes.items():
        have = installed.get(key)
        if want is None:
            if have is not None:
                plan.delete.append(have)
        else:
            _plan_one(plan, key, have, want, opaque)
    return plan


def _plan_one(
    plan: FlowModPlan, key: FlowKey, have: Flow | None, want: Flow, opaque: Container[FlowKey]
) -> None:
    if have is None or key in opaque:
        plan.add.append(want)
    elif have != want:
        same_but_actions = (have.idle_timeout, have.hard_timeout, have.cookie) == (
            want.idle_timeout,
            want.hard_timeout,
            want.cookie,
        )
        (plan.modify if same_but_actions else plan.add).append(want)


def plan_sync(
    installed: Mapping[FlowKey, Flow],
    desired: Mapping[FlowKey, Flow],
    opaque: Container[FlowKey] = (),
) -> FlowModPlan:
    """The full diff: everything installed but not desired goes (one pass over each side:
    after an agent restart both hold 30k-60k flows and nothing differs)."""
    plan = FlowModPlan()
    plan.delete = [have for key, have in installed.items() if key not in desired]
    get = installed.get
    for key, want in desired.items():
        have = get(key)
        if have is not want or (opaque and key in opaque):
            _plan_one(plan, key, have, want, opaque)
    return plan


class FlowReconciler:
    """One bridge's reconciler. Create it after the channel; it follows reconnects itself."""

    def __init__(
        self,
        channel: OpenFlowChannel,
        cookie: int,
        *,
        bundle_timeout: float | None = None,
        dump_timeout: float | None = None,
    ) -> None:
        if not 0 < cookie < 1 << 64:
            raise ValueError(f"cookie {cookie:#x} must be a non-zero 64-bit value")
        self.channel = channel
        self.cookie = cookie
        self.bundle_timeout = bundle_timeout
        self.dump_timeout = dump_timeout
        self.cache = FlowModCache(cookie)
        self._decoder = FlowStatsDecoder(cookie)
        self.flowmods_sent = 0
        self.bundles_committed = 0
        self.resyncs = 0
        self._installed: dict[FlowKey, Flow] = {}
        self._opaque: set[FlowKey] = set()  # installed flows we could not decode
        self._desired: dict[FlowKey, Flow] | None = None
        self._dumped_on = -1  # channel.connections when the installed view was last dumped
        self._lock = asyncio.Lock()
        self._requested = 0  # sync generations: coalesce to the newest
        self._done = 0
        self._resync_task: asyncio.Task[None] | None = None
        self._unsubscribe = channel.subscribe(self._on_channel_event)

    # -- public API -----------------------------------------------------------------------------
    @property
    def installed(self) -> Mapping[FlowKey, Flow]:
        """The aovs-owned flows on the switch as of the last dump or commit (read-only)."""
        return self._installed

    @property
    def desired(self) -> Mapping[FlowKey, Flow] | None:
        return self._desired

    async def sync(self, desired: Iterable[Flow]) -> int:
        """Make the bridge's aovs flows exactly ``desired``; returns FlowMods sent.

        The set is remembered first: if the switch is unreachable (ChannelClosedError), it is
        applied on reconnect. A BundleError leaves the switch as it was.
        """
        target = self._keyed(desired)
        self._requested += 1
        generation = self._requested
        self._desired = target
        async with self._lock:
            if self._done >= generation:
                return 0  # a newer set was applied while we waited
            latest = self._requested
            await self._ensure_dumped()
            assert self._desired is not None
            sent = await self._commit(plan_sync(self._installed, self._desired, self._opaque))
            self._done = latest
            return sent

    async def apply(self, remove: Iterable[Flow] = (), add: Iterable[Flow] = ()) -> int:
        """Remove some flows and add (or change) others in one bundle; O(delta)."""
        changes: dict[FlowKey, Flow | None] = {flow.key: None for flow in remove}
        additions = self._keyed(add)
        changes.update(additions)
        if self._desired is not None:
            for flow in remove:
                if self._desired.get(flow.key) == flow:
                    del self._desired[flow.key]
            self._desired.update(additions)
        async with self._lock:
            await self._ensure_dumped()
            return await self._commit(plan_change(self._installed, changes, self._opaque))

    async def warm_cache(self, batch: int = 1000) -> int:
        """Encode the desired flows' FlowMods ahead of need; returns how many were encoded.

        A restarted agent finds its flows installed and sends nothing, so its cache starts
        empty; the first OVS restart after that would encode every flow inside the replay
        (64k flows: ~1.3 s of CPU). Called in the background once the agent is ready, a batch
        at a time, so events are never held up for more than a few milliseconds.
        """
        encoded = 0
        desired = self._desired
        if desired is None:
            return 0
        flows = list(desired.values())
        for start in range(0, len(flows), batch):
            before = self.cache.misses
            for flow in flows[start : start + batch]:
                with contextlib.suppress(ValueError):  # unsupported: the bundle will say so
                    self.cache.encode(flow, codec.ADD)
            encoded += self.cache.misses - before
            await asyncio.sleep(0)
        return encoded

    async def refresh(self) -> None:
        """Re-read the installed view from the switch (e.g. after someone ran ovs-ofctl)."""
        async with self._lock:
            await self._dump()

    async def wait_idle(self) -> None:
        """Wait until no resync (after a reconnect) is running."""
        task = self._resync_task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, OpenFlowError):
                await task

    def close(self) -> None:
        self._unsubscribe()
        if self._resync_task is not None:
            self._resync_task.cancel()

    # -- internals ------------------------------------------------------------------------------
    def _keyed(self, flows: Iterable[Flow]) -> dict[FlowKey, Flow]:
        listed = list(flows)
        if not any(flow.cookie for flow in listed):
            keyed = {(f.table, f.priority, f.match): f for f in listed}
            if len(keyed) == len(listed) or len(keyed) == len(set(listed)):
                return keyed  # the common case: unstamped flows, one per key
        keyed = {}
        for flow in listed:
            if flow.cookie not in (0, self.cookie):
                raise ValueError(f"{flow!r}: flows must leave the cookie to the reconciler")
            if flow.cookie:
                flow = flow.replace(cookie=0)
            other = keyed.get(flow.key)
            if other is not None and other != flow:
                raise ValueError(f"two desired flows with one key: {other!r} and {flow!r}")
            keyed[flow.key] = flow
        return keyed

    def _on_channel_event(self, event: ChannelEvent) -> None:
        if not isinstance(event, Connected):
            return
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = asyncio.create_task(self._resync(), name=f"resync {self.channel}")

    async def _resync(self) -> None:
        try:
            async with self._lock:
                await self._dump()
                self.resyncs += 1
                if self._desired is not None:
                    sent = await self._commit(
                        plan_sync(self._installed, self._desired, self._opaque)
                    )
                    LOG.info("%s: resynced after connect: %d FlowMods", self.channel, sent)
                    self._done = self._requested
        except ChannelClosedError as exc:
            LOG.info("%s: resync interrupted: %s", self.channel, exc)
        except BundleError as exc:
            LOG.error("%s: resync failed, switch left as it was: %s", self.channel, exc)
        except OpenFlowError as exc:
            LOG.warning("%s: resync failed: %s", self.channel, exc)

    async def _ensure_dumped(self) -> None:
        if self._dumped_on != self.channel.connections or not self.channel.connected:
            await self._dump()

    async def _dump(self) -> None:
        if not self.channel.connected:
            raise ChannelClosedError(f"{self.channel}: not connected")
        connection = self.channel.connections
        request = ofpp.OFPFlowStatsRequest(
            DATAPATH,
            0,
            ofp.OFPTT_ALL,
            ofp.OFPP_ANY,
            ofp.OFPG_ANY,
            self.cookie,
            codec.ALL_ONES_64,
            ofpp.OFPMatch(),
        )
        replies = await self.channel.multipart_unparsed(request, within=self.dump_timeout)
        installed: dict[FlowKey, Flow] = {}
        opaque: set[FlowKey] = set()
        with collector_paused():
            for reply in replies:
                for item in self._decoder.decode_reply(reply):
                    if isinstance(item, Undecoded):
                        placeholder = self._placeholder(item.stats, item.error)
                        if placeholder is None:
                            continue
                        opaque.add(placeholder.key)
                        item = placeholder
                    installed[item.key] = item
                await asyncio.sleep(0)  # a reply (~600 flows) at a time: the loop stays live
        self._installed = installed
        self._opaque = opaque
        self._dumped_on = connection

    def _placeholder(self, entry: object, exc: Exception) -> Flow | None:
        """An owned flow we cannot represent: keep its key so a sync replaces or deletes it."""
        try:
            match = codec.decode_match(entry.match)  # type: ignore[attr-defined]
        except Exception:
            LOG.warning("%s: ignoring an undecodable flow: %s", self.channel, exc)
            return None
        LOG.warning(
            "%s: owned flow with unsupported parts (%s) will be replaced", self.channel, exc
        )
        table, priority = entry.table_id, entry.priority  # type: ignore[attr-defined]
        return Flow(table, priority, match)

    async def _commit(self, plan: FlowModPlan) -> int:
        if not plan:
            return 0
        cache = self.cache
        entries = [_FlowMod(f, codec.DELETE_STRICT, cache) for f in plan.delete]
        entries += [_FlowMod(f, codec.MODIFY_STRICT, cache) for f in plan.modify]
        entries += [_FlowMod(f, codec.ADD, cache) for f in plan.add]
        self.flowmods_sent += len(entries)
        await commit_bundle(self.channel, entries, within=self.bundle_timeout)
        self.bundles_committed += 1
        installed = self._installed
        for flow in plan.delete:
            installed.pop(flow.key, None)
            self._opaque.discard(flow.key)
        for flow in plan.modify:
            installed[flow.key] = flow
        for flow in plan.add:
            installed[flow.key] = flow
            self._opaque.discard(flow.key)
        return len(entries)


class _FlowMod:
    """A bundle entry encoded (or fetched from the cache) only when it is sent."""

    __slots__ = ("cache", "command", "flow")

    def __init__(self, flow: Flow, command: int, cache: FlowModCache) -> None:
        self.flow = flow
        self.command = command
        self.cache = cache

    @property
    def data(self) -> bytes:
        return self.cache.encode(self.flow, self.command)
