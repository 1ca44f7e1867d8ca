"""The ``trunk`` extension's shell: trunk bridges patched to br-int, subports bound.

The one place aovs writes trunk ports to OVSDB (and talks to the server about trunks), as
neutron's OVSDBHandler + TrunkManager do: a ``tbr-`` bridge with a VM's tap on it (seen in the
agent's OVSDB monitor) -> pull the trunk by its parent port (``pull("Trunk", <parent id>)``),
ask the server to bind the subports here (``update_subport_bindings``, topic and namespace
``trunk``, version 1.0), create the patch pairs and the tap's metadata in ONE transaction
(:func:`write_trunk_ports`), report ``update_trunk_status``. Subports added / removed arrive as
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from aovs.ovsdb import OVSDBClient, OVSDBError
from aovs.ovsdb.commands import DeleteBridge, DeletePort, UpdateMapKeys, patch_port
from aovs.ovsdb.monitor import Monitor
from aovs.rpc.errors import RpcError
from aovs.rpc.resources import TRUNK, SubPortPush, SubPortValue, TrunkPush, pull

if TYPE_CHECKING:
    from aovs.rpc.amqp import RpcTransport

LOG = logging.getLogger(__name__)
TRUNK_TOPIC = "trunk"  # neutron's TRUNK_BASE_TOPIC / TRUNK_BASE_NAMESPACE
TRUNK_NAMESPACE = "trunk"
TRUNK_RPC_VERSION = "1.0"
RETRY_DELAY = 2.0
RPC_TIMEOUT = 30.0


@dataclass
class _Wired:
    """A trunk bridge this agent patched."""

    trunk_id: str
    parent_id: str
    vm_port: str
    subports: dict[str, TrunkPatch] = field(default_factory=dict)  # port id -> its pair


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
    """ONE transaction: pairs added (``--may-exist``: a rewire updates tag and ids), pairs
    removed, the tap's metadata, the trunk bridge deleted. Raises OVSDBError."""
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
    if commands:
        await ovsdb.transact(*commands)


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

    # -- inputs ----------------------------------------------------------------------------
    def changed(self) -> None:
        self._wake.set()

    def pushed(self, push: TrunkPush | SubPortPush) -> None:
        self._pushes.append(push)
        self._wake.set()

    def off_br_int(self, iface_uuid: str) -> bool:
        """True if the Interface is on a trunk bridge (not one of br-int's VM ports)."""
        ports = self.monitor.rows("Port")
        for bridge in self.monitor.rows("Bridge").values():
            if not is_trunk_bridge(bridge["name"]):
                continue
            for port_uuid in bridge["ports"]:
                port = ports.get(port_uuid)
                if port is not None and any(str(i) == iface_uuid for i in port["interfaces"]):
                    return True
        return False

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
        observed = self._observe()
        for name, wired in list(self.wired.items()):
            seen = observed.get(name)
            if seen is None or seen.vm_port != wired.vm_port:
                await self._remove_trunk(name, wired, bridge_exists=seen is not None)
                observed.pop(name, None)  # deleted with it
        for name, seen in observed.items():
            if name in self.wired or seen.parent_id is None or seen.vm_port is None:
                continue
            if self._skip.get(name) == seen.parent_id:
                continue
            await self._wire_trunk(seen)
        while self._pushes:
            push = self._pushes[0]
            if isinstance(push, SubPortPush):
                await self._subports_changed(push)
            # Trunk pushes: nothing to do, as for neutron's agent (a trunk is wired when its
            # bridge appears; the server refuses to delete a trunk whose parent is bound)
            self._pushes.popleft()

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

    async def _wire_trunk(self, seen: TrunkBridge) -> None:
        assert seen.parent_id is not None and seen.vm_port is not None
        answer = await pull(self._transport(), TRUNK, seen.parent_id, timeout=RPC_TIMEOUT)
        if not isinstance(answer, TrunkPush) or answer.event_type == "deleted":
            LOG.warning("port on a trunk bridge has no trunk",
                        extra={"bridge": seen.name, "port_id": seen.parent_id})  # fmt: skip
            self._skip[seen.name] = seen.parent_id
            return
        self._deliver(answer)  # the agent's cache learns it (SubPort pushes then amend it)
        trunk = answer.trunks[0]
        if trunk_bridge_name(trunk.id) != seen.name:
            LOG.warning("trunk bridge named for another trunk",
                        extra={"bridge": seen.name, "trunk_id": trunk.id})  # fmt: skip
            self._skip[seen.name] = seen.parent_id
            return
        macs = await self._bind(trunk.id, trunk.sub_ports)
        pairs = wanted_ports(trunk, seen.parent_mac, macs)
        wanted_trunk_side = {p.trunk_name for p in pairs}
        stale = [subport_pair(name[4:], None, 1) for name in seen.service_ports
                 if name.startswith("spt-") and name not in wanted_trunk_side]  # fmt: skip
        wired = _Wired(trunk.id, trunk.port_id, seen.vm_port)
        wired.subports = {p.port_id: p for p in pairs[1:]}
        try:
            await write_trunk_ports(
                self.ovsdb,
                self.br_int,
                seen.name,
                add=pairs,
                remove=stale,
                tap=seen.vm_port,
                metadata=self._metadata(seen.name, wired),
            )
        except OVSDBError:  # neutron: ERROR, and a later attempt may fix it
            await self._report(trunk.id, ERROR)
            raise
        self.wired[seen.name] = wired
        LOG.info("trunk wired", extra={"bridge": seen.name, "trunk_id": trunk.id,
                                       "subports": len(wired.subports)})  # fmt: skip
        await self._report(trunk.id, trunk_status(len(trunk.sub_ports), len(wired.subports)))

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

    async def _remove_trunk(self, name: str, wired: _Wired, *, bridge_exists: bool) -> None:
        """The VM's tap or the whole bridge gone: br-int's side goes, and the bridge."""
        pairs = [parent_pair(wired.parent_id, None), *wired.subports.values()]
        await write_trunk_ports(self.ovsdb, self.br_int, name, remove=pairs,
                                delete_bridge=bridge_exists)  # fmt: skip
        del self.wired[name]
        self._skip.pop(name, None)
        LOG.info("trunk unwired", extra={"bridge": name, "trunk_id": wired.trunk_id})
