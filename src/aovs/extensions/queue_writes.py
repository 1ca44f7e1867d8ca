"""The minimum-bandwidth queues of the ``qos`` extension, written to OVSDB as neutron's
openvswitch QoS driver writes them (neutron/agent/common/ovs_lib.py, neutron 29:
``update_minimum_bandwidth_queue``, ``_update_queue``, ``_update_qos``,
``delete_minimum_bandwidth_queue``).

The shell's side of :attr:`aovs.agent.core.Plan.queues`. The rows:

- one ``Queue`` per port: ``other_config`` ``min-rate`` (bit/s) and ``max-rate`` (OVS's
  maximum, as neutron leaves it), ``external_ids`` ``port`` (neutron's port id), ``type``
  (``minimum_bandwidth``), ``queue-num`` (the port's ofport);
- one ``QoS`` of type ``linux-htb`` (``external_ids`` ``id``, ``_type``: ``minimum_bandwidth``)
  whose ``queues`` map holds every port's queue by its number, set as ``Port.qos`` of every
  egress NIC: the ports of the physical bridges that are neither patch nor internal ports;
- no queue left: the QoS row goes, and the ``Port.qos`` naming it is cleared (neutron's
  ``delete_minimum_bandwidth_queue``).

Unlike neutron (a read and a write per OVSDB call), the whole set is reconciled in ONE
transaction: read Queue, QoS and the egress Ports, write only what differs. An agent restart
with the rows already right writes nothing. A previous agent's rows (neutron's, another
``id``) are adopted, duplicates removed. Writes are serialised and coalesced: only the newest
set is written, never an older one after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aovs.extensions.base import MinBandwidthQueue
from aovs.ovsdb import ConnectionLost, OVSDBClient, OVSDBError
from aovs.ovsdb.datum import NamedUuid, Uuid
from aovs.ovsdb.transaction import Clause, Select, SelectedRows, TransactionBuilder

LOG = logging.getLogger(__name__)

MIN_BW_TYPE = "minimum_bandwidth"  # neutron_lib's qos_consts.RULE_TYPE_MINIMUM_BANDWIDTH
OVS_MAX_RATE = 2**35 - 1  # neutron's ovs_lib.OVS_MAX_RATE
QOS_TYPE = "linux-htb"
QOS_ID = "aovs-minimum-bandwidth"  # external_ids:id of our QoS row (neutron: a random uuid)
NOT_EGRESS_TYPES = frozenset({"patch", "internal"})
ATTEMPTS = 3
RETRY_DELAY = 1.0

Ref = Uuid | NamedUuid


def queue_other_config(spec: MinBandwidthQueue) -> dict[str, str]:
    """neutron's ``_update_queue`` for a minimum: min-rate in bit/s, max-rate unlimited."""
    return {"min-rate": str(spec.min_kbps * 1000), "max-rate": str(OVS_MAX_RATE)}


def queue_external_ids(spec: MinBandwidthQueue) -> dict[str, str]:
    return {"port": spec.port_id, "type": MIN_BW_TYPE, "queue-num": str(spec.queue_num)}


def qos_columns(queues: Mapping[int, Ref]) -> dict[str, Any]:
    """neutron's ``_update_qos`` row, with every queue."""
    return {
        "type": QOS_TYPE,
        "other_config": {"max-rate": str(OVS_MAX_RATE)},
        "external_ids": {"id": QOS_ID, "_type": MIN_BW_TYPE},
        "queues": dict(queues),
    }


def _by_uuid(uuid: Uuid) -> tuple[Clause, ...]:
    return (("_uuid", "==", uuid),)


def _delete(txn: TransactionBuilder, table: str, uuid: Uuid) -> None:
    txn.ops.append({"op": "delete", "table": table, "where": [["_uuid", "==", ["uuid", uuid]]]})


