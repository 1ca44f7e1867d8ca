"""``aovs cleanup``: remove the OVS ports aovs (or neutron's agent) created, like
neutron-ovs-cleanup, in ONE OVSDB transaction.

What goes, and nothing else:

- on the integration bridge, every port with an Interface carrying ``external_ids:iface-id``
  (VM ports, DHCP/router ports: neutron's);
- the patch ports between the bridges: ``int-<br>``/``phy-<br>`` for each physical bridge of
  ``bridge_mappings``, and ``patch-tun``/``patch-int`` (``[ovs] int_peer_patch_port`` and
  ``tun_peer_patch_port``), each only when its Interface really is ``type=patch``;
- on the tunnel bridge, tunnel ports ``vxlan-*``/``gre-*`` whose Interface has that type.

Bridges, foreign ports and flows stay. The plan is a pure function of one consistent read
(:func:`plan_cleanup`); the removal is guarded by that read, so a concurrent change makes the
transaction retry against the new state instead of removing from a stale picture.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aovs.config import AgentConfig, ConfigLocation, load_config
from aovs.logs import configure_logging
from aovs.ovsdb import OVSDBClient, OVSDBError, Uuid
from aovs.ovsdb.transaction import Select, SelectedRows, TransactionBuilder

LOG = logging.getLogger(__name__)
DEVICE_NAME_MAX_LEN = 15  # IFNAMSIZ - 1
HASH_LEN = 6
INT_PEER_PREFIX = "int-"
PHY_PEER_PREFIX = "phy-"
TUNNEL_PREFIXES: Mapping[str, str] = {"vxlan-": "vxlan", "gre-": "gre"}
Kind = Literal["vif", "patch", "tunnel"]

_BRIDGES = Select("Bridge", (), ("_uuid", "name", "ports"))
_PORTS = Select("Port", (), ("_uuid", "name", "interfaces"))
_INTERFACES = Select("Interface", (), ("_uuid", "name", "type", "external_ids"))


def peer_port_name(prefix: str, bridge: str) -> str:
    """neutron's name for a patch port towards ``bridge`` (``int-br-ex``, ``phy-br-ex``): the
    prefix plus the bridge name, truncated and suffixed with a sha1 when over 15 characters."""
    name = prefix + bridge
    if len(name) <= DEVICE_NAME_MAX_LEN:
        return name
    keep = DEVICE_NAME_MAX_LEN - len(prefix) - HASH_LEN
    return prefix + bridge[:keep] + hashlib.sha1(bridge.encode()).hexdigest()[:HASH_LEN]


@dataclass(frozen=True)
class CleanupTargets:
    """The bridges and patch-port names to clean, from the agent's configuration."""

    integration_bridge: str
    tunnel_bridge: str
    physical_bridges: tuple[str, ...]
    int_peer_patch_port: str = "patch-tun"
    tun_peer_patch_port: str = "patch-int"

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> CleanupTargets:
        return cls(
            integration_bridge=cfg.ovs.integration_bridge,
            tunnel_bridge=cfg.ovs.tunnel_bridge,
            physical_bridges=tuple(cfg.ovs.physical_bridges.values()),
            int_peer_patch_port=cfg.ovs.int_peer_patch_port,
            tun_peer_patch_port=cfg.ovs.tun_peer_patch_port,
        )

    def patch_ports(self) -> dict[str, set[str]]:
        """bridge -> names of the patch ports aovs puts on it."""
        names: dict[str, set[str]] = {
            self.integration_bridge: {self.int_peer_patch_port},
            self.tunnel_bridge: {self.tun_peer_patch_port},
        }
        for bridge in self.physical_bridges:
            names[self.integration_bridge].add(peer_port_name(INT_PEER_PREFIX, bridge))
            names.setdefault(bridge, set()).add(peer_port_name(PHY_PEER_PREFIX, bridge))
        return names


@dataclass(frozen=True, order=True)
class Removal:
    bridge: str
    port: str
    kind: Kind
    port_uuid: Uuid
    detail: str = ""  # the iface-id, the tunnel type


def plan_cleanup(
    targets: CleanupTargets,
    bridges: Iterable[Mapping[str, Any]],
    ports: Iterable[Mapping[str, Any]],
    interfaces: Iterable[Mapping[str, Any]],
) -> tuple[Removal, ...]:
    """Which ports to remove, from decoded Bridge/Port/Interface rows. Pure."""
    port_by_uuid = {p["_uuid"]: p for p in ports}
    iface_by_uuid = {i["_uuid"]: i for i in interfaces}
    patch_names = targets.patch_ports()
    plan: list[Removal] = []
    for bridge in bridges:
        name = bridge["name"]
        for port_uuid in bridge["ports"]:
            port = port_by_uuid.get(port_uuid)
            if port is None:
                continue
            ifaces = [iface_by_uuid[u] for u in port["interfaces"] if u in iface_by_uuid]
            kind, detail = _classify(targets, name, port["name"], ifaces, patch_names)
            if kind is not None:
                plan.append(Removal(name, port["name"], kind, port_uuid, detail))
    return tuple(sorted(plan))


