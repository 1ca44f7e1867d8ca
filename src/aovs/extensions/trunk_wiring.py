"""The ``trunk`` extension's shell: trunk bridges patched to br-int, subports bound.

The one place aovs writes trunk ports to OVSDB (and talks to the server about trunks), as
neutron's OVSDBHandler + TrunkManager do: a ``tbr-`` bridge with a VM's tap on it (seen in the
agent's OVSDB monitor) -> pull the trunk by its parent port, ask the server to bind the subports
here (``update_subport_bindings``, topic and namespace ``trunk``, version 1.0), create the patch
pairs and the tap's metadata, report ``update_trunk_status``. Every bridge that appeared in a
round is wired together (neutron wires each in its own thread): ONE ``bulk_pull`` of their
trunks (``port_id`` IN the parents), the bindings concurrently, ONE OVSDB transaction for all
their ports (:func:`write_trunk_bridges`: each transaction makes ovs-vswitchd reconfigure every
port, so 100 trunks in 100 transactions cost it seconds; bridge by bridge when the batch fails,
so one bad trunk is ERROR alone), the statuses concurrently. Subports added / removed arrive as
SubPort pushes (folded into the trunk's value in the agent's one resource cache); the VM's tap
or the bridge gone removes br-int's side (and the bridge, as neutron's ``remove_trunk``).

The patch ports on br-int carry ``iface-id``: the agent wires them as any VM port (flows,
firewall, port status). Interfaces on trunk bridges (the tap, ``tpt-``/``spt-``) carry one too;
the agent skips them (:meth:`TrunkWiring.off_br_int`), as neutron's agent scans br-int only.
One task does all of it, in order, so a bridge is never wired and unwired at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aovs.extensions.trunk import (
    ERROR,
    IfaceView,
    TrunkBridge,
    TrunkPatch,
    is_trunk_bridge,
    observed_bridges,
    parent_pair,
    subport_pair,
    tap_metadata,
    trunk_bridge_name,
    trunk_status,
    wanted_ports,
)
from aovs.ovsdb import ConnectionLost, OVSDBClient, OVSDBError
from aovs.ovsdb.commands import DeleteBridge, DeletePort, UpdateMapKeys, patch_port
from aovs.ovsdb.monitor import Monitor
from aovs.rpc.errors import RpcError
from aovs.rpc.resources import (
    CONSUMED_RESOURCES,
    PULL_RPC_VERSION,
    PULL_TOPIC,
    TRUNK,
    SubPortPush,
    SubPortValue,
    TrunkPush,
    TrunkValue,
)
from aovs.rpc.resources import trunk as trunk_value

if TYPE_CHECKING:
    from aovs.rpc.amqp import RpcTransport

LOG = logging.getLogger(__name__)
T = TypeVar("T")
TRUNK_TOPIC = "trunk"  # neutron's TRUNK_BASE_TOPIC / TRUNK_BASE_NAMESPACE
TRUNK_NAMESPACE = "trunk"
TRUNK_RPC_VERSION = "1.0"
RETRY_DELAY = 2.0
RPC_TIMEOUT = 30.0
RPC_CONCURRENCY = 32  # trunk RPCs in flight at once (neutron: a thread pool of the same order)


@dataclass
class _Wired:
    """A trunk bridge this agent patched."""

    trunk_id: str
    parent_id: str
    vm_port: str
    subports: dict[str, TrunkPatch] = field(default_factory=dict)  # port id -> its pair


def trunk_port_commands(
    br_int: str,
    bridge: str,
    *,
    add: Iterable[TrunkPatch] = (),
    remove: Iterable[TrunkPatch] = (),
    tap: str | None = None,
    metadata: Mapping[str, str] | None = None,
    delete_bridge: bool = False,
) -> list[Any]:
    """One trunk bridge's OVSDB commands: pairs added (``--may-exist``: a rewire updates tag and
    ids), pairs removed, the tap's metadata, the trunk bridge deleted."""
    commands: list[Any] = []
    for pair in remove:
        commands.append(DeletePort(pair.int_name, bridge=br_int))
        if not delete_bridge:
            commands.append(DeletePort(pair.trunk_name, bridge=bridge))
    for pair in add:
        ids = pair.external_ids
        commands.append(patch_port(br_int, pair.int_name, pair.trunk_name, external_ids=ids))
        commands.append(patch_port(bridge, pair.trunk_name, pair.int_name, external_ids=ids,
                                   tag=pair.tag))  # fmt: skip
    if tap is not None and metadata:
        where = (("name", "==", tap),)
        commands.append(UpdateMapKeys("Interface", where, "external_ids", set=dict(metadata)))
    if delete_bridge:
        commands.append(DeleteBridge(bridge))
    return commands