def _queue_num(row: Mapping[str, Any]) -> int | None:
    text = row["external_ids"].get("queue-num", "")
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class SetMinimumBandwidthQueues:
    """Make OVSDB hold exactly ``wanted`` (neutron port id -> queue) on the ``egress`` Ports,
    leaving the Queue rows of the ports in ``keep`` as they are."""

    wanted: Mapping[str, MinBandwidthQueue]
    keep: frozenset[str] = frozenset()
    egress: tuple[str, ...] = ()
    changes: list[int] = field(default_factory=list, compare=False)  # per build: writes

    QUEUES = Select("Queue", (), ("_uuid", "external_ids", "other_config"))
    QOS = Select("QoS", (), ("_uuid", "type", "external_ids", "other_config", "queues"))
    PORTS_WITH_QOS = Select("Port", (("qos", "!=", None),), ("_uuid", "name", "qos"))

    def _egress_select(self, name: str) -> Select:
        return Select("Port", (("name", "==", name),), ("_uuid", "name", "qos"))

    def reads(self) -> Sequence[Select]:
        return [self.QUEUES, self.QOS, self.PORTS_WITH_QOS,
                *(self._egress_select(n) for n in self.egress)]  # fmt: skip

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        queues = self._queues(snapshot.rows(self.QUEUES), txn)
        ours = [r for r in snapshot.rows(self.QOS) if r["external_ids"].get("_type") == MIN_BW_TYPE]
        ours.sort(key=lambda r: r["external_ids"].get("id") != QOS_ID)  # ours first, then adopted
        qos: Ref | None = None
        if queues:
            want = qos_columns(queues)
            if ours:
                row = ours.pop(0)
                qos = row["_uuid"]
                txn.update("QoS", _by_uuid(row["_uuid"]),
                           {k: v for k, v in want.items() if row[k] != v})  # fmt: skip
            else:
                qos = txn.insert("QoS", want)
        gone = {row["_uuid"] for row in ours}
        egress = [row for n in self.egress for row in snapshot.rows(self._egress_select(n))]
        for row in egress:
            if row["qos"] != qos and qos is not None:
                txn.update("Port", _by_uuid(row["_uuid"]), {"qos": qos})
        egress_uuids = {row["_uuid"] for row in egress} if qos is not None else set()
        for row in snapshot.rows(self.PORTS_WITH_QOS):
            if row["qos"] in gone and row["_uuid"] not in egress_uuids:
                txn.update("Port", _by_uuid(row["_uuid"]), {"qos": None})
        for uuid in sorted(gone):
            _delete(txn, "QoS", uuid)
        self.changes.append(txn.changes)

    def _queues(self, rows: list[dict[str, Any]], txn: TransactionBuilder) -> dict[int, Ref]:
        """Each wanted port's Queue row (updated or inserted), kept ones as they are, the rest
        deleted; their references by queue number."""
        by_port: dict[str, dict[str, Any]] = {}
        for row in sorted(rows, key=lambda r: r["_uuid"]):
            if row["external_ids"].get("type") != MIN_BW_TYPE:
                continue  # neutron's ingress bandwidth_limit queues, or not neutron's at all
            port = row["external_ids"].get("port", "")
            if port in by_port:
                _delete(txn, "Queue", row["_uuid"])  # a duplicate
            else:
                by_port[port] = row
        refs: dict[int, Ref] = {}
        wanted = {spec.port_id: spec for spec in self.wanted.values()}
        for port, spec in sorted(wanted.items()):
            columns = {
                "other_config": queue_other_config(spec),
                "external_ids": queue_external_ids(spec),
            }
            known = by_port.get(port)
            if known is None:
                refs[spec.queue_num] = txn.insert("Queue", columns)
            else:
                txn.update("Queue", _by_uuid(known["_uuid"]),
                           {k: v for k, v in columns.items() if known[k] != v})  # fmt: skip
                refs[spec.queue_num] = known["_uuid"]
        for port, row in by_port.items():
            if port in wanted:
                continue
            number = _queue_num(row)
            if port in self.keep and number is not None:
                refs.setdefault(number, row["_uuid"])
            else:
                _delete(txn, "Queue", row["_uuid"])
        return refs


