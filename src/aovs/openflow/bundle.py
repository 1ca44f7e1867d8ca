"""All-or-nothing FlowMod batches: the ONF bundle extension for OpenFlow 1.3 (as OVS has it).

``commit_bundle`` opens a bundle, pipelines every add (no per-message wait: ordering on the
connection is the guarantee), sends a barrier, and only then decides:
- OVS validates each BUNDLE_ADD on its own and answers a bad one with an error carrying that
  add's xid, but a later COMMIT would still apply the rest. So errors are collected up to the
  barrier reply (which OVS sends after every earlier error) and, if any, the bundle is
  DISCARDed and ``BundleError`` names the offending Flow.
- Otherwise COMMIT; a failed commit applies nothing (OVS rolls the whole bundle back) and also
  raises ``BundleError``.
A connection loss at any point leaves nothing applied either: OVS discards open bundles when
the connection closes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.errors import BundleError, OpenFlowError, SwitchError
from aovs.openflow.flows import Flow
from aovs.openflow.messages import DATAPATH, OFP_VERSION

LOG = logging.getLogger(__name__)

FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
ADD_HEAD = struct.Struct("!BBHIIII2xH")  # ofp_header, experimenter, exp_type, bundle_id, flags
XID = struct.Struct("!I")
SEND_CHUNK = 2000  # adds per write
# How long a bundle may keep ovs-vswitchd busy, per message, on top of the base timeout: its
# cost per flow grows with the flows and ports it holds (a cold boot's bundle: ~16 us per flow
# at 1000 ports, ~150 us at 5000 on this machine class); a bundle that overran this would be
# reset and asked again, so the allowance is generous (see aovs.openflow.switch_busy).
SECONDS_PER_MESSAGE = 1 / 1000


class Entry(Protocol):
    """One message of a bundle: its encoded bytes (any xid) and the Flow it stands for.

    ``data`` is read once, as the add is sent: it may encode lazily, so encoding overlaps
    with the switch digesting the previous chunk.
    """

    @property
    def data(self) -> bytes: ...

    @property
    def flow(self) -> Flow: ...


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """An already-encoded bundle message."""

    data: bytes
    flow: Flow


def add_messages(bundle_id: int, entries: Sequence[Entry], first_xid: int) -> bytes:
    """Every BUNDLE_ADD back to back; the inner message's xid equals its add's xid."""
    pieces: list[bytes] = []
    append = pieces.append
    pack = ADD_HEAD.pack
    exp, exp_type = ofproto_common.ONF_EXPERIMENTER_ID, ofp.ONF_ET_BUNDLE_ADD_MESSAGE
    for xid, entry in enumerate(entries, first_xid):
        try:
            data = entry.data
        except ValueError as exc:  # UnsupportedFlowError from a lazy encode
            raise BundleError(f"cannot encode {entry.flow!r}: {exc}", entry.flow, exc) from exc
        append(pack(OFP_VERSION, ofp.OFPT_EXPERIMENTER, 24 + len(data), xid, exp, exp_type,
                    bundle_id, FLAGS))  # fmt: skip
        append(data[:4])
        append(XID.pack(xid))
        append(data[8:])
    return b"".join(pieces)


def _control(bundle_id: int, kind: int) -> object:
    return ofpp.ONFBundleCtrlMsg(DATAPATH, bundle_id, kind, FLAGS, [])


async def commit_bundle(
    channel: OpenFlowChannel, entries: Sequence[Entry], *, within: float | None = None
) -> None:
    """Apply ``entries`` atomically or not at all (raises ``BundleError``)."""
    if not entries:
        return
    base = channel.request_timeout if within is None else within
    with channel.busy.holding(len(entries) * SECONDS_PER_MESSAGE):
        await _commit(channel, entries, base)


async def _commit(channel: OpenFlowChannel, entries: Sequence[Entry], base: float) -> None:
    """``commit_bundle`` while the switch is held busy: every request's limit is ``base`` plus
    what the hold has left."""
    bundle_id = channel.next_xid()
    xids = channel.allocate_xids(len(entries))
    failures: list[tuple[int, SwitchError]] = []

    def claim(xid: int, error: SwitchError) -> bool:
        if xid in xids:
            failures.append((xid, error))
            return True
        return False

    with channel.watch_errors(claim):
        try:
            await channel.request(
                _control(bundle_id, ofp.ONF_BCT_OPEN_REQUEST), within=base, what="bundle open"
            )
            # send as we build: OVS digests one chunk while the next is encoded
            for start in range(0, len(entries), SEND_CHUNK):
                chunk = entries[start : start + SEND_CHUNK]
                try:
                    messages = add_messages(bundle_id, chunk, xids.start + start)
                except BundleError:
                    await _discard(channel, bundle_id, base)
                    raise
                await channel.send(messages)
            await channel.barrier(within=base)
        except BundleError:
            raise
        except OpenFlowError as exc:
            raise BundleError(f"bundle of {len(entries)} not applied: {exc}", cause=exc) from exc
        if failures:
            await _discard(channel, bundle_id, base)
            raise _first_failure(failures, xids, entries, "rejected")
        try:
            await channel.request(
                _control(bundle_id, ofp.ONF_BCT_COMMIT_REQUEST), within=base, what="bundle commit"
            )
        except OpenFlowError as exc:
            if failures:
                raise _first_failure(failures, xids, entries, "failed at commit") from exc
            raise BundleError(f"bundle of {len(entries)} not committed: {exc}", cause=exc) from exc


def _first_failure(
    failures: list[tuple[int, SwitchError]],
    xids: range,
    entries: Sequence[Entry],
    verb: str,
) -> BundleError:
    xid, error = min(failures, key=lambda item: item[0])
    flow = entries[xid - xids.start].flow
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    message = (
        f"bundle of {len(entries)} discarded: switch {verb} {flow!r}{more}: "
        f"{error.args[0].split(' (xid')[0]}"
    )
    LOG.error("%s", message)
    return BundleError(message, flow=flow, cause=error)


async def _discard(channel: OpenFlowChannel, bundle_id: int, within: float) -> None:
    try:
        await channel.request(
            _control(bundle_id, ofp.ONF_BCT_DISCARD_REQUEST), within=within, what="bundle discard"
        )
    except OpenFlowError as exc:
        # closing the connection discards it too: make sure that happens
        channel.reset(f"bundle discard failed: {exc}")