async def write_trunk_ports(
    ovsdb: OVSDBClient,
    br_int: str,
    bridge: str,
    *,
    add: Iterable[TrunkPatch] = (),
    remove: Iterable[TrunkPatch] = (),
    tap: str | None = None,
    metadata: Mapping[str, str] | None = None,
    delete_bridge: bool = False,
) -> None:
    """ONE transaction of :func:`trunk_port_commands`. Raises OVSDBError."""
    commands = trunk_port_commands(br_int, bridge, add=add, remove=remove, tap=tap,
                                   metadata=metadata, delete_bridge=delete_bridge)  # fmt: skip
    if commands:
        await ovsdb.transact(*commands)


async def write_trunk_bridges(
    ovsdb: OVSDBClient, commands: Mapping[str, Sequence[Any]]
) -> dict[str, OVSDBError]:
    """Every trunk bridge's commands (bridge -> its commands) in ONE transaction: each
    transaction makes ovs-vswitchd reconfigure all its ports, so a round's trunks share one.
    When it fails as a whole, bridge by bridge, so one bad trunk cannot keep the others
    unwired. The bridges not written, with why (OVSDB gone: all of them). TimeoutError
    propagates (whether it was applied is unknown: the round is retried)."""
    batch = {bridge: list(cmds) for bridge, cmds in commands.items() if cmds}
    if not batch:
        return {}
    try:
        await ovsdb.transact(*(c for cmds in batch.values() for c in cmds))
        return {}
    except ConnectionLost as exc:
        return dict.fromkeys(batch, exc)
    except OVSDBError as exc:
        if len(batch) == 1:
            return dict.fromkeys(batch, exc)
        LOG.info("trunk ports: batch failed, writing bridge by bridge",
                 extra={"bridges": len(batch), "error": str(exc)})  # fmt: skip
    failed: dict[str, OVSDBError] = {}
    for bridge, cmds in batch.items():
        try:
            await ovsdb.transact(*cmds)
        except OVSDBError as one:
            failed[bridge] = one
    return failed


async def gather_bounded(calls: Iterable[Awaitable[T]], limit: int) -> list[T | BaseException]:
    """``asyncio.gather(..., return_exceptions=True)`` with at most ``limit`` running at once
    (a host's boot can find hundreds of trunks: the server should not get them all at once)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)


def first_error(results: Iterable[object]) -> BaseException | None:
    """The first exception among ``asyncio.gather(..., return_exceptions=True)``'s results."""
    return next((r for r in results if isinstance(r, BaseException)), None)


_NO_BRIDGE = TrunkBridge("", None, None, None, frozenset())  # a bridge gone: no VM port


