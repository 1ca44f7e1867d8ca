"""The flows the dataplane must hold: the agent's own specification, from the world's state.

From the world as the switch and the server know it: the simulator's replies (device details
and security-group info for every port, parsed by aovs.rpc's reply parsers), the ofports OVSDB
reports, the local VLANs (``Port.tag``; for a port the agent has not tagged yet, as it writes
Port.tag lazily after the port forwards, the conntrack zone its table-60 flow loads: see
``port_zones``; every port of a network must agree either way), the patch ports' ofports.
They make a :class:`aovs.dataplane.compose.DataplaneState` (every port wired, the openvswitch
firewall; with an overlay, br-tun's tunnel state once ``tunnel_sync`` answered without
l2population and the tunnel ports exist), and :func:`aovs.dataplane.compose.desired_flows` says
what ``dump-flows`` must show. The state comes from the switch and the server, never from the
agent's process: a bug in its bookkeeping shows up as a difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aovs.agent.bridges import INT_PREFIX, PHY_PREFIX, peer_name
from aovs.agent.tunnels import TunnelSettings, TunnelState, TunnelSynced, tunnel_port_name
from aovs.dataplane import compose
from aovs.dataplane.compose import BridgeFlows, DataplaneState, PortPlan, Wiring
from aovs.firewall.base import SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import PortDetails, TunnelEndpoint
from aovs.openflow.flows import Flow
from aovs.owners import OwnerKey
from aovs.rpc.server_replies import device_outcome, security_group_info
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator
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


class ExpectationError(ValueError):
    """The switch's state does not allow a correct dataplane (e.g. a port without a VLAN)."""


@dataclass(frozen=True)
class ServerView:
    """What neutron-server says about every port, parsed as the agent parses it."""

    details: Mapping[str, PortDetails]  # by iface-id
    security_groups: SecurityGroupState

    @classmethod
    def of(cls, topology: SimulatedCloud, vms: Sequence[VmPort]) -> ServerView:
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


def overlay_state(overlay: Overlay, ofports: Mapping[str, int]) -> TunnelState:
    """br-tun's state as the agent holds it once ``tunnel_sync`` answered and every tunnel port
    exists (with these ofports)."""
    settings = TunnelSettings(overlay.local_ip, (overlay.network_type,), bridge=TUNNEL_BRIDGE)
    state = TunnelState(settings)
    endpoints = tuple(TunnelEndpoint(ip_address=ip) for ip in overlay.remote_ips)
    state.notified(TunnelSynced(overlay.network_type, endpoints))
    for name in overlay.tunnel_ports():
        ofport = ofports.get(name)
        if ofport is None:
            raise ExpectationError(f"tunnel port {name} has no ofport yet")
        state.interface_event(name, overlay.network_type, ofport, deleted=False)
    return state


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


ZONE_LOAD = re.compile(r"\bin_port=(\d+)\b.*\bset_field:(0x[0-9a-f]+|\d+)->reg6\b")


def port_zones(table_60: Sequence[str]) -> dict[int, int]:
    """ofport -> the conntrack zone (reg6) its table-60 flows load, from ``dump-flows`` lines
    of the openvswitch firewall's TRANSIENT table: the port's local VLAN (pure)."""
    zones: dict[int, int] = {}
    for line in table_60:
        found = ZONE_LOAD.search(line)
        if found is not None:
            zones[int(found.group(1))] = int(found.group(2), 0)
    return zones


def vlan_sources(
    vms: Sequence[VmPort],
    tags: Mapping[str, int | None],
    zones: Mapping[int, int],
    ofports: Mapping[str, int],
) -> dict[str, int | None]:
    """tap -> its local VLAN: the Port.tag when it is one (1..4094), else the zone its flows
    load (the agent writes Port.tag after the port forwards), else None (pure)."""
    found: dict[str, int | None] = {}
    for vm in vms:
        tag = tags.get(vm.tap)
        if tag is not None and 1 <= tag <= 4094:
            found[vm.tap] = tag
        else:
            ofport = ofports.get(vm.tap)
            found[vm.tap] = None if ofport is None else zones.get(ofport)
    return found


def dataplane_state(
    server: ServerView,
    vms: Sequence[VmPort],
    ofports: Mapping[str, int],
    vlans: Mapping[str, int],
    overlay: Overlay | None = None,
) -> DataplaneState:
    """The agent's state once every port is wired: these ports (tap name -> ofport) on these
    VLANs, the server's details and security groups, the openvswitch firewall."""
    topology = pipeline_topology(ofports, overlay)
    networks = {}
    for network_id in vlans:
        some_port = next(vm for vm in vms if vm.network_id == network_id)
        segment = server.details[some_port.iface_id].segment
        problem = compose.segment_problem(topology, segment)
        if problem is not None:
            raise ExpectationError(f"network {network_id}: {problem}")
        networks[network_id] = segment
    ports = {}
    for vm in vms:
        if vm.tap not in ofports:
            raise ExpectationError(f"port {vm.tap} has no ofport")
        if vm.network_id not in vlans:
            raise ExpectationError(f"network {vm.network_id} has no local VLAN")
        details = server.details[vm.iface_id]
        vlan = vlans[vm.network_id]
        ports[vm.iface_id] = PortPlan(vm.iface_id, ofports[vm.tap], Wiring.WIRED, details, vlan)
    return DataplaneState(
        topology=topology,
        firewall=OVSFirewall(),
        ports=ports,
        networks=networks,
        local_vlans=dict(vlans),
        security_groups=server.security_groups,
        tunnels=overlay_state(overlay, ofports) if overlay is not None else None,
    )


def owned_flows(
    server: ServerView,
    vms: Sequence[VmPort],
    ofports: Mapping[str, int],
    vlans: Mapping[str, int],
    overlay: Overlay | None = None,
) -> dict[OwnerKey, BridgeFlows]:
    """Every owner's flows, per bridge (the legacy baseline installs them port by port)."""
    return compose.desired_owners(dataplane_state(server, vms, ofports, vlans, overlay))


def expected_flows(
    server: ServerView,
    vms: Sequence[VmPort],
    ofports: Mapping[str, int],
    vlans: Mapping[str, int],
    overlay: Overlay | None = None,
) -> BridgeFlows:
    return compose.desired_flows(dataplane_state(server, vms, ofports, vlans, overlay))


def flows_in_port(flows: frozenset[Flow], ofport: int, table: int) -> int:
    """How many of ``flows`` in ``table`` match on ``in_port=ofport`` (a port's probe count)."""
    return sum(1 for flow in flows if flow.table == table and flow.match.get("in_port") == ofport)
