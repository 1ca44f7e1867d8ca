"""The overlay part of the agent: tunnel endpoints, l2population's FDB, br-tun's flows and ports.

``TunnelState`` is plain state plus pure decisions, owned by :class:`~aovs.agent.core.AgentCore`
like the rest: events in (``tunnel_sync``'s answer, ``tunnel_update``/``tunnel_delete``,
``add/remove/update_fdb_entries``, tunnel Interface rows from OVSDB, the tunnel networks this
host holds a local VLAN for), and at each flush the br-tun flows of the owners that changed and
the tunnel ports to create or delete (one OVSDB transaction).

Which tunnel ports exist follows neutron:

- without l2population, one port per endpoint ``tunnel_sync``/``tunnel_update`` announced, and
  every tunnel network floods to all ports of its type;
- with l2population, one port per remote agent that hosts a port of one of OUR tunnel networks
  (from the FDB), a network floods only to agents that sent its flooding entry, known remote
  MACs are unicast to their agent's port (table 20), and with ``arp_responder`` their IPv4
  addresses are answered locally (table 21). FDB entries of networks this host does not hold
  are dropped (neutron keys them by its local VLAN mapping), as are those of a network whose
  last local port left (neutron's ``reclaim_local_vlan``).

Owners on br-tun: ``("tunnel", port name)`` (table 0: in_port -> tunnel type table),
``("flood", net)`` (table 22) and ``("fdb", net)`` (tables 20, 21); a network's tunnel id ->
local VLAN flow (tables 3/4) is its ``("network", net)`` owner in :mod:`aovs.dataplane.compose`.

Tunnel ports are named as neutron names them (``vxlan-c0a80002``: type, dash, the remote IPv4
address in hex; a base32 SHA-1 prefix for IPv6) with neutron's options, so an agent swap keeps
the ports. Stale ports are deleted only when this run knows they are ours: wanted earlier in
this run or restored from the snapshot, or (without l2population) once ``tunnel_sync`` has
answered, so a restart never tears down tunnels before the server has spoken.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aovs.dataplane.compose import BridgeFlows, Hosted
from aovs.dataplane.compose import hosted_tunnel_networks as hosted_tunnel_networks
from aovs.model import FdbEntry, NetworkSegment, TunnelEndpoint
from aovs.openflow.flows import Flow
from aovs.owners import TUNNEL, OwnerKey, fdb_owner, flood_owner, kind_of, tunnel_owner
from aovs.pipelines import br_tun
from aovs.rpc import events as rpc_events
from aovs.rpc.events import FLOODING_ENTRY

if TYPE_CHECKING:
    from aovs.config import AgentConfig

LOG = logging.getLogger(__name__)

DEVICE_NAME_MAX_LEN = 15
DEFAULT_VXLAN_UDP_PORT = 4789
TUNNEL_PORT_NAME = re.compile(r"^(vxlan|gre|geneve)-[0-9a-z]+$")


def tunnel_port_name(network_type: str, remote_ip: str) -> str | None:
    """neutron's ``get_tunnel_name``: ``<type>-<hex of the IPv4 address>`` (or a base32 SHA-1
    prefix of an IPv6 one) filling an interface name. None for an address that is not one."""
    try:
        address = ipaddress.ip_address(remote_ip)
    except ValueError:
        return None
    if address.version == 4:
        suffix = f"{int(address):08x}"
    else:
        hashlen = DEVICE_NAME_MAX_LEN - len(network_type) - 1
        digest = base64.b32encode(hashlib.sha1(remote_ip.encode()).digest())
        suffix = digest[:hashlen].decode().lower()
    return f"{network_type}-{suffix}"


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    """``[agent] tunnel_types/l2_population/arp_responder`` and ``[ovs] local_ip/...``."""

    local_ip: str
    tunnel_types: tuple[str, ...]
    l2_population: bool = False
    arp_responder: bool = False  # only with l2_population, as in neutron
    vxlan_udp_port: int = DEFAULT_VXLAN_UDP_PORT
    bridge: str = "br-tun"
    int_peer_patch_port: str = "patch-tun"
    tun_peer_patch_port: str = "patch-int"

    @classmethod
    def from_config(cls, config: AgentConfig) -> TunnelSettings | None:
        agent, ovs = config.agent, config.ovs
        if not agent.tunnel_types or ovs.local_ip is None:
            return None
        return cls(
            local_ip=str(ipaddress.ip_address(ovs.local_ip)),
            tunnel_types=tuple(agent.tunnel_types),
            l2_population=agent.l2_population,
            arp_responder=agent.arp_responder and agent.l2_population,
            vxlan_udp_port=ovs.vxlan_udp_port,
            bridge=ovs.tunnel_bridge,
            int_peer_patch_port=ovs.int_peer_patch_port,
            tun_peer_patch_port=ovs.tun_peer_patch_port,
        )


@dataclass(frozen=True, slots=True)
class TunnelPort:
    """One tunnel port the agent wants on br-tun."""

    name: str
    network_type: str
    remote_ip: str


@dataclass(frozen=True, slots=True)
class TunnelSynced:
    """``tunnel_sync``'s answer for one tunnel type (posted to the agent's inbox)."""

    tunnel_type: str
    endpoints: tuple[TunnelEndpoint, ...]


@dataclass(frozen=True, slots=True)
class PortChanges:
    """Tunnel ports to create and delete, in one OVSDB transaction."""

    add: tuple[TunnelPort, ...] = ()
    delete: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)


@dataclass
class TunnelFlush:
    flows: dict[OwnerKey, BridgeFlows] = field(default_factory=dict)
    ports: PortChanges = field(default_factory=PortChanges)
    state_changed: bool = False


TunnelInput = (
    TunnelSynced
    | rpc_events.TunnelUpdate
    | rpc_events.TunnelDelete
    | rpc_events.AddFdbEntries
    | rpc_events.RemoveFdbEntries
    | rpc_events.UpdateFdbEntries
)
TUNNEL_INPUTS = (
    TunnelSynced,
    rpc_events.TunnelUpdate,
    rpc_events.TunnelDelete,
    rpc_events.AddFdbEntries,
    rpc_events.RemoveFdbEntries,
    rpc_events.UpdateFdbEntries,
)


class TunnelState:
    def __init__(self, settings: TunnelSettings) -> None:
        self.settings = settings
        self.endpoints: dict[str, set[str]] = {kind: set() for kind in settings.tunnel_types}
        self.fdb: dict[str, dict[str, frozenset[FdbEntry]]] = {}  # net -> agent ip -> ports
        self.ofports: dict[str, int | None] = {}  # tunnel Interface rows in OVSDB
        self.hosted: dict[str, tuple[NetworkSegment, int]] = {}
        self.synced: set[str] = set()  # tunnel types tunnel_sync answered for in this run
        # endpoints announced by tunnel_update in this run (and not deleted since): a tunnel_sync
        # reply the server built before such an announcement must not drop them
        self._announced: dict[str, set[str]] = {kind: set() for kind in settings.tunnel_types}
        self._owned: set[str] = set()  # port names this run may delete when unwanted
        self._requested: dict[str, TunnelPort] = {}  # adds sent, not yet seen in OVSDB
        self._deleting: set[str] = set()  # deletes sent, row still seen
        self._owners: set[OwnerKey] = set()
        self._dirty: set[str] = set()  # networks whose flood/fdb owners to recompute
        self._ports_dirty = True
        self._state_changed = False

    # -- inputs ------------------------------------------------------------------------------
    def notified(self, event: TunnelInput) -> None:
        """A tunnel_sync answer or a tunnel/l2population notification."""
        if isinstance(event, TunnelSynced):
            self._synced(event)
        elif isinstance(event, rpc_events.TunnelUpdate):
            self._tunnel_update(event)
        elif isinstance(event, rpc_events.TunnelDelete):
            self._tunnel_delete(event)
        elif isinstance(event, rpc_events.AddFdbEntries):
            self._fdb_change(event.networks, add=True)
        elif isinstance(event, rpc_events.RemoveFdbEntries):
            self._fdb_change(event.networks, add=False)
        else:
            self._fdb_chg_ip(event)

    def interface_event(self, name: str, kind: str, ofport: int | None, *, deleted: bool) -> None:
        """An OVSDB Interface row; only tunnel ports named as neutron names them matter."""
        if not TUNNEL_PORT_NAME.match(name) or kind not in ("vxlan", "gre", "ip6gre", "geneve"):
            return
        if deleted:
            if name not in self.ofports:
                return
            del self.ofports[name]
            self._deleting.discard(name)
        else:
            if self.ofports.get(name, 0) == ofport and name in self.ofports:
                return
            if ofport == -1:
                LOG.error("tunnel port could not be created", extra={"port": name})
            self.ofports[name] = ofport
            self._requested.pop(name, None)
        self._mark_all()

    def set_hosted(self, hosted: Hosted) -> None:
        """The tunnel networks with a local VLAN on this host (recomputed at every flush)."""
        if hosted == self.hosted:
            return
        for network_id in set(self.hosted) | set(hosted):
            if self.hosted.get(network_id) != hosted.get(network_id):
                self._dirty.add(network_id)
        self.hosted = dict(hosted)
        for network_id in [n for n in self.fdb if n not in self.hosted]:
            del self.fdb[network_id]  # neutron's reclaim_local_vlan forgets them too
            self._state_changed = True
        self._ports_dirty = True

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-able: the endpoints and FDB this host's tunnels and flows are built from."""
        return {
            "endpoints": {kind: sorted(ips) for kind, ips in sorted(self.endpoints.items())},
            "fdb": {
                net: {ip: sorted([e.mac_address, e.ip_address] for e in entries)
                      for ip, entries in sorted(by_ip.items())}
                for net, by_ip in sorted(self.fdb.items())
            },
        }  # fmt: skip

    def restore(self, data: Mapping[str, Any]) -> None:
        """Prime from the snapshot (before the first flush). ValueError on a malformed one."""
        if not data:
            return
        try:
            endpoints = {
                str(kind): {str(ipaddress.ip_address(ip)) for ip in ips}
                for kind, ips in data.get("endpoints", {}).items()
            }
            fdb = {
                str(net): {
                    str(ip): frozenset(FdbEntry(mac_address=m, ip_address=a) for m, a in entries)
                    for ip, entries in by_ip.items()
                }
                for net, by_ip in data.get("fdb", {}).items()
            }
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed tunnel snapshot: {str(exc).splitlines()[0]}") from None
        for kind, ips in endpoints.items():
            if kind in self.endpoints:
                self.endpoints[kind] |= ips - {self.settings.local_ip}
        self.fdb.update(fdb)
        kinds = self.settings.tunnel_types
        known = [(k, ip) for k, ips in self.endpoints.items() for ip in ips]
        known += [(k, ip) for by_ip in self.fdb.values() for ip in by_ip for k in kinds]
        self._owned |= {n for n in (tunnel_port_name(k, ip) for k, ip in known) if n}
        self._mark_all()

    # -- the flush -----------------------------------------------------------------------------
    def flush(self) -> TunnelFlush:
        """br-tun flows of the owners that changed (empty for owners gone) and port changes."""
        result = TunnelFlush()
        hosted = self.hosted
        wanted = self._wanted_ports(hosted)
        self._owned |= set(wanted)
        if self._ports_dirty:
            result.ports = self._port_changes(wanted)
            owners = {tunnel_owner(name): self._port_flows(port) for name, port in wanted.items()}
            for owner, flows in owners.items():
                result.flows[owner] = flows
            for owner in [o for o in self._owners if kind_of(o) == TUNNEL and o not in owners]:
                result.flows[owner] = {}
            self._dirty |= set(self.hosted)
            self._ports_dirty = False
        for network_id in self._dirty:
            result.flows[flood_owner(network_id)] = self._flood_flows(network_id, wanted, hosted)
            result.flows[fdb_owner(network_id)] = self._fdb_flows(network_id, hosted)
        self._dirty.clear()
        for owner, flows in result.flows.items():
            if flows:
                self._owners.add(owner)
            else:
                self._owners.discard(owner)
        result.state_changed, self._state_changed = self._state_changed, False
        return result

    def desired_owners(self, hosted: Hosted) -> dict[OwnerKey, BridgeFlows]:
        """Every tunnel, flood and FDB owner's flows while this host holds ``hosted`` (what
        ``flush`` keeps, owner by owner, after ``set_hosted(hosted)``; no state changes)."""
        wanted = self._wanted_ports(hosted)
        owners = {tunnel_owner(name): self._port_flows(port) for name, port in wanted.items()}
        for network_id in hosted:
            owners[flood_owner(network_id)] = self._flood_flows(network_id, wanted, hosted)
            owners[fdb_owner(network_id)] = self._fdb_flows(network_id, hosted)
        return {owner: flows for owner, flows in owners.items() if flows}

    def port_changes_failed(self, changes: PortChanges) -> None:
        """The transaction failed: ask again at the next flush."""
        for port in changes.add:
            self._requested.pop(port.name, None)
        self._deleting -= set(changes.delete)
        self._ports_dirty = True

    # -- decisions -----------------------------------------------------------------------------
    def _wanted_ports(self, hosted: Hosted) -> dict[str, TunnelPort]:
        settings = self.settings
        pairs: set[tuple[str, str]] = set()
        if settings.l2_population:
            for network_id, (segment, _vlan) in hosted.items():
                if segment.network_type in settings.tunnel_types:
                    ips = self.fdb.get(network_id, {})
                    pairs.update((segment.network_type, ip) for ip in ips)
        else:
            pairs.update((kind, ip) for kind, ips in self.endpoints.items() for ip in ips)
        wanted = {}
        for kind, ip in pairs:
            name = tunnel_port_name(kind, ip)
            if name is not None and ip != settings.local_ip and self._same_family(ip):
                wanted[name] = TunnelPort(name, kind, ip)
        return wanted

    def _same_family(self, ip: str) -> bool:
        local = ipaddress.ip_address(self.settings.local_ip)
        if ipaddress.ip_address(ip).version == local.version:
            return True
        LOG.error("IP version mismatch, no tunnel",
                  extra={"local_ip": self.settings.local_ip, "remote_ip": ip})  # fmt: skip
        return False

    def _port_changes(self, wanted: Mapping[str, TunnelPort]) -> PortChanges:
        add = tuple(
            port
            for name, port in sorted(wanted.items())
            if name not in self.ofports and self._requested.get(name) != port
        )
        authoritative = not self.settings.l2_population and set(self.settings.tunnel_types) <= (
            self.synced
        )
        delete = tuple(
            name
            for name in sorted(self.ofports)
            if name not in wanted
            and name not in self._deleting
            and (name in self._owned or authoritative)
        )
        self._requested.update((port.name, port) for port in add)
        self._deleting |= set(delete)
        self._owned -= set(delete)
        return PortChanges(add, delete)

    def _ofport(self, name: str | None) -> int | None:
        ofport = self.ofports.get(name) if name is not None else None
        return ofport if ofport is not None and ofport > 0 else None

    def _port_flows(self, port: TunnelPort) -> BridgeFlows:
        ofport = self._ofport(port.name)
        if ofport is None:
            return {}
        return {self.settings.bridge: br_tun.tunnel_port_flows(port.network_type, ofport)}

    def _flood_flows(
        self, network_id: str, wanted: Mapping[str, TunnelPort], hosted: Hosted
    ) -> BridgeFlows:
        held = hosted.get(network_id)
        if held is None:
            return {}
        segment, vlan = held
        kind = segment.network_type
        if self.settings.l2_population:
            names = [
                tunnel_port_name(kind, ip)
                for ip, entries in self.fdb.get(network_id, {}).items()
                if FLOODING_ENTRY in entries
            ]
        else:
            names = [name for name, port in wanted.items() if port.network_type == kind]
        ofports = [p for p in map(self._ofport, names) if p is not None]
        tunnel_id = br_tun.check_segment(segment)
        return {self.settings.bridge: br_tun.flood_flows(vlan, tunnel_id, ofports)}

    def _fdb_flows(self, network_id: str, hosted: Hosted) -> BridgeFlows:
        held = hosted.get(network_id)
        if held is None or not self.settings.l2_population:
            return {}
        segment, vlan = held
        tunnel_id = br_tun.check_segment(segment)
        unicast: dict[str, Flow] = {}  # by MAC: one agent per MAC (the last one, sorted)
        arp: dict[str, Flow] = {}
        for ip, entries in sorted(self.fdb.get(network_id, {}).items()):
            ofport = self._ofport(tunnel_port_name(segment.network_type, ip))
            if ofport is None:
                continue
            for entry in sorted(entries, key=lambda e: (e.mac_address, e.ip_address or "")):
                if entry == FLOODING_ENTRY:
                    continue
                mac = entry.mac_address
                unicast[mac] = br_tun.unicast_flow(vlan, tunnel_id, ofport, mac)
                if self.settings.arp_responder and entry.ip_address:
                    flow = br_tun.arp_responder_flow(vlan, entry.ip_address, mac)
                    if flow is not None:
                        arp[entry.ip_address] = flow
        flows = frozenset([*unicast.values(), *arp.values()])
        return {self.settings.bridge: flows} if flows else {}

    # -- event handling ------------------------------------------------------------------------
    def _synced(self, event: TunnelSynced) -> None:
        kind = event.tunnel_type
        if kind not in self.endpoints:
            return
        self.synced.add(kind)
        if self.settings.l2_population:
            return  # l2population announces endpoints per network (the FDB)
        # the reply replaces what the snapshot restored (an endpoint gone while the agent was
        # down is dropped), never what was announced meanwhile: the server may have built the
        # reply before that announcement, and the agent handled the announcement first
        ips = {e.ip_address for e in event.endpoints} - {self.settings.local_ip}
        ips |= self._announced[kind]
        if ips != self.endpoints[kind]:
            self.endpoints[kind] = ips
            self._state_changed = True
            self._mark_all()

    def _accepts(self, kind: str | None, ip: str, what: str) -> bool:
        if kind not in self.endpoints:
            LOG.error(f"{what}: tunnel type not enabled here; ignored",
                      extra={"tunnel_type": kind, "tunnel_ip": ip})  # fmt: skip
            return False
        return ip != self.settings.local_ip

    def _tunnel_update(self, event: rpc_events.TunnelUpdate) -> None:
        ip, kind = event.tunnel_ip, event.tunnel_type
        if not self._accepts(kind, ip, "tunnel_update") or self.settings.l2_population:
            return
        assert kind is not None
        self._announced[kind].add(ip)
        if ip not in self.endpoints[kind]:
            self.endpoints[kind].add(ip)
            self._state_changed = True
            self._mark_all()

    def _tunnel_delete(self, event: rpc_events.TunnelDelete) -> None:
        ip, kind = event.tunnel_ip, event.tunnel_type
        if not self._accepts(kind, ip, "tunnel_delete"):
            return
        assert kind is not None
        self._announced[kind].discard(ip)
        if ip in self.endpoints[kind]:
            self.endpoints[kind].discard(ip)
            self._state_changed = True
            self._mark_all()

    def _fdb_change(self, networks: Iterable[rpc_events.FdbNetwork], *, add: bool) -> None:
        if not self.settings.l2_population:
            return
        for network in networks:
            if network.network_id not in self.hosted:
                continue  # not ours (yet): the server sends all of it when we join
            by_ip = self.fdb.setdefault(network.network_id, {})
            for ip, entries in network.ports.items():
                if ip == self.settings.local_ip:
                    continue
                old = by_ip.get(ip, frozenset())
                new = old | set(entries) if add else old - set(entries)
                self._set_entries(network.network_id, ip, new)
            if not by_ip:
                self.fdb.pop(network.network_id, None)

    def _fdb_chg_ip(self, event: rpc_events.UpdateFdbEntries) -> None:
        """A port's IP changed (same MAC): the ARP responder entries follow."""
        if not self.settings.l2_population:
            return
        for change in event.changes:
            if change.agent_ip == self.settings.local_ip:
                continue
            by_ip = self.fdb.get(change.network_id, {})
            old = by_ip.get(change.agent_ip, frozenset())
            new = (old - set(change.before)) | set(change.after)
            if change.network_id in self.fdb:
                self._set_entries(change.network_id, change.agent_ip, new)

    def _set_entries(self, network_id: str, ip: str, entries: frozenset[FdbEntry]) -> None:
        by_ip = self.fdb.setdefault(network_id, {})
        if by_ip.get(ip, frozenset()) == entries:
            return
        if entries:
            by_ip[ip] = entries
        else:
            by_ip.pop(ip, None)
        self._state_changed = True
        self._dirty.add(network_id)
        self._ports_dirty = True

    def _mark_all(self) -> None:
        self._ports_dirty = True
        self._dirty |= set(self.hosted)