class TrunkWiring:
    """Watches trunk bridges (``changed``), takes Trunk / SubPort pushes (``pushed``)."""

    def __init__(
        self,
        ovsdb: OVSDBClient,
        monitor: Monitor,
        transport: Callable[[], RpcTransport],
        deliver: Callable[[TrunkPush], None],
        br_int: str,
    ) -> None:
        self.ovsdb = ovsdb
        self.monitor = monitor
        self._transport = transport  # the agent's, late-bound (it may replace it on errors)
        self._deliver = deliver  # a pulled trunk, into the agent's inbox -> its one cache
        self.br_int = br_int
        self.wired: dict[str, _Wired] = {}  # trunk bridge -> what was patched
        self._pushes: deque[TrunkPush | SubPortPush] = deque()
        self._skip: dict[str, str | None] = {}  # bridge -> parent id with no trunk (not again)
        self._wake = asyncio.Event()
        # off_br_int's index: the trunk bridges' Interface uuids, and the rows it was made of
        self._indexed_rows: tuple[object, ...] = ()
        self._indexed_ids: tuple[int, ...] = ()
        self._indexed_ifaces: frozenset[str] = frozenset()

    # -- inputs ----------------------------------------------------------------------------
    def changed(self) -> None:
        self._wake.set()

    def pushed(self, push: TrunkPush | SubPortPush) -> None:
        self._pushes.append(push)
        self._wake.set()

    def off_br_int(self, iface_uuid: str) -> bool:
        """True if the Interface is on a trunk bridge (not one of br-int's VM ports). Asked
        for every Interface event: the answer comes from an index of the trunk bridges'
        interfaces, rebuilt only when one of their Bridge or Port rows changed."""
        return iface_uuid in self._trunk_interfaces()

    def _trunk_interfaces(self) -> frozenset[str]:
        port_rows = self.monitor.rows("Port")
        bridges = [b for b in self.monitor.rows("Bridge").values() if is_trunk_bridge(b["name"])]
        ports = [port_rows.get(port_uuid) for b in bridges for port_uuid in b["ports"]]
        # the cache replaces a row on every change, never mutates it; the rows indexed last
        # are held (``_indexed_rows``), so an id seen then cannot belong to a new row now
        rows = (*bridges, *ports)
        ids = tuple(map(id, rows))
        if ids != self._indexed_ids:
            self._indexed_rows, self._indexed_ids = rows, ids
            self._indexed_ifaces = frozenset(
                str(iface) for port in ports if port is not None for iface in port["interfaces"]
            )
        return self._indexed_ifaces

    def _observe(self) -> dict[str, TrunkBridge]:
        """The trunk bridges' rows only (br-int's thousands of ports are not read)."""
        port_rows, iface_rows = self.monitor.rows("Port"), self.monitor.rows("Interface")
        bridges: dict[str, list[str]] = {}
        ports: dict[str, tuple[str, list[str]]] = {}
        ifaces: dict[str, IfaceView] = {}
        for bridge in self.monitor.rows("Bridge").values():
            if not is_trunk_bridge(bridge["name"]):
                continue
            bridges[bridge["name"]] = [str(p) for p in bridge["ports"]]
            for port_uuid in bridge["ports"]:
                port = port_rows.get(port_uuid)
                if port is None:
                    continue
                ports[str(port_uuid)] = (port["name"], [str(i) for i in port["interfaces"]])
                for iface_uuid in port["interfaces"]:
                    iface = iface_rows.get(iface_uuid)
                    if iface is not None:
                        ifaces[str(iface_uuid)] = IfaceView(iface["name"], iface["external_ids"])
        return observed_bridges(bridges, ports, ifaces)

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._round()
            except (OVSDBError, RpcError, TimeoutError, ValueError) as exc:
                LOG.warning("trunk wiring failed; retrying", extra={"error": str(exc)})
                asyncio.get_running_loop().call_later(RETRY_DELAY, self._wake.set)
            except Exception:  # a bug here must not stop the agent: logged, tried again
                LOG.exception("trunk wiring failed; retrying")
                asyncio.get_running_loop().call_later(RETRY_DELAY, self._wake.set)

    async def _round(self) -> None:
        """Every trunk bridge gone since the last round unwired, every one that appeared wired,
        each set together (neutron wires bridges in parallel too: a thread per bridge), then
        the SubPort pushes in order."""
        observed = self._observe()
        gone = {name: wired for name, wired in self.wired.items()
                if observed.get(name, _NO_BRIDGE).vm_port != wired.vm_port}  # fmt: skip
        failure: BaseException | None = None
        if gone:
            failure = await self._remove_trunks(gone, observed)
        fresh = [seen for name, seen in observed.items()
                 if name not in self.wired and name not in gone
                 and seen.parent_id is not None and seen.vm_port is not None
                 and self._skip.get(name) != seen.parent_id]  # fmt: skip
        if fresh:
            failure = await self._wire_trunks(fresh) or failure
        if failure is not None:
            raise failure  # the rest is retried (what is done stays done)
        while self._pushes:
            push = self._pushes[0]
            if isinstance(push, SubPortPush):
                await self._subports_changed(push)
            # Trunk pushes: nothing to do, as for neutron's agent (a trunk is wired when its
            # bridge appears; the server refuses to delete a trunk whose parent is bound)
            self._pushes.popleft()

    async def _pull_trunks(self, parent_ids: Iterable[str]) -> dict[str, TrunkValue]:
        """The trunks of these parent ports, ONE ``bulk_pull`` (neutron's get_objects with
        ``port_id`` IN the list; a parent with no trunk is simply not in the answer)."""
        ids = sorted(set(parent_ids))
        reply = await self._transport().call(
            PULL_TOPIC, "bulk_pull",
            {"resource_type": TRUNK, "version": CONSUMED_RESOURCES[TRUNK],
             "filter_kwargs": {"port_id": ids}},
            version=PULL_RPC_VERSION, timeout=RPC_TIMEOUT,
        )  # fmt: skip
        if not isinstance(reply, list):
            raise ValueError(f"bulk_pull Trunk answered a {type(reply).__name__}")
        found = [trunk_value(primitive) for primitive in reply]
        return {t.port_id: t for t in found if t.port_id in ids}

    async def _wire_trunks(self, fresh: Sequence[TrunkBridge]) -> BaseException | None:
        """Wire trunk bridges together: one pull, the bindings concurrently, ONE transaction
        (bridge by bridge if it fails), the statuses concurrently. The first failure, if any
        (the trunks it kept unwired are tried again next round)."""
        trunks = await self._pull_trunks(s.parent_id for s in fresh if s.parent_id is not None)
        if trunks:  # the agent's cache learns them (SubPort pushes then amend them)
            self._deliver(TrunkPush("updated", tuple(trunks[p] for p in sorted(trunks))))
        to_bind: list[tuple[TrunkBridge, TrunkValue]] = []
        for seen in fresh:
            assert seen.parent_id is not None
            trunk = trunks.get(seen.parent_id)
            if trunk is None:
                LOG.warning("port on a trunk bridge has no trunk",
                            extra={"bridge": seen.name, "port_id": seen.parent_id})  # fmt: skip
                self._skip[seen.name] = seen.parent_id
            elif trunk_bridge_name(trunk.id) != seen.name:
                LOG.warning("trunk bridge named for another trunk",
                            extra={"bridge": seen.name, "trunk_id": trunk.id})  # fmt: skip
                self._skip[seen.name] = seen.parent_id
            else:
                to_bind.append((seen, trunk))
        bound = await gather_bounded((self._bind(t.id, t.sub_ports) for _, t in to_bind),
                                     RPC_CONCURRENCY)  # fmt: skip
        failure = first_error(bound)
        planned: dict[str, tuple[TrunkValue, _Wired]] = {}
        commands: dict[str, list[Any]] = {}
        for (seen, trunk), macs in zip(to_bind, bound, strict=True):
            if isinstance(macs, BaseException):
                LOG.warning("trunk subports not bound; retrying",
                            extra={"trunk_id": trunk.id, "error": str(macs)})  # fmt: skip
                continue
            wired, commands[seen.name] = self._plan_trunk(seen, trunk, macs)
            planned[seen.name] = (trunk, wired)
        failed = await write_trunk_bridges(self.ovsdb, commands)
        reports: list[tuple[str, str]] = []
        for name, (trunk, wired) in planned.items():
            if name in failed:  # neutron: ERROR, and a later attempt may fix it
                LOG.warning("trunk not wired", extra={"bridge": name, "trunk_id": trunk.id,
                                                      "error": str(failed[name])})  # fmt: skip
                reports.append((trunk.id, ERROR))
                continue
            self.wired[name] = wired
            LOG.info("trunk wired", extra={"bridge": name, "trunk_id": trunk.id,
                                           "subports": len(wired.subports)})  # fmt: skip
            reports.append((trunk.id, trunk_status(len(trunk.sub_ports), len(wired.subports))))
        reported = await gather_bounded((self._report(t, status) for t, status in reports),
                                        RPC_CONCURRENCY)  # fmt: skip
        return failure or next(iter(failed.values()), None) or first_error(reported)

    def _plan_trunk(
        self, seen: TrunkBridge, trunk: TrunkValue, macs: Mapping[str, str]
    ) -> tuple[_Wired, list[Any]]:
        """What a trunk bridge becomes (its parent's and bound subports' pairs, the stale
        subports' gone, the tap's metadata) and the commands that make it so."""
        assert seen.vm_port is not None
        pairs = wanted_ports(trunk, seen.parent_mac, macs)
        wanted_trunk_side = {p.trunk_name for p in pairs}
        stale = [subport_pair(name[4:], None, 1) for name in seen.service_ports
                 if name.startswith("spt-") and name not in wanted_trunk_side]  # fmt: skip
        wired = _Wired(trunk.id, trunk.port_id, seen.vm_port)
        wired.subports = {p.port_id: p for p in pairs[1:]}
        commands = trunk_port_commands(self.br_int, seen.name, add=pairs, remove=stale,
                                       tap=seen.vm_port,
                                       metadata=self._metadata(seen.name, wired))  # fmt: skip
        return wired, commands

    async def _bind(self, trunk_id: str, subports: Iterable[SubPortValue]) -> dict[str, str]:
        """``update_subport_bindings``: the subports' MACs, of those the server bound here."""
        listed = [{"port_id": s.port_id, "trunk_id": s.trunk_id,
                   "segmentation_type": s.segmentation_type,
                   "segmentation_id": s.segmentation_id} for s in subports]  # fmt: skip
        if not listed:
            return {}
        reply = await self._transport().call(
            TRUNK_TOPIC, "update_subport_bindings", {"subports": listed},
            version=TRUNK_RPC_VERSION, namespace=TRUNK_NAMESPACE, timeout=RPC_TIMEOUT,
        )  # fmt: skip
        bound = reply.get(trunk_id, []) if isinstance(reply, Mapping) else []
        return {p["id"]: p["mac_address"] for p in bound if isinstance(p, Mapping)}

    async def _report(self, trunk_id: str, status: str) -> None:
        await self._transport().call(
            TRUNK_TOPIC, "update_trunk_status", {"trunk_id": trunk_id, "status": status},
            version=TRUNK_RPC_VERSION, namespace=TRUNK_NAMESPACE, timeout=RPC_TIMEOUT,
        )  # fmt: skip
        LOG.info("trunk status reported", extra={"trunk_id": trunk_id, "status": status})

    def _metadata(self, bridge: str, wired: _Wired) -> dict[str, str]:
        return tap_metadata(bridge, wired.trunk_id, wired.subports)

    def _by_trunk(self, trunk_id: str) -> tuple[str, _Wired] | None:
        name = trunk_bridge_name(trunk_id)
        wired = self.wired.get(name)
        return (name, wired) if wired is not None and wired.trunk_id == trunk_id else None

    async def _subports_changed(self, push: SubPortPush) -> None:
        for trunk_id in sorted({s.trunk_id for s in push.subports}):
            found = self._by_trunk(trunk_id)
            if found is None:
                continue  # not a trunk of this host (neutron's manages_this_trunk)
            name, wired = found
            mine = [s for s in push.subports if s.trunk_id == trunk_id]
            if push.event_type == "deleted":
                gone = [wired.subports[s.port_id] for s in mine if s.port_id in wired.subports]
                left = _Wired(
                    wired.trunk_id,
                    wired.parent_id,
                    wired.vm_port,
                    {k: v for k, v in wired.subports.items() if v not in gone},
                )
                await write_trunk_ports(
                    self.ovsdb,
                    self.br_int,
                    name,
                    remove=gone,
                    tap=wired.vm_port,
                    metadata=self._metadata(name, left),
                )
                wired.subports = left.subports  # only once OVS has it (a failure is retried)
                # neutron's unwire_subports_for_trunk: every removal done -> ACTIVE
                await self._report(trunk_id, trunk_status(len(mine), len(mine)))  # fmt: skip
                continue
            macs = await self._bind(trunk_id, mine)
            pairs = [subport_pair(s.port_id, macs[s.port_id], s.segmentation_id)
                     for s in mine if s.port_id in macs]  # fmt: skip
            grown = _Wired(
                wired.trunk_id,
                wired.parent_id,
                wired.vm_port,
                {**wired.subports, **{p.port_id: p for p in pairs}},
            )
            await write_trunk_ports(
                self.ovsdb,
                self.br_int,
                name,
                add=pairs,
                tap=wired.vm_port,
                metadata=self._metadata(name, grown),
            )
            wired.subports = grown.subports
            await self._report(trunk_id, trunk_status(len(mine), len(pairs)))  # fmt: skip

    async def _remove_trunks(
        self, gone: Mapping[str, _Wired], observed: dict[str, TrunkBridge]
    ) -> OVSDBError | None:
        """The VMs' taps or whole bridges gone: br-int's sides go, and the bridges (neutron's
        ``remove_trunk``), in one transaction. The first failure, if any."""
        commands: dict[str, list[Any]] = {}
        for name, wired in gone.items():
            pairs = [parent_pair(wired.parent_id, None), *wired.subports.values()]
            commands[name] = trunk_port_commands(self.br_int, name, remove=pairs,
                                                 delete_bridge=name in observed)  # fmt: skip
        failed = await write_trunk_bridges(self.ovsdb, commands)
        for name, wired in gone.items():
            if name in failed:
                continue
            observed.pop(name, None)  # deleted with it
            del self.wired[name]
            self._skip.pop(name, None)
            LOG.info("trunk unwired", extra={"bridge": name, "trunk_id": wired.trunk_id})
        return next(iter(failed.values()), None)
