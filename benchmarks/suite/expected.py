"""The flows the dataplane must hold, computed the way the agent must compute them (pure).

From the world as the switch and the server know it: the simulator's replies (device details
and security-group info for every port, parsed by aovs.rpc's reply parsers), the ofports and the
local VLANs (``Port.tag``) OVSDB reports, the patch ports' ofports. Fed to the pure pipelines
(aovs.pipelines.compose) and the openvswitch firewall driver, owner by owner, exactly as the
contract in docs/architecture.md describes; the union per bridge is what ``dump-flows`` must
show. With an overlay, br-tun's owners too, as :mod:`aovs.agent.tunnels` composes them without
l2population: one tunnel port per remote endpoint the server knows (named as neutron names them),
each network flooding to all of them, from the pure :mod:`aovs.pipelines.br_tun`. Computed
independently of the agent's process and state: a bug in its bookkeeping shows up as a
difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aovs.agent.bridges import INT_PREFIX, PHY_PREFIX, peer_name
from aovs.agent.tunnels import flood_owner, tunnel_owner, tunnel_port_name
from aovs.firewall.base import FilteredPort, OwnerKey, SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import PortDetails
from aovs.openflow.flows import Flow
from aovs.pipelines import br_tun, compose
from aovs.rpc.server_replies import device_outcome, security_group_info
from aovs.rpc.simulator import NeutronServerSimulator
from aovs.rpc.topology import Topology
from benchmarks.suite.world import (
    HOST,
    INT_PEER_PATCH,
    INTEGRATION_BRIDGE,
    PHYSICAL_BRIDGE,
    PHYSNET,
    TUN_PEER_PATCH,
    TUNNEL_BRIDGE,
    VmPort,
)

BridgeFlows = dict[str, frozenset[Flow]]


class ExpectationError(ValueError):
    """The switch's state does not allow a correct dataplane (e.g. a port without a VLAN)."""


@dataclass(frozen=True)
class ServerView:
    """What neutron-server says about every port, parsed as the agent parses it."""

    details: Mapping[str, PortDetails]  # by iface-id
    security_groups: SecurityGroupState

    @classmethod
    def of(cls, topology: Topology, vms: Sequence[VmPort]) -> ServerView:
        # the simulator's answer logic, without its transport: nothing is sent
        simulator = NeutronServerSimulator(topology, "rabbit://unused:unused@127.0.0.1:1/")
        devices = [vm.iface_id for vm in vms]
        info = security_group_info(simulator.security_group_info(devices))
        details: dict[str, PortDetails] = {}
        for device in devices:
            outcome = device_outcome(simulator.device_details(device, HOST))
            if not isinstance(outcome, PortDetails):
                raise ExpectationError(f"the simulator does not describe port {device}")
            groups = info.devices.get(device, outcome.security_groups)
            details[device] = outcome.model_copy(update={"security_groups": groups})
        members = {sg: dict(by_kind) for sg, by_kind in info.member_ips.items()}
        return cls(details, SecurityGroupState(groups=dict(info.security_groups), members=members))


@dataclass(frozen=True)
class Overlay:
    """br-tun as the suite configures the agent (``tunnel_types``, ``local_ip``, no
    l2population) and the remote endpoints the server announces (the topology's tunnels)."""

    network_type: str
    local_ip: str
    remote_ips: tuple[str, ...]

    def tunnel_ports(self) -> dict[str, str]:
        """Tunnel port name -> remote IP: one per endpoint other than this host."""
        ports: dict[str, str] = {}
        for ip in self.remote_ips:
            name = tunnel_port_name(self.network_type, ip)
            if name is None:
                raise ExpectationError(f"tunnel endpoint {ip!r} is not an IP address")
            if ip != self.local_ip:
                ports[name] = ip
        return ports


def patch_port_names(overlay: Overlay | None) -> tuple[str, ...]:
    """The patch ports the agent creates (br-int side first, per pair)."""
    physical = (peer_name(INT_PREFIX, PHYSICAL_BRIDGE), peer_name(PHY_PREFIX, PHYSICAL_BRIDGE))
    return physical + ((INT_PEER_PATCH, TUN_PEER_PATCH) if overlay is not None else ())


def pipeline_topology(
    ofports: Mapping[str, int], overlay: Overlay | None = None
) -> compose.Topology:
    """br-int and br-phys (and br-tun) joined by neutron-named patch ports, with their ofports."""
    missing = [name for name in patch_port_names(overlay) if name not in ofports]
    if missing:
        raise ExpectationError(f"patch ports {'/'.join(missing)} have no ofport yet")
    int_port, phy_port = patch_port_names(None)
    link = compose.PhysicalLink(PHYSNET, PHYSICAL_BRIDGE, ofports[int_port], ofports[phy_port])
    tunnel = None
    if overlay is not None:
        tunnel = compose.TunnelLink(TUNNEL_BRIDGE, ofports[INT_PEER_PATCH], ofports[TUN_PEER_PATCH],
                                    frozenset({overlay.network_type}))  # fmt: skip
    return compose.Topology(INTEGRATION_BRIDGE, {PHYSNET: link}, tunnel)


