"""How the bridge pipelines and the firewall driver compose into flows per (bridge, owner).

The agent keys every flow by an OWNER so that a change recomputes only what it touched:

- ``("bridge", name)``: a bridge's base flows (canary, defaults, NORMAL);
- ``("patch", physnet)``: br-int's drop of untranslated traffic from a physical bridge;
- ``("network", net_id)``: a network's VLAN translation on br-int and its physical bridge;
- ``("port", iface_id)``: a port's own flows (dead-port drop, or the firewall's port flows);
- ``("fw-base",)`` and the firewall driver's shared owners (e.g. remote-group members).

Each function returns ``{bridge: flows}`` for one owner. A bridge is another pipeline module
with the same shape (base, network, port): br-tun's base set is ``("bridge", br-tun)`` and a
tunnel network's tunnel id -> local VLAN flow is its ``("network", net_id)`` owner; the owners
that depend on tunnel endpoints and l2population (tunnel ports, flooding, FDB) are composed by
:mod:`aovs.agent.tunnels`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from aovs.firewall.base import BASE_OWNER, FilteredPort, FirewallDriver, OwnerKey
from aovs.firewall.base import SecurityGroupState as SecurityGroupState
from aovs.model import NetworkSegment, PortDetails
from aovs.openflow.flows import Flow
from aovs.pipelines import br_int, br_phys, br_tun

BridgeFlows = dict[str, frozenset[Flow]]
PHYSICAL_TYPES = frozenset({"vlan", "flat"})
MAX_VLAN = 4094


def bridge_owner(bridge: str) -> OwnerKey:
    return ("bridge", bridge)


def patch_owner(physnet: str) -> OwnerKey:
    return ("patch", physnet)


def network_owner(network_id: str) -> OwnerKey:
    return ("network", network_id)


def port_owner(iface_id: str) -> OwnerKey:
    return ("port", iface_id)


FIREWALL_BASE_OWNER: OwnerKey = BASE_OWNER


@dataclass(frozen=True, slots=True)
class PhysicalLink:
    """A ``bridge_mappings`` entry once its patch ports exist: br-int <-> physical bridge."""

    physnet: str
    bridge: str
    int_patch_ofport: int  # ``int-<bridge>`` on br-int
    phy_patch_ofport: int  # ``phy-<bridge>`` on the physical bridge


@dataclass(frozen=True, slots=True)
class TunnelLink:
    """br-tun once its patch pair exists: ``patch-tun`` on br-int <-> ``patch-int`` on br-tun."""

    bridge: str
    patch_tun_ofport: int  # on br-int
    patch_int_ofport: int  # on br-tun
    network_types: frozenset[str]  # ``[agent] tunnel_types``
    arp_responder: bool = False


@dataclass(frozen=True, slots=True)
class Topology:
    """The bridges and their patch ports, as OVSDB reports them."""

    integration_bridge: str
    physical: Mapping[str, PhysicalLink]  # by physnet
    tunnel: TunnelLink | None = None

    @property
    def bridges(self) -> tuple[str, ...]:
        tunnel = (self.tunnel.bridge,) if self.tunnel is not None else ()
        return (self.integration_bridge, *(link.bridge for link in self.physical.values()), *tunnel)


class Wiring(StrEnum):
    """How a port with an ofport is programmed."""

    WIRED = "wired"  # local VLAN + firewall flows
    DEAD = "dead"  # dead VLAN 4095 + drop: admin down, unknown to neutron, not wired yet


@dataclass(frozen=True, slots=True)
class PortPlan:
    """What the pipelines need to know about one port with a valid ofport."""

    iface_id: str
    ofport: int
    wiring: Wiring
    details: PortDetails | None = None
    local_vlan: int | None = None

    def filtered(self) -> FilteredPort | None:
        """The firewall's view, for wired ports only."""
        if self.wiring is not Wiring.WIRED or self.details is None or self.local_vlan is None:
            return None
        return FilteredPort(details=self.details, ofport=self.ofport, local_vlan=self.local_vlan)


