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

One exception, asked for with ``take_over=True`` (the agent does, at every start): until the
first full sync has committed, dumps read EVERY cookie, and that sync takes the bridge over from
whoever ran it before (neutron's agent): in the same single bundle it strict-deletes by exact key
every flow of another cookie that is not desired, and ADDs each desired flow, which also
replaces a foreign flow holding the same key (an ADD replaces the rule, cookie included;
MODIFY_STRICT would keep the foreign cookie: OpenFlow 1.3 and ovs-vswitchd 3.1 change only the
instructions). So there is no instant with a port unwired, and afterwards no foreign flow is
left but those that expire by themselves (an idle or hard timeout: MACs learned by a learn
action, which the next packets relearn; deleting them would only make those packets flood).
An agent restart over its own flows sends nothing, as before. After a reconnect (an OVS
restart) the dump is of the bridge cookie again: flows someone added since the takeover are
theirs (an operator's ovs-ofctl, another controller), not a previous agent's, and are left
alone; only a takeover that has not committed yet (the switch went away mid-way) is redone.
Bundles are serialised per bridge; concurrent ``sync`` calls coalesce to the latest set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, overload

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow import codec
from aovs.openflow.bundle import BundleEntry, commit_bundle
from aovs.openflow.channel import ChannelEvent, Connected, OpenFlowChannel
from aovs.openflow.errors import BundleError, ChannelClosedError, OpenFlowError
from aovs.openflow.flow_stats import FlowStatsDecoder, Undecoded, collector_paused
from aovs.openflow.flowmod_cache import FlowModCache
from aovs.openflow.flows import Flow, Match
from aovs.openflow.messages import DATAPATH

LOG = logging.getLogger(__name__)

FlowKey = tuple[int, int, Match]
# ovs-vswitchd's own hidden rules (recirculation, controller): reported by a dump of every
# table, with cookie 0, and read-only (a FlowMod there fails with EPERM): never anyone's to take
OVS_INTERNAL_TABLE = 254


def stable_cookie(bridge: str) -> int:
    """A per-bridge cookie that is the same at every agent start (no churn on restart)."""
    digest = hashlib.sha256(f"aovs:{bridge}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass
class FlowModPlan:
    """The FlowMods that turn installed into desired (``delete_foreign``: flows of another
    cookie, strict-deleted by key at a takeover; sent first, then delete, modify, add)."""

    delete: list[Flow] = field(default_factory=list)
    modify: list[Flow] = field(default_factory=list)
    add: list[Flow] = field(default_factory=list)
    delete_foreign: list[Flow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.delete) + len(self.modify) + len(self.add) + len(self.delete_foreign)


@dataclass(frozen=True)
class Takeover:
    """What the first sync of a ``take_over`` reconciler did to flows of other cookies."""

    deleted: int  # strict-deleted: not desired
    replaced: int  # a desired key held by a foreign flow: ADDed over it (our cookie now)
    left: int  # expire by themselves (idle/hard timeout): left alone
    cookies: frozenset[int]  # the foreign cookies found

    @property
    def found(self) -> int:
        return self.deleted + self.replaced + self.left


def expires(flow: Flow) -> bool:
    """A flow that goes by itself (a learned MAC): a takeover leaves it alone."""
    return bool(flow.idle_timeout or flow.hard_timeout)


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


def plan_takeover(
    installed: Mapping[FlowKey, Flow],
    foreign: Mapping[FlowKey, Flow],
    desired: Mapping[FlowKey, Flow],
    opaque: Container[FlowKey] = (),
) -> FlowModPlan:
    """The first sync over a bridge another agent ran: :func:`plan_sync` of our own flows, and
    every foreign flow that is not desired (and does not expire by itself) strict-deleted by
    key. A desired key a foreign flow holds is not in ``installed``, so it is ADDed, which
    replaces the foreign rule, cookie included (a MODIFY_STRICT would keep the foreign cookie).
    ``installed`` and ``foreign`` are disjoint (the switch has one rule per key)."""
    plan = plan_sync(installed, desired, opaque)
    plan.delete_foreign = [
        flow for key, flow in foreign.items() if key not in desired and not expires(flow)
    ]
    return plan


def takeover_summary(foreign: Mapping[FlowKey, Flow], desired: Mapping[FlowKey, Flow]) -> Takeover:
    """What :func:`plan_takeover` does to ``foreign``, counted."""
    replaced = sum(1 for key in foreign if key in desired)
    left = sum(1 for key, flow in foreign.items() if key not in desired and expires(flow))
    return Takeover(
        deleted=len(foreign) - replaced - left,
        replaced=replaced,
        left=left,
        cookies=frozenset(flow.cookie for flow in foreign.values()),
    )


def pending_changes(
    installed: Mapping[FlowKey, Flow],
    desired: Mapping[FlowKey, Flow],
    opaque: Container[FlowKey] = (),
) -> dict[FlowKey, Flow | None]:
    """The keys where ``desired`` differs from ``installed``, with the desired flow (None:
    installed but not desired); an opaque key that is desired always differs."""
    get = installed.get
    changes: dict[FlowKey, Flow | None] = {
        key: want
        for key, want in desired.items()
        if (have := get(key)) is not want and (have != want or key in opaque)
    }
    for key in installed:
        if key not in desired:
            changes[key] = None
    return changes


def share_equal(
    installed: dict[FlowKey, Flow],
    desired: Mapping[FlowKey, Flow],
    opaque: Container[FlowKey] = (),
) -> None:
    """Let ``installed`` hold the desired Flow objects where they are equal: a dump decodes
    a copy of every flow (an agent restart, a reconnect), which would otherwise stay beside
    the one the pipelines built (5000 ports: 410k flows, ~150 MB twice)."""
    for key, have in installed.items():
        want = desired.get(key)
        if want is not None and want is not have and want == have and key not in opaque:
            installed[key] = want


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


class BundleCompanion(Protocol):
    """What must happen on the switch around each bundle but cannot be in it (a bridge's
    meters: :class:`aovs.openflow.meters.MeterReconciler`)."""

    async def before_bundle(self, plan: FlowModPlan) -> FlowModPlan:
        """Prepare what ``plan``'s flows need; returns the plan that may be sent."""
        ...

    async def after_bundle(self, installed: Collection[Flow]) -> None:
        """The bundle committed (or nothing was to be sent); ``installed``: every flow now."""
        ...


class FlowReconciler:
    """One bridge's reconciler. Create it after the channel; it follows reconnects itself.

    ``take_over``: the first full sync also removes every flow of another cookie (see the
    module docstring); until it has committed, dumps read every cookie and ``foreign`` holds
    what they found."""

    def __init__(
        self,
        channel: OpenFlowChannel,
        cookie: int,
        *,
        bundle_timeout: float | None = None,
        dump_timeout: float | None = None,
        take_over: bool = False,
        companion: BundleCompanion | None = None,
    ) -> None:
        if not 0 < cookie < 1 << 64:
            raise ValueError(f"cookie {cookie:#x} must be a non-zero 64-bit value")
        self.channel = channel
        self.cookie = cookie
        self.companion = companion  # meters: around every commit, resyncs included
        self.bundle_timeout = bundle_timeout
        self.dump_timeout = dump_timeout
        self.cache = FlowModCache(cookie)
        self._decoder = FlowStatsDecoder(cookie)
        self.flowmods_sent = 0
        self.bundles_committed = 0
        self.resyncs = 0
        self._installed: dict[FlowKey, Flow] = {}
        self._opaque: set[FlowKey] = set()  # installed flows we could not decode
        self._taking_over = take_over  # until the first full sync commits
        self._foreign: dict[FlowKey, Flow] = {}  # other cookies' flows (only while taking over)
        self.takeover: Takeover | None = None  # what the takeover did, once it committed
        # The desired set, kept as its difference to ``_installed`` (they are equal once a
        # change has committed: 5000 ports, 410k flows, a second dict of them was ~20 MB):
        # ``_pending`` maps each key where they may differ to the desired flow (None: absent).
        self._wanted = False  # a desired set was given (sync)
        self._pending: dict[FlowKey, Flow | None] = {}
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
        """The last desired set (``sync``, then ``apply``'s changes), or None before a sync;
        a copy, built on each call."""
        return self._desired_now() if self._wanted else None

    @property
    def foreign(self) -> Mapping[FlowKey, Flow]:
        """Flows of other cookies found by the last dump, until the takeover commits (empty
        without ``take_over``); their ``cookie`` is the one the switch reported."""
        return self._foreign

    @property
    def taking_over(self) -> bool:
        """The takeover (``take_over=True``) has not committed yet."""
        return self._taking_over

    async def sync(self, desired: Iterable[Flow]) -> int:
        """Make the bridge's aovs flows exactly ``desired``; returns FlowMods sent.

        The set is remembered first: if the switch is unreachable (ChannelClosedError), it is
        applied on reconnect. A BundleError leaves the switch as it was.
        """
        target = self._keyed(desired)
        self._requested += 1
        generation = self._requested
        self._wanted = True
        share_equal(self._installed, target, self._opaque)
        self._pending = pending_changes(self._installed, target, self._opaque)
        del target
        async with self._lock:
            if self._done >= generation:
                return 0  # a newer set was applied while we waited
            latest = self._requested
            await self._ensure_dumped()
            sent = await self._commit_full()
            self._done = latest
            return sent

    async def apply(self, remove: Iterable[Flow] = (), add: Iterable[Flow] = ()) -> int:
        """Remove some flows and add (or change) others in one bundle; O(delta)."""
        # One dict for the whole change (a cold boot's bundle can hold 400k flows). It joins
        # the desired set when it commits, or when it fails (then a resync applies it): not
        # as pending meanwhile, which would double the bundle's keys while it is sent.
        # (a dict of flows taken as one of flows or None: nothing else holds it)
        generation = self._requested  # a sync meanwhile replaces the desired set: not ours
        removed: dict[FlowKey, Flow | None] = {}  # key -> desired there once removed
        for flow in remove:
            key = flow.key
            desired = removed[key] if key in removed else self._desired_get(key)
            removed[key] = None if desired == flow else desired
        changes: dict[FlowKey, Flow | None] = self._keyed(add)  # type: ignore[assignment]
        kept: dict[FlowKey, Flow | None] = {}  # removed from the switch, still desired
        for key, desired in removed.items():
            if key in changes:
                continue  # re-added: the add replaces it
            changes[key] = None
            if self._wanted and desired is not None:
                kept[key] = desired  # not the desired flow there: what is desired stays
        del removed
        outcome: _Outcome | None = None
        try:
            async with self._lock:
                await self._ensure_dumped()
                plan = plan_change(self._installed, changes, self._opaque)
                # the change as the plan and ``kept`` tell it: ``changes`` (a storm's 130k
                # keys) is not held while the bundle is sent
                outcome = _Outcome(plan, kept, _unplanned(changes, plan))
                changes = {}
                ours = self._wanted and self._requested == generation
                return await self._commit(plan, outcome if ours else None)
        except BaseException:
            if self._wanted and self._requested == generation:
                if outcome is None:
                    changes.update(kept)
                for key, want in outcome.items() if outcome is not None else changes.items():
                    self._want(key, want)
            raise

    async def warm_cache(self, batch: int = 1000) -> int:
        """Encode the desired flows' FlowMods ahead of need; returns how many were encoded.

        A restarted agent finds its flows installed and sends nothing, so its cache starts
        empty; the first OVS restart after that would encode every flow inside the replay
        (64k flows: ~1.3 s of CPU). Called in the background once the agent is ready, a batch
        at a time, so events are never held up for more than a few milliseconds.
        """
        encoded = 0
        if not self._wanted:
            return 0
        flows = list(self._desired_now().values())
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
            keyed = {f.key: f for f in listed}
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
                if self._wanted:
                    sent = await self._commit_full()
                    LOG.info("%s: resynced after connect: %d FlowMods", self.channel, sent)
                    self._done = self._requested
        except ChannelClosedError as exc:
            LOG.info("%s: resync interrupted: %s", self.channel, exc)
        except BundleError as exc:
            LOG.error("%s: resync failed, switch left as it was: %s", self.channel, exc)
        except OpenFlowError as exc:
            LOG.warning("%s: resync failed: %s", self.channel, exc)

    async def _commit_full(self) -> int:
        """The full diff to the desired set, committed (the takeover when one is due)."""
        assert self._wanted
        if not self._taking_over:
            return await self._commit(plan_change(self._installed, self._pending, self._opaque))
        desired = self._desired_now()
        summary = takeover_summary(self._foreign, desired)
        sent = await self._commit(
            plan_takeover(self._installed, self._foreign, desired, self._opaque)
        )
        self._taking_over = False
        self._foreign = {}
        self.takeover = summary
        if summary.found:
            LOG.info(
                "%s: took the bridge over: %d foreign flows deleted, %d replaced by ours, "
                "%d left to expire (cookies %s); %d FlowMods in one bundle",
                self.channel, summary.deleted, summary.replaced, summary.left,
                ", ".join(f"{c:#x}" for c in sorted(summary.cookies)[:8]), sent,
            )  # fmt: skip
        return sent

    async def _ensure_dumped(self) -> None:
        if self._dumped_on != self.channel.connections or not self.channel.connected:
            await self._dump()

    async def _dump(self) -> None:
        """Read the installed view: the bridge cookie's flows, or while taking over every
        flow, ours in ``installed`` and the others in ``foreign``."""
        if not self.channel.connected:
            raise ChannelClosedError(f"{self.channel}: not connected")
        connection = self.channel.connections
        every = self._taking_over
        # the decoder reports our cookie as 0, so a foreign flow with cookie 0 (a learned
        # one, say) would pass for ours: those few are dumped apart, to tell them apart
        zero = await self._dump_cookie(0, codec.ALL_ONES_64) if every else []
        replies = await self._dump_cookie(*((0, 0) if every else (self.cookie, codec.ALL_ONES_64)))
        installed: dict[FlowKey, Flow] = {}
        opaque: set[FlowKey] = set()
        foreign: dict[FlowKey, Flow] = {}
        with collector_paused():
            for reply in zero:
                for item in FlowStatsDecoder().decode_reply(reply):
                    self._found_foreign(foreign, item)
            zero_keys = set(foreign)
            for reply in replies:
                for item in self._decoder.decode_reply(reply):
                    if isinstance(item, Undecoded):
                        if item.stats.cookie != self.cookie:
                            self._found_foreign(foreign, item)
                            continue
                        placeholder = self._placeholder(item)
                        if placeholder is None:
                            continue
                        opaque.add(placeholder.key)
                        item = placeholder
                    elif (
                        item.cookie
                        or item.table == OVS_INTERNAL_TABLE
                        or (zero_keys and item.key in zero_keys)
                    ):  # not ours (only in a dump of every cookie)
                        self._found_foreign(foreign, item)
                        continue
                    installed[item.key] = item
                await asyncio.sleep(0)  # a reply (~600 flows) at a time: the loop stays live
        if self._wanted:
            desired = self._desired_now()
            share_equal(installed, desired, opaque)
            self._pending = pending_changes(installed, desired, opaque)
            del desired
        self._installed = installed
        self._opaque = opaque
        self._foreign = foreign
        self._dumped_on = connection

    def _found_foreign(self, foreign: dict[FlowKey, Flow], item: Flow | Undecoded) -> None:
        """Another cookie's flow, kept by key (ovs-vswitchd's own hidden rules left out)."""
        flow = item if isinstance(item, Flow) else self._placeholder(item, foreign=True)
        if flow is not None and flow.table != OVS_INTERNAL_TABLE:
            foreign.setdefault(flow.key, flow)

    async def _dump_cookie(self, cookie: int, mask: int) -> list[bytes]:
        request = ofpp.OFPFlowStatsRequest(
            DATAPATH,
            0,
            ofp.OFPTT_ALL,
            ofp.OFPP_ANY,
            ofp.OFPG_ANY,
            cookie,
            mask,
            ofpp.OFPMatch(),
        )
        return await self.channel.multipart_unparsed(request, within=self.dump_timeout)

    def _placeholder(self, item: Undecoded, *, foreign: bool = False) -> Flow | None:
        """A flow we cannot represent: keep its key so a sync replaces or deletes it (a
        foreign one also keeps its cookie and timeouts)."""
        entry, exc = item.stats, item.error
        whose = "foreign" if foreign else "owned"
        try:
            match = codec.decode_match(entry.match)
        except Exception:
            LOG.warning("%s: ignoring an undecodable %s flow: %s", self.channel, whose, exc)
            return None
        if not foreign:
            LOG.warning(
                "%s: owned flow with unsupported parts (%s) will be replaced", self.channel, exc
            )
            return Flow(entry.table_id, entry.priority, match)
        # another agent's actions need not be ours to read: its key is all a delete needs
        LOG.debug("%s: foreign flow known by its key only: %s", self.channel, exc)
        return Flow(
            entry.table_id,
            entry.priority,
            match,
            cookie=entry.cookie,
            idle_timeout=entry.idle_timeout,
            hard_timeout=entry.hard_timeout,
        )

    async def _commit(self, plan: FlowModPlan, after: _Outcome | None = None) -> int:
        """Send ``plan`` in one bundle and update the installed view. ``after``: the desired
        flow at each of its keys once this commits (``apply``'s change, naming every key of
        the plan); without it, each key of the plan keeps the desired flow it had."""
        sent = 0
        if self.companion is not None:
            plan = await self.companion.before_bundle(plan)
        if plan:
            cache = self.cache
            entries = _FlowMods(self._foreign_deletes(plan.delete_foreign), plan, cache)
            self.flowmods_sent += len(entries)
            await commit_bundle(self.channel, entries, within=self.bundle_timeout)
            self.bundles_committed += 1
            sent = len(entries)
            self._installed_now(plan, track=after is None)
        if self.companion is not None:
            await self.companion.after_bundle(self._installed.values())
        if self._wanted:
            for key, want in after.items() if after is not None else ():
                self._want(key, want)
            if not self._pending:
                self._pending = {}  # a dict keeps its largest table: let that one go
        return sent

    def _installed_now(self, plan: FlowModPlan, *, track: bool) -> None:
        """``plan`` committed: the installed view (and the cache) follow; with ``track``, the
        desired flow at each key is read before its installed one changes, and kept."""
        installed = self._installed
        cache = self.cache
        track = track and self._wanted
        for flow in plan.delete:
            key = flow.key
            want = self._desired_get(key) if track else None
            gone = installed.pop(key, None)
            self._opaque.discard(key)
            cache.forget(flow)  # its ADD bytes would only serve a replay: gone with it
            if gone is not None and gone != flow:
                cache.forget(gone)
            if track:
                self._want(key, want)
        for flow in plan.modify:
            self._install(flow, track=track)
        for flow in plan.add:
            self._install(flow, track=track, added=True)
        if self._foreign:  # a delta while taking over: what it added replaced a foreign rule
            for flow in plan.add:
                self._foreign.pop(flow.key, None)
            for flow in plan.delete_foreign:
                self._foreign.pop(flow.key, None)

    def _desired_now(self) -> dict[FlowKey, Flow]:
        """The desired set in full: the installed view with the pending changes applied."""
        desired = dict(self._installed)
        for key, want in self._pending.items():
            if want is None:
                desired.pop(key, None)
            else:
                desired[key] = want
        return desired

    def _desired_get(self, key: FlowKey) -> Flow | None:
        if key in self._pending:
            return self._pending[key]
        return self._installed.get(key)

    def _want(self, key: FlowKey, want: Flow | None) -> None:
        """The desired flow at ``key`` is ``want`` (None: none): pending unless installed."""
        have = self._installed.get(key)
        if have is want or (have is not None and have == want and key not in self._opaque):
            self._pending.pop(key, None)
        else:
            self._pending[key] = want

    def _install(self, flow: Flow, *, track: bool, added: bool = False) -> None:
        """``flow`` is on the switch now; the one it replaced (same key) no longer is
        (``track``: the desired flow there stays what it was)."""
        key = flow.key
        want = self._desired_get(key) if track else None
        replaced = self._installed.get(key)
        self._installed[key] = flow
        if added:
            self._opaque.discard(key)
        if replaced is not None and replaced != flow:
            self.cache.forget(replaced)
        if track:
            self._want(key, want)

    def _foreign_deletes(self, flows: list[Flow]) -> list[BundleEntry]:
        """Strict deletes of other cookies' flows, encoded now and never cached (each is sent
        once; the cache keeps our flows' bytes for replays). One we cannot encode is left on
        the switch, named in a warning, rather than failing the whole takeover."""
        entries: list[BundleEntry] = []
        for flow in flows:
            try:
                data = self.cache.encoder.encode(flow, codec.DELETE_STRICT, self.cookie)
            except ValueError as exc:
                LOG.warning("%s: cannot delete foreign flow %r, left: %s", self.channel, flow, exc)
                continue
            entries.append(BundleEntry(data, flow))
        return entries


def _unplanned(
    changes: Mapping[FlowKey, Flow | None], plan: FlowModPlan
) -> list[tuple[FlowKey, Flow | None]]:
    """The keys of ``changes`` its plan sends nothing for (already as wanted), with what is
    wanted there."""
    if len(plan) == len(changes):
        return []  # one FlowMod per key: every key planned (a storm, a cold boot)
    planned = {flow.key for part in (plan.delete, plan.modify, plan.add) for flow in part}
    return [(key, want) for key, want in changes.items() if key not in planned]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The desired flow at each key of an ``apply`` once it is done: what its plan sends
    there (None: deleted), what needed nothing (``unplanned``), and where the flow removed
    was not the desired one, the desired one (``kept``). Read from the plan's lists: no dict
    of every key beside them while the bundle is sent (a storm: 130k keys, 5 MB)."""

    plan: FlowModPlan
    kept: Mapping[FlowKey, Flow | None]
    unplanned: list[tuple[FlowKey, Flow | None]]

    def items(self) -> Iterator[tuple[FlowKey, Flow | None]]:
        kept = self.kept
        for flow in self.plan.delete:
            if flow.key not in kept:
                yield flow.key, None
        for flow in self.plan.modify:
            yield flow.key, flow
        for flow in self.plan.add:
            yield flow.key, flow
        for key, want in self.unplanned:
            if key not in kept:
                yield key, want
        yield from kept.items()


class _FlowMods(Sequence["_FlowMod | BundleEntry"]):
    """A plan's bundle entries in the order they are sent (``first``, then strict deletes,
    modifies, adds), each made only when it is read: a cold boot's bundle of 400k FlowMods
    holds no object per FlowMod, only the chunk being sent."""

    def __init__(self, first: list[BundleEntry], plan: FlowModPlan, cache: FlowModCache) -> None:
        self._parts: list[tuple[list[BundleEntry] | list[Flow], int | None]] = [
            (first, None),
            (plan.delete, codec.DELETE_STRICT),
            (plan.modify, codec.MODIFY_STRICT),
            (plan.add, codec.ADD),
        ]
        self._cache = cache
        self._len = sum(len(part) for part, _ in self._parts)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> _FlowMod | BundleEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[_FlowMod | BundleEntry]: ...

    def __getitem__(
        self, index: int | slice
    ) -> _FlowMod | BundleEntry | list[_FlowMod | BundleEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if index >= 0:
            for part, command in self._parts:
                if index < len(part):
                    item = part[index]
                    if command is None:
                        assert isinstance(item, BundleEntry)
                        return item
                    assert isinstance(item, Flow)
                    return _FlowMod(item, command, self._cache)
                index -= len(part)
        raise IndexError("bundle entry out of range")


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