def overlay_flows(
    overlay: Overlay,
    ofports: Mapping[str, int],
    networks: Mapping[str, tuple[int, int]],
) -> dict[OwnerKey, BridgeFlows]:
    """br-tun's tunnel-port and flood owners; ``networks``: the overlay networks this host
    holds, network id -> (tunnel id, local VLAN)."""
    tunnel_ofports = []
    owners: dict[OwnerKey, BridgeFlows] = {}
    for name in overlay.tunnel_ports():
        ofport = ofports.get(name)
        if ofport is None:
            raise ExpectationError(f"tunnel port {name} has no ofport yet")
        tunnel_ofports.append(ofport)
        flows = br_tun.tunnel_port_flows(overlay.network_type, ofport)
        owners[tunnel_owner(name)] = {TUNNEL_BRIDGE: flows}
    for network_id, (tunnel_id, vlan) in networks.items():
        flood = br_tun.flood_flows(vlan, tunnel_id, tunnel_ofports)
        owners[flood_owner(network_id)] = {TUNNEL_BRIDGE: flood}
    return owners


def local_vlans(
    vms: Sequence[VmPort], tags: Mapping[str, int | None], provisional: bool = False
) -> dict[str, int]:
    """network id -> the local VLAN its ports carry in OVSDB (``Port.tag``).

    Every port of a network must carry the same tag and no two networks one: anything else is
    an incorrect dataplane. ``provisional`` numbers networks 1, 2, ... instead (the flow COUNT
    does not depend on the numbers, so the suite can count before the agent wrote any tag).
    """
    if provisional:
        networks = sorted({vm.network_id for vm in vms})
        return {network: index + 1 for index, network in enumerate(networks)}
    vlans: dict[str, int] = {}
    for vm in vms:
        tag = tags.get(vm.tap)
        if tag is None or not 1 <= tag <= 4094:
            raise ExpectationError(f"port {vm.tap} has tag {tag} (not a local VLAN)")
        known = vlans.setdefault(vm.network_id, tag)
        if known != tag:
            raise ExpectationError(
                f"network {vm.network_id}: ports carry tags {known} and {tag} ({vm.tap})"
            )
    if len(set(vlans.values())) != len(vlans):
        raise ExpectationError("two networks share a local VLAN")
    return vlans


def owned_flows(
    server: ServerView,
    vms: Sequence[VmPort],
    ofports: Mapping[str, int],
    vlans: Mapping[str, int],
    overlay: Overlay | None = None,
) -> dict[OwnerKey, BridgeFlows]:
    """Every owner's flows, per bridge, for these ports (tap name -> ofport) on these VLANs."""
    topology = pipeline_topology(ofports, overlay)
    firewall = OVSFirewall()
    sgs = server.security_groups
    owners: dict[OwnerKey, BridgeFlows] = dict(compose.bridge_flows(topology))
    tunnelled: dict[str, tuple[int, int]] = {}
    for network_id, vlan in vlans.items():
        some_port = next(vm for vm in vms if vm.network_id == network_id)
        segment = server.details[some_port.iface_id].segment
        problem = compose.segment_problem(topology, segment)
        if problem is not None:
            raise ExpectationError(f"network {network_id}: {problem}")
        owners[compose.network_owner(network_id)] = compose.network_flows(topology, segment, vlan)
        if segment.is_tunnel:
            tunnelled[network_id] = (br_tun.check_segment(segment), vlan)
    if overlay is not None:
        owners.update(overlay_flows(overlay, ofports, tunnelled))
    owners[compose.FIREWALL_BASE_OWNER] = compose.firewall_base_flows(topology, firewall)
    filtered: dict[str, FilteredPort] = {}
    for vm in vms:
        if vm.tap not in ofports:
            raise ExpectationError(f"port {vm.tap} has no ofport")
        if vm.network_id not in vlans:
            raise ExpectationError(f"network {vm.network_id} has no local VLAN")
        details = server.details[vm.iface_id]
        plan = compose.PortPlan(vm.iface_id, ofports[vm.tap], compose.Wiring.WIRED, details,
                                vlans[vm.network_id])  # fmt: skip
        owners[compose.port_owner(vm.iface_id)] = compose.port_flows(topology, plan, firewall, sgs)
        port = plan.filtered()
        assert port is not None
        filtered[vm.iface_id] = port
    owners.update(compose.firewall_shared_flows(topology, firewall, filtered, sgs))
    return owners


def union(owners: Mapping[OwnerKey, BridgeFlows]) -> BridgeFlows:
    """What the switch holds: every owner's flows per bridge (identical flows once)."""
    flows: dict[str, set[Flow]] = {}
    for by_bridge in owners.values():
        for bridge, bridge_flows in by_bridge.items():
            flows.setdefault(bridge, set()).update(bridge_flows)
    return {bridge: frozenset(bridge_flows) for bridge, bridge_flows in flows.items()}


def expected_flows(
    server: ServerView,
    vms: Sequence[VmPort],
    ofports: Mapping[str, int],
    vlans: Mapping[str, int],
    overlay: Overlay | None = None,
) -> BridgeFlows:
    return union(owned_flows(server, vms, ofports, vlans, overlay))


def flows_in_port(flows: frozenset[Flow], ofport: int, table: int) -> int:
    """How many of ``flows`` in ``table`` match on ``in_port=ofport`` (a port's probe count)."""
    return sum(1 for flow in flows if flow.table == table and flow.match.get("in_port") == ofport)
