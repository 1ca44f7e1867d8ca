"""The shell's half of the overlay: ``tunnel_sync`` with neutron-server and tunnel ports in OVSDB.

The decisions live in :mod:`aovs.agent.tunnels` (pure, owned by the core); this module carries
them out: it asks the server until it answers (:func:`sync_tunnels`, which posts a
:class:`~aovs.agent.tunnels.TunnelSynced` back to the agent) and creates and deletes the tunnel
ports a flush asked for, in ONE OVSDB transaction (:func:`apply_port_changes`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from aovs.agent.tunnels import (
    DEFAULT_VXLAN_UDP_PORT,
    PortChanges,
    TunnelPort,
    TunnelSettings,
    TunnelState,
    TunnelSynced,
)
from aovs.backoff import Backoff
from aovs.ovsdb import AddPort, Command, DeletePort, OVSDBClient, OVSDBError, tunnel_port
from aovs.rpc.errors import RpcError
from aovs.rpc.server_api import NeutronServerApi

LOG = logging.getLogger(__name__)


def add_tunnel_port(port: TunnelPort, settings: TunnelSettings) -> AddPort:
    """neutron's ``add_tunnel_port`` options (``--may-exist``: fixes options that differ)."""
    options = {"df_default": "true", "egress_pkt_mark": "0"}
    kind = port.network_type
    if kind == "vxlan" and settings.vxlan_udp_port != DEFAULT_VXLAN_UDP_PORT:
        options["dst_port"] = str(settings.vxlan_udp_port)
    if kind == "gre" and ipaddress.ip_address(port.remote_ip).version == 6:
        kind = "ip6gre"
        options["packet_type"] = "legacy_l2"
    return tunnel_port(settings.bridge, port.name, kind, port.remote_ip, settings.local_ip, options)


async def sync_tunnels(
    api: NeutronServerApi,
    settings: TunnelSettings,
    post: Callable[[TunnelSynced], None],
    *,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
) -> None:
    """``tunnel_sync`` for each tunnel type until it answers (neutron retries every loop):
    registers this endpoint with the server and learns the others."""
    for kind in settings.tunnel_types:
        backoff = Backoff(initial=first_delay, cap=max_delay, jitter=False)
        while True:
            try:
                endpoints = await api.tunnel_sync(settings.local_ip, kind)
            except RpcError as exc:
                delay = backoff.next_delay()
                extra = {"tunnel_type": kind, "error": exc, "retry_in_s": delay}
                LOG.warning("tunnel_sync failed; retrying", extra=extra)
                await asyncio.sleep(delay)
                continue
            LOG.info("tunnel_sync", extra={"tunnel_type": kind, "endpoints": len(endpoints)})
            post(TunnelSynced(kind, endpoints))
            break


async def apply_port_changes(
    ovsdb: OVSDBClient, settings: TunnelSettings, changes: PortChanges, state: TunnelState
) -> None:
    """Create and delete tunnel ports in ONE transaction; on failure, retried at next flush."""
    commands: list[Command] = [add_tunnel_port(port, settings) for port in changes.add]
    commands += [DeletePort(name, bridge=settings.bridge) for name in changes.delete]
    try:
        await ovsdb.transact(*commands)
    except OVSDBError as exc:
        extra = {"add": len(changes.add), "delete": len(changes.delete), "error": exc}
        LOG.error("tunnel ports not changed; retrying", extra=extra)
        state.port_changes_failed(changes)
        return
    for port in changes.add:
        LOG.info("tunnel port added", extra={"port": port.name, "remote_ip": port.remote_ip})
    for name in changes.delete:
        LOG.info("tunnel port deleted", extra={"port": name})