def segment_problem(topology: Topology, segment: NetworkSegment) -> str | None:
    """Why this host cannot carry ``segment`` (None when it can). Never raises."""
    kind = segment.network_type
    if kind == "local":
        return None
    if segment.is_tunnel and topology.tunnel is not None:
        if kind not in topology.tunnel.network_types:
            return f"network type {kind!r} is not in this agent's tunnel_types"
        try:
            br_tun.check_segment(segment)
        except ValueError as exc:
            return str(exc)
        return None
    if kind not in PHYSICAL_TYPES:
        return f"network type {kind!r} is not supported by this agent (no tunnel bridge yet)"
    physnet = segment.physical_network
    if physnet is None:
        return f"{kind} network without a physical_network"
    if physnet not in topology.physical:
        return f"physical network {physnet!r} is not in bridge_mappings on this host"
    if kind == "vlan" and not (
        segment.segmentation_id is not None and 1 <= segment.segmentation_id <= MAX_VLAN
    ):
        return f"vlan network with segmentation_id {segment.segmentation_id!r}"
    if kind == "flat" and segment.segmentation_id is not None:
        return f"flat network with segmentation_id {segment.segmentation_id!r}"
    return None


def bridge_flows(topology: Topology) -> dict[OwnerKey, BridgeFlows]:
    """Every bridge's base flows and the patch-port drops, by owner."""
    owners: dict[OwnerKey, BridgeFlows] = {
        bridge_owner(topology.integration_bridge): {
            topology.integration_bridge: br_int.base_flows()
        }
    }
    for link in topology.physical.values():
        owners[bridge_owner(link.bridge)] = {link.bridge: br_phys.base_flows(link.phy_patch_ofport)}
        owners[patch_owner(link.physnet)] = {
            topology.integration_bridge: br_int.patch_port_flows(link.int_patch_ofport)
        }
    tunnel = topology.tunnel
    if tunnel is not None:
        owners[bridge_owner(tunnel.bridge)] = {
            tunnel.bridge: br_tun.base_flows(tunnel.patch_int_ofport, tunnel.arp_responder)
        }
    return owners


def network_flows(topology: Topology, segment: NetworkSegment, local_vlan: int) -> BridgeFlows:
    """A network's translation flows; empty for a local network or one this host cannot carry."""
    if segment_problem(topology, segment) is not None or segment.network_type == "local":
        return {}
    if segment.is_tunnel and topology.tunnel is not None:
        return {topology.tunnel.bridge: br_tun.network_flows(segment, local_vlan)}
    assert segment.physical_network is not None
    link = topology.physical[segment.physical_network]
    return {
        topology.integration_bridge: br_int.network_flows(
            link.int_patch_ofport, segment, local_vlan
        ),
        link.bridge: br_phys.network_flows(link.phy_patch_ofport, segment, local_vlan),
    }


def port_flows(
    topology: Topology,
    port: PortPlan,
    firewall: FirewallDriver,
    sgs: SecurityGroupState,
) -> BridgeFlows:
    """One port's flows: a drop while it must not forward, else the firewall's port flows."""
    if port.wiring is Wiring.DEAD:
        return {topology.integration_bridge: br_int.dead_port_flows(port.ofport)}
    filtered = port.filtered()
    if filtered is None:
        raise ValueError(f"wired port {port.iface_id} without details or local VLAN")
    return {topology.integration_bridge: firewall.port_flows(filtered, sgs)}


def firewall_base_flows(topology: Topology, firewall: FirewallDriver) -> BridgeFlows:
    return {topology.integration_bridge: firewall.base_flows()}


def firewall_shared_flows(
    topology: Topology,
    firewall: FirewallDriver,
    ports: Mapping[str, FilteredPort],
    sgs: SecurityGroupState,
) -> dict[OwnerKey, BridgeFlows]:
    shared = firewall.shared_flows(ports, sgs)
    return {owner: {topology.integration_bridge: flows} for owner, flows in shared.items()}