@dataclass
class _ReadEgress:
    """The physical bridges' egress ports: Bridge rows, the patch and internal interfaces."""

    bridges: tuple[str, ...]
    ports: list[Uuid] = field(default_factory=list)
    not_egress: set[Uuid] = field(default_factory=set)

    def _bridge(self, name: str) -> Select:
        return Select("Bridge", (("name", "==", name),), ("_uuid", "ports"))

    def _typed(self, kind: str) -> Select:
        return Select("Interface", (("type", "==", kind),), ("_uuid",))

    def reads(self) -> Sequence[Select]:
        return [*(self._bridge(b) for b in self.bridges),
                *(self._typed(k) for k in sorted(NOT_EGRESS_TYPES))]  # fmt: skip

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        for bridge in self.bridges:
            for row in snapshot.rows(self._bridge(bridge)):
                self.ports.extend(sorted(row["ports"]))
        for kind in NOT_EGRESS_TYPES:
            self.not_egress.update(snapshot.uuids(self._typed(kind)))


@dataclass
class _ReadPorts:
    uuids: Sequence[Uuid]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def _port(self, uuid: Uuid) -> Select:
        return Select("Port", _by_uuid(uuid), ("name", "interfaces"))

    def reads(self) -> Sequence[Select]:
        return [self._port(uuid) for uuid in self.uuids]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        for uuid in self.uuids:
            self.rows.extend(snapshot.rows(self._port(uuid)))


async def egress_ports(ovsdb: OVSDBClient, bridges: Sequence[str]) -> tuple[str, ...]:
    """neutron's ``phy_br.get_bridge_ports``: the physical bridges' ports that are neither patch
    ports (to br-int) nor internal ones (the bridge's own), by name."""
    found = _ReadEgress(tuple(bridges))
    await ovsdb.transact(found)
    if not found.ports:
        return ()
    ports = _ReadPorts(found.ports)
    await ovsdb.transact(ports)
    return tuple(
        sorted(
            row["name"]
            for row in ports.rows
            if row["interfaces"] and not row["interfaces"] & found.not_egress
        )
    )


@dataclass(frozen=True)
class WantedQueues:
    wanted: Mapping[str, MinBandwidthQueue]
    keep: frozenset[str]
    bridges: tuple[str, ...]


class QueueWriter:
    """Writes the newest wanted set, one transaction at a time (a set asked for while one is
    written is written after it; sets asked for meanwhile are skipped for the newest)."""

    def __init__(self, ovsdb: OVSDBClient) -> None:
        self.ovsdb = ovsdb
        self.reconciled = 0  # wanted sets read and made true (written or already right)
        self.transactions = 0  # of which those that had to write something
        self._latest: WantedQueues | None = None
        self._task: asyncio.Task[None] | None = None

    def want(
        self, wanted: Mapping[str, MinBandwidthQueue], keep: frozenset[str], bridges: Sequence[str]
    ) -> None:
        self._latest = WantedQueues(dict(wanted), keep, tuple(bridges))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def idle(self) -> None:
        """Until everything asked for is written (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._latest is not None:
            latest, self._latest = self._latest, None
            try:
                await self._write(latest)
            except Exception:  # the next wanted set tries again; the agent goes on
                LOG.exception("minimum-bandwidth queues not written")

    async def _write(self, latest: WantedQueues) -> None:
        started = time.monotonic()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                egress = await egress_ports(self.ovsdb, latest.bridges)
                command = SetMinimumBandwidthQueues(latest.wanted, latest.keep, egress)
                await self.ovsdb.transact(command)
                break
            except (ConnectionLost, TimeoutError) as exc:
                if attempt == ATTEMPTS:
                    LOG.warning(
                        "minimum-bandwidth queues not written (OVSDB unreachable)",
                        extra={"queues": len(latest.wanted), "error": str(exc)},
                    )
                    return
                await asyncio.sleep(RETRY_DELAY)
            except OVSDBError as exc:
                LOG.warning("minimum-bandwidth queues not written",
                            extra={"queues": len(latest.wanted), "error": str(exc)})  # fmt: skip
                return
        self.reconciled += 1
        if command.changes and command.changes[-1]:
            self.transactions += 1
        if not egress and latest.wanted:
            LOG.warning("minimum-bandwidth queues: no physical NIC to put them on",
                        extra={"bridges": ",".join(latest.bridges)})  # fmt: skip
        ms = (time.monotonic() - started) * 1e3
        LOG.debug("minimum-bandwidth queues written", extra={"queues": len(latest.wanted),
                  "egress": ",".join(egress), "ms": ms})  # fmt: skip
