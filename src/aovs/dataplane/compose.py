"""The desired dataplane: the agent's state in, every bridge's flows by owner out (pure).

:func:`desired_flows` (and :func:`desired_owners`, the same by owner) IS the specification of
what the reconciler installs: the agent core (:class:`aovs.agent.core.AgentCore`) recomputes
only the owners an event made dirty, with the per-owner functions below, and must always hold
exactly ``desired_flows(core.dataplane_state())`` once flushed (property-tested in
tests/unit/agent/test_core_stateful.py); the fault invariant, the benchmarks' correctness check
and the firewall tests ask this function instead of composing the builders themselves.

Owners (named in :mod:`aovs.owners`): a bridge's base flows, the patch-port drops, a network's
translation (br-int + its physical bridge, or br-tun's tunnel id -> local VLAN) and its local
VLAN's flooding on br-int (over its wired ports), a port's own flows (dead-port drop, or its
local VLAN tagging and delivery plus the firewall's port flows), the firewall's base and shared
owners, and br-tun's tunnel, flood and FDB owners (from :mod:`aovs.agent.tunnels`, through
:class:`TunnelFlows`). A bridge is a pipeline module with the same shape (base, network, port).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from aovs.firewall.base import FilteredPort, FirewallDriver
from aovs.firewall.base import SecurityGroupState as SecurityGroupState
from aovs.firewall.port_addresses import is_trusted
from aovs.model import NetworkSegment, PortDetails
from aovs.openflow.flows import Flow
from aovs.owners import (
    FIREWALL_BASE_OWNER,
    OwnerKey,
    bridge_owner,
    network_owner,
    patch_owner,
    port_owner,
)
from aovs.pipelines import br_int, br_phys, br_tun

BridgeFlows = dict[str, frozenset[Flow]]
Hosted = Mapping[str, tuple[NetworkSegment, int]]  # network id -> (segment, local VLAN)
PHYSICAL_TYPES = frozenset({"vlan", "flat"})
MAX_VLAN = 4094


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
    # br-int flows the agent extensions contribute to a wired port (aovs.extensions)
    extension_flows: frozenset[Flow] = frozenset()

    def filtered(self) -> FilteredPort | None:
        """The firewall's view, for wired ports only."""
        if self.wiring is not Wiring.WIRED or self.details is None or self.local_vlan is None:
            return None
        return FilteredPort(details=self.details, ofport=self.ofport, local_vlan=self.local_vlan)


def local_port(port: FilteredPort) -> br_int.LocalPort:
    """A wired port as br-int's switching tables see it: its MAC is known; it may own MACs
    nobody told us when neutron does not police its sources (trusted) or it has address-pair
    MACs (several ports may share one, e.g. VRRP), so unknown unicast reaches it too."""
    details = port.details
    mac = details.mac_address
    extra_macs = any(
        pair.mac_address is not None and pair.mac_address != mac
        for pair in details.allowed_address_pairs
    )
    return br_int.LocalPort(port.ofport, mac, is_trusted(details) or extra_macs)


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
            tunnel.bridge: br_tun.base_flows(tunnel.patch_int_ofport, tunnel.arp_responder),
            topology.integration_bridge: frozenset({br_int.uplink_flow(tunnel.patch_tun_ofport)}),
        }
    return owners


def network_flows(
    topology: Topology,
    segment: NetworkSegment,
    local_vlan: int,
    ports: Iterable[br_int.LocalPort] = (),
) -> BridgeFlows:
    """A network's translation flows and its local VLAN's flooding on br-int over ``ports``
    (its wired ports, as :func:`local_port` sees them); empty for a network this host cannot
    carry."""
    if segment_problem(topology, segment) is not None:
        return {}
    members = list(ports)
    br_int_bridge = topology.integration_bridge
    if segment.network_type == "local":
        return {br_int_bridge: br_int.local_vlan_flows(local_vlan, None, members)}
    if segment.is_tunnel and topology.tunnel is not None:
        uplink = topology.tunnel.patch_tun_ofport
        return {
            topology.tunnel.bridge: br_tun.network_flows(segment, local_vlan),
            br_int_bridge: br_int.local_vlan_flows(local_vlan, uplink, members),
        }
    assert segment.physical_network is not None
    link = topology.physical[segment.physical_network]
    translation = br_int.network_flows(link.int_patch_ofport, segment, local_vlan)
    flooding = br_int.local_vlan_flows(local_vlan, link.int_patch_ofport, members)
    return {
        br_int_bridge: translation | flooding,
        link.bridge: br_phys.network_flows(link.phy_patch_ofport, segment, local_vlan),
    }


def port_flows(
    topology: Topology,
    port: PortPlan,
    firewall: FirewallDriver,
    sgs: SecurityGroupState,
) -> BridgeFlows:
    """One port's flows: a drop while it must not forward, else its local VLAN tagging and
    delivery and the firewall's port flows."""
    if port.wiring is Wiring.DEAD:
        return {topology.integration_bridge: br_int.dead_port_flows(port.ofport)}
    filtered = port.filtered()
    if filtered is None:
        raise ValueError(f"wired port {port.iface_id} without details or local VLAN")
    own = firewall.port_flows(filtered, sgs) | switching(filtered)
    return {topology.integration_bridge: own | port.extension_flows}