def _classify(
    targets: CleanupTargets,
    bridge: str,
    port: str,
    ifaces: Sequence[Mapping[str, Any]],
    patch_names: Mapping[str, set[str]],
) -> tuple[Kind | None, str]:
    types = {i["type"] for i in ifaces}
    if bridge == targets.integration_bridge:
        iface_ids = sorted(
            i["external_ids"]["iface-id"] for i in ifaces if "iface-id" in i["external_ids"]
        )
        if iface_ids:
            return "vif", ",".join(iface_ids)
    if port in patch_names.get(bridge, ()) and types == {"patch"}:
        return "patch", ""
    if bridge == targets.tunnel_bridge:
        for prefix, tunnel_type in TUNNEL_PREFIXES.items():
            if port.startswith(prefix) and types == {tunnel_type}:
                return "tunnel", tunnel_type
    return None, ""


class RemovePorts:
    """An :mod:`aovs.ovsdb` command: read the three tables, plan, detach the planned ports.

    Detaching a Port from its Bridge is enough: OVSDB garbage-collects the Port and its
    Interfaces. ``plan`` is what the last build decided (the committed one after a retry).
    """

    def __init__(self, targets: CleanupTargets) -> None:
        self.targets = targets
        self.plan: tuple[Removal, ...] = ()

    def reads(self) -> Sequence[Select]:
        return [_BRIDGES, _PORTS, _INTERFACES]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        self.plan = plan_cleanup(
            self.targets,
            snapshot.rows(_BRIDGES),
            snapshot.rows(_PORTS),
            snapshot.rows(_INTERFACES),
        )
        by_bridge: dict[str, set[Uuid]] = {}
        for removal in self.plan:
            by_bridge.setdefault(removal.bridge, set()).add(removal.port_uuid)
        for bridge, uuids in sorted(by_bridge.items()):
            txn.mutate("Bridge", [("name", "==", bridge)], [("ports", "delete", uuids)])


async def cleanup(
    client: OVSDBClient, targets: CleanupTargets, dry_run: bool = False
) -> tuple[Removal, ...]:
    """Remove (or with ``dry_run`` only plan) the ports; returns what was (would be) removed."""
    command = RemovePorts(targets)
    if dry_run:
        selects = command.reads()
        raw = await client.transact_ops([s.op() for s in selects])
        results = {s.key: _rows(r, s) for s, r in zip(selects, raw, strict=True)}
        command.build(SelectedRows(client.schema, results), TransactionBuilder(client.schema))
        return command.plan
    result = await client.transact(command)
    LOG.info(
        "cleanup committed",
        extra={"ports": len(command.plan), "attempts": result.attempts},
    )
    return command.plan


def _rows(result: Any, select: Select) -> list[dict[str, Any]]:
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise OVSDBError(f"select on {select.table} failed: {result!r:.200}")
    rows: list[dict[str, Any]] = result["rows"]
    return rows


def render_plan(plan: Sequence[Removal], dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    head = f"{verb} {len(plan)} port(s)" + ("" if dry_run else " in one transaction")
    rows = [("BRIDGE", "PORT", "KIND", "DETAIL")] + [
        (r.bridge, r.port, r.kind, r.detail) for r in plan
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join([head, *table] if plan else [head])


def run_cleanup(config: ConfigLocation, dry_run: bool = False, timeout: float = 30.0) -> int:
    """The ``aovs cleanup`` command: 0 done, 1 OVSDB unreachable or refused (one line why)."""
    cfg = load_config(config)
    # the client's reconnect warnings would repeat the one line below many times over
    configure_logging("ERROR", cfg.agent.log_format)
    targets = CleanupTargets.from_config(cfg)
    running = _running_agent(cfg)
    if running is not None:
        print(f"aovs cleanup: an agent is running ({running}): stop it first", file=sys.stderr)
        return 1
    try:
        plan = asyncio.run(_run(cfg, targets, dry_run, timeout))
    except (OVSDBError, TimeoutError) as exc:
        what = f"no answer within {timeout}s" if isinstance(exc, TimeoutError) else str(exc)
        print(f"aovs cleanup: {cfg.ovs.ovsdb_connection}: {what}", file=sys.stderr)
        return 1
    print(render_plan(plan, dry_run))
    return 0


def _running_agent(cfg: AgentConfig) -> str | None:
    """The agent's status socket if an agent answers on it: cleaning under it would fight it."""
    from aovs.observability import default_socket_path
    from aovs.observability.status_client import AgentUnreachable, fetch_health
    from aovs.observability.status_protocol import StatusProtocolError

    path = default_socket_path(cfg)
    try:
        fetch_health(path, timeout=1.0)
    except AgentUnreachable:
        return None
    except StatusProtocolError:
        pass  # something answers, if not in our words: still an agent
    return f"it answers on {path}"


async def _run(
    cfg: AgentConfig, targets: CleanupTargets, dry_run: bool, seconds: float
) -> tuple[Removal, ...]:
    async with asyncio.timeout(seconds):
        options = {**cfg.ovs.ovsdb_client_options, "request_timeout": seconds}  # ssl_* files too
        client = OVSDBClient(cfg.ovs.ovsdb_connection, **options)
        try:
            await client.start()
            return await cleanup(client, targets, dry_run)
        finally:
            await client.close()
