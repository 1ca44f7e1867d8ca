"""Keep one bridge's OpenFlow meters equal to a desired set, around the flow bundles.

Meters are not flows: ovs-vswitchd's bundles refuse meter mods (``ofputil_is_bundlable`` is
false for OFPT_METER_MOD: OFPBFC_MSG_UNSUP), a flow that names a meter the switch lacks is
refused (OFPMMFC_INVALID_METER: one such FlowMod fails its whole bundle), and deleting a meter
deletes every flow that uses it (``OFPRR_METER_DELETE``). So, for one bridge:

- before a bundle (:meth:`MeterReconciler.prepare`): every desired meter missing or different
  on the switch is added or modified, and a barrier waited for; a flow of the bundle whose
  meter is not on the switch as desired (the switch refused it) is held back
  (:func:`held_back`): it stays desired, the rest of the bundle goes in;
- after it (:meth:`MeterReconciler.prune`): installed meters no longer desired, and used by no
  flow the flow reconciler has installed, are deleted.

The installed view is read from the switch (OFPMP_METER_CONFIG) on the first use of each
connection, so an agent restart over the right meters sends nothing. Every meter of the bridge
is aovs's (meters have no cookie; neutron's agent also takes br-int's as its own). A meter the
switch refuses (no meter support in the datapath, out of meters) is remembered with the
error (``rejected``) and not sent again until its value changes or the connection is new; the
agent reports it as a problem of the port that wanted it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.errors import SwitchError
from aovs.openflow.flows import ApplyMeter, Flow, Meter
from aovs.openflow.messages import DATAPATH, serialize
from aovs.openflow.reconcile import FlowModPlan

LOG = logging.getLogger(__name__)

METER_MOD_HEAD = struct.Struct("!HHI")  # after the ofp_header: command, flags, meter_id
UNIT_FLAGS: dict[str, int] = {"kbps": ofp.OFPMF_KBPS, "pktps": ofp.OFPMF_PKTPS}


# -- encode / decode ---------------------------------------------------------------------------
def meter_flags(meter: Meter) -> int:
    burst: int = ofp.OFPMF_BURST if meter.burst else 0
    return UNIT_FLAGS[meter.unit] | burst


def meter_mod(meter: Meter, command: int) -> Any:
    """The os-ken OFPMeterMod that adds (OFPMC_ADD) or modifies (OFPMC_MODIFY) ``meter``."""
    band = ofpp.OFPMeterBandDrop(rate=meter.rate, burst_size=meter.burst)
    return ofpp.OFPMeterMod(
        DATAPATH, command=command, flags=meter_flags(meter), meter_id=meter.id, bands=[band]
    )


def delete_mod(meter_id: int) -> Any:
    return ofpp.OFPMeterMod(DATAPATH, command=ofp.OFPMC_DELETE, flags=0, meter_id=meter_id)


def encode_meter_mod(meter: Meter, command: int, xid: int = 0) -> bytes:
    return serialize(meter_mod(meter, command), xid)


def decode_meter_config(stats: Any) -> Meter | None:
    """One OFPMeterConfigStats -> the Meter it is; None for a shape aovs never makes (several
    bands, a DSCP-remark band, no unit): such a meter is replaced or deleted, never kept."""
    flags = stats.flags
    units = [unit for unit, bit in UNIT_FLAGS.items() if flags & bit]
    bands = stats.bands
    if len(units) != 1 or len(bands) != 1 or not isinstance(bands[0], ofpp.OFPMeterBandDrop):
        return None
    burst = bands[0].burst_size if flags & ofp.OFPMF_BURST else 0
    try:
        return Meter(stats.meter_id, units[0], bands[0].rate, burst)
    except ValueError:
        return None


def decode_meter_mod(data: bytes) -> tuple[int, Meter | int]:
    """A meter mod we encoded -> (command, the Meter, or the id of a delete) (tests, logs;
    os-ken parses no controller-to-switch meter mod)."""
    command, flags, meter_id = METER_MOD_HEAD.unpack_from(data, 8)
    if command == ofp.OFPMC_DELETE:
        return command, meter_id
    bands, offset = [], 8 + METER_MOD_HEAD.size
    while offset < len(data):
        band = ofpp.OFPMeterBandHeader.parser(data, offset)
        bands.append(band)
        offset += band.len
    meter = decode_meter_config(ofpp.OFPMeterConfigStats(flags, meter_id, bands))
    if meter is None:
        raise ValueError(f"not a meter aovs makes: {data.hex()}")
    return command, meter


# -- plans -------------------------------------------------------------------------------------
@dataclass
class MeterPlan:
    """What turns installed into desired: adds and modifies before the bundle, deletes after."""

    add: list[Meter] = field(default_factory=list)
    modify: list[Meter] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)


def plan_meters(
    installed: Mapping[int, Meter | None],
    desired: Mapping[int, Meter],
    rejected: Collection[Meter] = (),
    in_use: Collection[int] = (),
) -> MeterPlan:
    """The meter mods from ``installed`` to ``desired``: an id on the switch is modified (any
    other value, or one aovs cannot read), a new one added; a meter ``rejected`` by the switch
    is not sent again; installed ids not desired are deleted unless a flow still uses them."""
    plan = MeterPlan()
    for meter_id, want in desired.items():
        if want in rejected:
            continue
        if meter_id not in installed:
            plan.add.append(want)
        elif installed[meter_id] != want:
            plan.modify.append(want)
    plan.delete = [i for i in installed if i not in desired and i not in in_use]
    return plan


def flow_meter(flow: Flow) -> int | None:
    """The meter a flow applies, if any (ApplyMeter is always its first action)."""
    actions = flow.actions
    return actions[0].meter_id if actions and isinstance(actions[0], ApplyMeter) else None


def meters_used(flows: Iterable[Flow]) -> set[int]:
    return {meter_id for flow in flows if (meter_id := flow_meter(flow)) is not None}


def held_back(plan: FlowModPlan, usable: Callable[[int], bool]) -> tuple[FlowModPlan, list[Flow]]:
    """``plan`` without the adds and modifies whose meter is not usable on the switch (they
    would fail the whole bundle), and those flows. One pass of a type check per flow (a cold
    boot's 400k: ~35 ms here); the plan itself is returned when nothing is held back."""
    kept = [
        flow
        for flows in (plan.add, plan.modify)
        for flow in flows
        if flow.actions
        and type(first := flow.actions[0]) is ApplyMeter
        and not usable(first.meter_id)
    ]
    if not kept:
        return plan, kept
    held = set(kept)
    add = [flow for flow in plan.add if flow not in held]
    modify = [flow for flow in plan.modify if flow not in held]
    return FlowModPlan(plan.delete, modify, add, plan.delete_foreign), kept


# -- the shell ---------------------------------------------------------------------------------
class MeterReconciler:
    """One bridge's meters (see the module docstring). The flow reconciler calls
    :meth:`prepare` before and :meth:`prune` after each bundle; the agent sets :meth:`want`."""

    def __init__(self, channel: OpenFlowChannel, *, within: float | None = None) -> None:
        self.channel = channel
        self.within = within
        self.meter_mods_sent = 0
        self.rejected: dict[Meter, str] = {}  # refused by the switch: the error, one line
        self._desired: dict[int, Meter] = {}
        self._installed: dict[int, Meter | None] = {}
        self._dumped_on = -1
        self._lock = asyncio.Lock()

    @property
    def installed(self) -> Mapping[int, Meter | None]:
        return self._installed

    @property
    def desired(self) -> Mapping[int, Meter]:
        return self._desired

    def want(self, meters: Iterable[Meter]) -> None:
        """The bridge's meters from now on (one per id: the caller resolves clashes)."""
        self._desired = {meter.id: meter for meter in meters}

    def usable(self, meter_id: int) -> bool:
        """The meter is on the switch as desired: a flow may name it."""
        want = self._desired.get(meter_id)
        return want is not None and self._installed.get(meter_id) == want

    async def before_bundle(self, plan: FlowModPlan) -> FlowModPlan:
        """:meth:`prepare`, then ``plan`` less the flows whose meter is not usable."""
        await self.prepare()
        plan, kept = held_back(plan, self.usable)
        if kept:
            LOG.warning("%s: %d flows held back, their meters not on the switch (first: %r)",
                        self.channel, len(kept), kept[0])  # fmt: skip
        return plan

    async def after_bundle(self, installed: Collection[Flow]) -> None:
        await self.prune(lambda: meters_used(installed))

    async def prepare(self) -> int:
        """Add and modify what the next bundle's flows need; returns meter mods sent."""
        async with self._lock:
            await self._ensure_dumped()
            plan = plan_meters(self._installed, self._desired, self.rejected)
            mods = [(ofp.OFPMC_ADD, m) for m in plan.add]
            mods += [(ofp.OFPMC_MODIFY, m) for m in plan.modify]
            return await self._send(mods)

    async def prune(self, in_use: Callable[[], Collection[int]]) -> int:
        """Delete installed meters nobody wants (``in_use``: the meters installed flows name,
        asked only when there is something to delete); returns meter mods sent."""
        async with self._lock:
            await self._ensure_dumped()
            if all(meter_id in self._desired for meter_id in self._installed):
                return 0
            plan = plan_meters(self._installed, self._desired, in_use=in_use())
            return await self._send([(ofp.OFPMC_DELETE, meter_id) for meter_id in plan.delete])

    async def _ensure_dumped(self) -> None:
        if self._dumped_on != self.channel.connections or not self.channel.connected:
            await self.refresh()

    async def refresh(self) -> None:
        """Read the switch's meters (a new connection also forgets what it refused before)."""
        connection = self.channel.connections
        request = ofpp.OFPMeterConfigStatsRequest(DATAPATH, 0, ofp.OFPM_ALL)
        items = await self.channel.multipart(request, within=self.within)
        self._installed = {item.meter_id: decode_meter_config(item) for item in items}
        if self._dumped_on != connection:
            self.rejected.clear()
        self._dumped_on = connection

    async def _send(self, mods: list[tuple[int, Any]]) -> int:
        """Meter mods back to back, then a barrier; the switch's errors arrive before its
        reply (in order), each claimed by its xid."""
        if not mods:
            return 0
        channel = self.channel
        xids = channel.allocate_xids(len(mods))
        failures: dict[int, SwitchError] = {}

        def claim(xid: int, error: SwitchError) -> bool:
            if xid in xids:
                failures[xid] = error
                return True
            return False

        with channel.watch_errors(claim):
            data = b"".join(
                serialize(delete_mod(what) if command == ofp.OFPMC_DELETE else
                          meter_mod(what, command), xid)
                for xid, (command, what) in zip(xids, mods, strict=True)
            )  # fmt: skip
            self.meter_mods_sent += len(mods)
            await channel.send(data)
            await channel.barrier(within=self.within)
        for xid, (command, what) in zip(xids, mods, strict=True):
            error = failures.get(xid)
            if command == ofp.OFPMC_DELETE:
                if error is None:
                    self._installed.pop(what, None)
                else:
                    LOG.warning("%s: meter %d not deleted: %s", channel, what, error)
            elif error is None:
                self._installed[what.id] = what
                self.rejected.pop(what, None)
            else:
                reason = str(error).split(" (xid")[0]
                self.rejected[what] = reason
                LOG.error("%s: switch refused meter %r: %s", channel, what, reason)
        return len(mods)
