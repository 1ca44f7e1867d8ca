"""The bridges the agent needs, as OVSDB commands, and the Topology read back from OVSDB.

br-int and every ``bridge_mappings`` bridge are ensured (fail_mode secure, OpenFlow13), and each
physical bridge is joined to br-int by a patch pair named as neutron names them:
``int-<bridge>`` on br-int, ``phy-<bridge>`` on the physical bridge (shortened with a hash when
longer than an interface name may be, as neutron's ``get_peer_name`` does). With
``[agent] tunnel_types``, br-tun is ensured too, joined by ``patch-tun`` (br-int) <->
``patch-int`` (br-tun) (``[ovs] int_peer_patch_port``/``tun_peer_patch_port``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from aovs.agent.tunnels import TunnelSettings
from aovs.config import AgentConfig
from aovs.dataplane.compose import PhysicalLink, Topology, TunnelLink
from aovs.ovsdb import Command, EnsureBridge, Interface, patch_port

MAX_DEVICE_NAME = 15  # IFNAMSIZ - 1
INT_PREFIX = "int-"
PHY_PREFIX = "phy-"


def peer_name(prefix: str, bridge: str) -> str:
    name = prefix + bridge
    if len(name) <= MAX_DEVICE_NAME:
        return name
    digest = hashlib.sha1(bridge.encode()).hexdigest()[:6]
    return f"{prefix}{bridge[: MAX_DEVICE_NAME - len(prefix) - 6]}{digest}"


@dataclass(frozen=True, slots=True)
class PatchPair:
    physnet: str
    bridge: str
    int_port: str  # on br-int
    phy_port: str  # on the physical bridge


def patch_pairs(config: AgentConfig) -> tuple[PatchPair, ...]:
    return tuple(
        PatchPair(physnet, bridge, peer_name(INT_PREFIX, bridge), peer_name(PHY_PREFIX, bridge))
        for physnet, bridge in sorted(config.ovs.physical_bridges.items())
    )


def bridge_commands(config: AgentConfig) -> list[Command]:
    """One transaction's worth: every bridge and patch pair, only what differs is written."""
    datapath = config.ovs.datapath_type
    commands: list[Command] = [EnsureBridge(config.ovs.integration_bridge, datapath_type=datapath)]
    for pair in patch_pairs(config):
        commands.append(EnsureBridge(pair.bridge, datapath_type=datapath))
        commands.append(
            patch_port(config.ovs.integration_bridge, pair.int_port, peer=pair.phy_port)
        )
        commands.append(patch_port(pair.bridge, pair.phy_port, peer=pair.int_port))
    tunnels = TunnelSettings.from_config(config)
    if tunnels is not None:
        int_port, tun_port = tunnels.int_peer_patch_port, tunnels.tun_peer_patch_port
        commands.append(EnsureBridge(tunnels.bridge, datapath_type=datapath))
        commands.append(patch_port(config.ovs.integration_bridge, int_port, peer=tun_port))
        commands.append(patch_port(tunnels.bridge, tun_port, peer=int_port))
    return commands


def topology_from(
    config: AgentConfig, interfaces_by_name: Mapping[str, Interface]
) -> Topology | None:
    """The Topology once every patch port has a valid ofport, else None."""
    links = {}
    for pair in patch_pairs(config):
        int_iface = interfaces_by_name.get(pair.int_port)
        phy_iface = interfaces_by_name.get(pair.phy_port)
        if int_iface is None or phy_iface is None:
            return None
        if not (int_iface.ofport_ready and phy_iface.ofport_ready):
            return None
        assert int_iface.ofport is not None and phy_iface.ofport is not None
        links[pair.physnet] = PhysicalLink(pair.physnet, pair.bridge, int_iface.ofport,
                                           phy_iface.ofport)  # fmt: skip
    tunnels = TunnelSettings.from_config(config)
    tunnel = None
    if tunnels is not None:
        tun_side = interfaces_by_name.get(tunnels.int_peer_patch_port)  # on br-int
        int_side = interfaces_by_name.get(tunnels.tun_peer_patch_port)  # on br-tun
        if tun_side is None or int_side is None:
            return None
        if not (tun_side.ofport_ready and int_side.ofport_ready):
            return None
        assert tun_side.ofport is not None and int_side.ofport is not None
        tunnel = TunnelLink(tunnels.bridge, tun_side.ofport, int_side.ofport,
                            frozenset(tunnels.tunnel_types), tunnels.arp_responder)  # fmt: skip
    return Topology(config.ovs.integration_bridge, links, tunnel)