def switching(port: FilteredPort) -> frozenset[Flow]:
    """A wired port's own flows in br-int's switching tables."""
    return br_int.local_port_flows(local_port(port), port.local_vlan)


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


def firewall_owners(
    firewall: FirewallDriver, ports: Mapping[str, FilteredPort], sgs: SecurityGroupState
) -> dict[OwnerKey, frozenset[Flow]]:
    """Every owner of the firewall driver's flows (all on br-int), for these ports (by iface
    id): its base owner, one owner per port and its shared owners. Owners without flows are
    left out (the agent holds nothing for them)."""
    owners: dict[OwnerKey, frozenset[Flow]] = {FIREWALL_BASE_OWNER: firewall.base_flows()}
    for iface_id, port in ports.items():
        owners[port_owner(iface_id)] = firewall.port_flows(port, sgs)
    owners.update(firewall.shared_flows(ports, sgs))
    return {owner: flows for owner, flows in owners.items() if flows}


def hosted_tunnel_networks(
    networks: Mapping[str, NetworkSegment], local_vlans: Mapping[str, int]
) -> dict[str, tuple[NetworkSegment, int]]:
    """The tunnel networks this host holds a local VLAN for."""
    hosted = {}
    for network_id, vlan in local_vlans.items():
        segment = networks.get(network_id)
        if segment is not None and segment.is_tunnel:
            hosted[network_id] = (segment, vlan)
    return hosted


class TunnelFlows(Protocol):
    """br-tun's owners that follow tunnel endpoints and l2population
    (:class:`aovs.agent.tunnels.TunnelState`)."""

    def desired_owners(self, hosted: Hosted) -> Mapping[OwnerKey, BridgeFlows]:
        """Every tunnel, flood and FDB owner's flows while this host holds ``hosted``."""
        ...


@dataclass(frozen=True)
class DataplaneState:
    """Everything the desired flows depend on, as the agent core holds it."""

    topology: Topology
    firewall: FirewallDriver
    ports: Mapping[str, PortPlan]  # by iface id: every port with a valid ofport
    networks: Mapping[str, NetworkSegment]  # by network id (those without a VLAN are ignored)
    local_vlans: Mapping[str, int]  # network id -> local VLAN
    security_groups: SecurityGroupState = field(
        default_factory=lambda: SecurityGroupState(groups={})
    )
    tunnels: TunnelFlows | None = None  # with [agent] tunnel_types


def desired_owners(state: DataplaneState) -> dict[OwnerKey, BridgeFlows]:
    """Every owner's flows per bridge: the specification the agent core computes
    incrementally (owners without flows are left out)."""
    topology, firewall, sgs = state.topology, state.firewall, state.security_groups
    owners: dict[OwnerKey, BridgeFlows] = bridge_flows(topology)
    filtered: dict[str, FilteredPort] = {}
    for iface_id, port in state.ports.items():
        filtered_port = port.filtered()
        if filtered_port is None:  # dead (a wired port without details raises here)
            owners[port_owner(iface_id)] = port_flows(topology, port, firewall, sgs)
        else:  # the firewall's port owner plus its switching (as port_flows composes them)
            filtered[iface_id] = filtered_port
            own = switching(filtered_port) | port.extension_flows
            owners[port_owner(iface_id)] = {topology.integration_bridge: own}
    for network_id, vlan in state.local_vlans.items():
        segment = state.networks.get(network_id)
        if segment is not None:
            on_it = [p for p in filtered.values() if p.details.network_id == network_id]
            members = [local_port(port) for port in on_it]
            owners[network_owner(network_id)] = network_flows(topology, segment, vlan, members)
    for owner, flows in firewall_owners(firewall, filtered, sgs).items():
        if owner in owners:  # a port owner: its switching flows are there already
            bridge = topology.integration_bridge
            owners[owner] = {bridge: owners[owner][bridge] | flows}
        else:
            owners[owner] = {topology.integration_bridge: flows}
    if state.tunnels is not None:
        hosted = hosted_tunnel_networks(state.networks, state.local_vlans)
        owners.update(state.tunnels.desired_owners(hosted))
    return {
        owner: {bridge: flows for bridge, flows in by_bridge.items() if flows}
        for owner, by_bridge in owners.items()
        if any(by_bridge.values())
    }


def union(owners: Mapping[OwnerKey, BridgeFlows]) -> BridgeFlows:
    """What the switch holds: every owner's flows per bridge (identical flows once)."""
    flows: dict[str, set[Flow]] = {}
    for by_bridge in owners.values():
        for bridge, bridge_flows in by_bridge.items():
            flows.setdefault(bridge, set()).update(bridge_flows)
    return {bridge: frozenset(bridge_flows) for bridge, bridge_flows in flows.items()}


def desired_flows(state: DataplaneState) -> BridgeFlows:
    """Every bridge's complete desired flow set (what the reconciler diffs the switch against)."""
    flows = union(desired_owners(state))
    return {bridge: flows.get(bridge, frozenset()) for bridge in state.topology.bridges} | flows
