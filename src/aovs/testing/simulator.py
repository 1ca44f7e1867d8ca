"""A neutron-server stand-in: serves the agent's calls from a SimulatedCloud, sends notifications.

It answers on the same topics, with the same versions and reply shapes as neutron 29's ML2
server (see /work/shared/reference/oslo-messaging-wire.md), so the agent cannot tell it from
the real thing, and a real oslo.messaging client can call it. It records every
update_device_list and report_state it receives, and has fault switches for tests:

    sim = NeutronServerSimulator(SimulatedCloud.load("config/topology-small.json"), transport_url)
    await sim.start()
    sim.answering = False        # calls hang (no reply) until set back: clients time out
    sim.reply_delay = 0.5        # answer, but late
    sim.fail_devices = {port_id}  # these devices come back in failed_devices
    await sim.notify_port_update(port_id)
    sim.device_up_reports        # every device reported up, in order
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aovs.rpc.amqp import RpcServer, RpcTransport
from aovs.rpc.notifications import (
    L2POPULATION_UPDATE_TOPIC,
    NETWORK_DELETE_TOPIC,
    NETWORK_UPDATE_TOPIC,
    PORT_DELETE_TOPIC,
    PORT_UPDATE_TOPIC,
    SECURITY_GROUP_UPDATE_TOPIC,
    TUNNEL_DELETE_TOPIC,
    TUNNEL_UPDATE_TOPIC,
)
from aovs.rpc.server_api import PLUGIN_TOPIC, REPORTS_TOPIC
from aovs.testing.cloud import CloudNetwork, CloudPort, CloudRule, CloudTunnel, SimulatedCloud

LOG = logging.getLogger(__name__)

VXLAN_UDP_PORT = 4789
_DIRECTION_PREFIX = {"ingress": "source_ip_prefix", "egress": "dest_ip_prefix"}


@dataclass(frozen=True, slots=True)
class DeviceListReport:
    """One update_device_list call as received."""

    devices_up: tuple[str, ...]
    devices_down: tuple[str, ...]
    agent_id: str
    host: str
    refresh_tunnels: bool


class NeutronServerSimulator:
    def __init__(
        self,
        topology: SimulatedCloud,
        transport_url: str | None = None,
        *,
        transport: RpcTransport | None = None,
        server_host: str = "neutron-server",
    ) -> None:
        if (transport_url is None) == (transport is None):
            raise ValueError("give a transport_url or a transport")
        self._own_transport = transport is None
        self.transport = transport or RpcTransport(transport_url or "")
        self.server_host = server_host
        self.networks: dict[str, CloudNetwork] = dict(topology.networks)
        self.security_groups = dict(topology.security_groups)
        self.ports: dict[str, CloudPort] = {port.port_id: port for port in topology.ports}
        # Endpoints per tunnel type, as ML2's type drivers keep them (one endpoints table per
        # type); the topology's endpoints (type None) answer for every type.
        self.tunnels: dict[tuple[str, str | None], CloudTunnel] = {
            (t.ip_address, None): t for t in topology.tunnels
        }
        # fault switches (see also the ``answering`` property)
        self._answering = asyncio.Event()
        self._answering.set()
        self.reply_delay = 0.0
        self.fail_devices: set[str] = set()
        self.wire_overrides: dict[str, dict[str, Any]] = {}  # device -> fields to replace
        # records
        self.device_list_reports: list[DeviceListReport] = []
        self.state_reports: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self._agents_seen: set[str] = set()
        self._servers: list[RpcServer] = []
        self._details_cache: dict[str, dict[str, Any]] = {}

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._own_transport:
            await self.transport.start()
        self._servers = [
            await self.transport.serve(
                PLUGIN_TOPIC,
                self.server_host,
                [_PluginEndpoint(self), _SecurityGroupEndpoint(self)],
            ),
            await self.transport.serve(REPORTS_TOPIC, self.server_host, [_ReportsEndpoint(self)]),
        ]

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers.clear()
        if self._own_transport:
            await self.transport.close()

    async def __aenter__(self) -> NeutronServerSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- world changes -----------------------------------------------------------------------

    def add_port(self, port: CloudPort | Mapping[str, Any]) -> CloudPort:
        port = port if isinstance(port, CloudPort) else CloudPort.model_validate(port)
        if port.network_id not in self.networks:
            raise ValueError(f"port {port.port_id}: unknown network {port.network_id}")
        self.ports[port.port_id] = port
        self._details_cache.pop(port.port_id, None)
        return port

    def remove_port(self, port_id: str) -> None:
        self.ports.pop(port_id, None)
        self._details_cache.pop(port_id, None)

    # ---- records -----------------------------------------------------------------------------

    @property
    def device_up_reports(self) -> list[str]:
        return [d for report in self.device_list_reports for d in report.devices_up]

    @property
    def device_down_reports(self) -> list[str]:
        return [d for report in self.device_list_reports for d in report.devices_down]

    # ---- what the server answers (neutron's exact shapes) ------------------------------------

    async def _serve(self, method: str) -> None:
        """Common prologue of every call: count, honour the fault switches."""
        self.calls[method] += 1
        await self._answering.wait()
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)

    @property
    def answering(self) -> bool:
        """False: calls are taken from the queue but never answered (a hung server)."""
        return self._answering.is_set()

    @answering.setter
    def answering(self, value: bool) -> None:
        if value:
            self._answering.set()
        else:
            self._answering.clear()

    def device_details(self, device: str, host: str | None) -> dict[str, Any]:
        port = self.ports.get(device)
        if port is None:
            return {"device": device}
        bound_elsewhere = port.binding_host is not None and port.binding_host != host
        if bound_elsewhere and port.device_owner.startswith("compute:"):
            return {"device": device, "no_active_binding": True}
        details = self._details_cache.get(device)
        if details is None:
            network = self.networks[port.network_id]
            details = {
                "device": device,
                "device_id": f"vm-{device[:8]}",
                "port_id": port.port_id,
                "network_id": port.network_id,
                "mac_address": port.mac_address,
                "admin_state_up": port.admin_state_up,
                "network_type": network.network_type,
                "segmentation_id": network.segmentation_id,
                "physical_network": network.physical_network,
                "mtu": network.effective_mtu,
                "fixed_ips": [
                    {"subnet_id": ip.subnet_id, "ip_address": ip.ip_address}
                    for ip in port.fixed_ips
                ],
                "device_owner": port.device_owner,
                "allowed_address_pairs": [
                    {"ip_address": p.ip_address, "mac_address": p.mac_address or port.mac_address}
                    for p in port.allowed_address_pairs
                ],
                "port_security_enabled": port.port_security_enabled,
                "qos_policy_id": None,
                "qos_network_policy_id": None,
                "profile": {},
                "propagate_uplink_status": False,
            }
            self._details_cache[device] = details
        override = self.wire_overrides.get(device)
        return {**details, **override} if override else details

    def port_api_dict(self, port: CloudPort) -> dict[str, Any]:
        """The port as the REST API shows it (port_update notifications, SG info devices)."""
        network = self.networks[port.network_id]
        return {
            "id": port.port_id,
            "name": "",
            "network_id": port.network_id,
            "tenant_id": "simulated-project",
            "project_id": "simulated-project",
            "mac_address": port.mac_address,
            "admin_state_up": port.admin_state_up,
            "status": "ACTIVE",
            "device_id": f"vm-{port.port_id[:8]}",
            "device_owner": port.device_owner,
            "fixed_ips": [
                {"subnet_id": ip.subnet_id, "ip_address": ip.ip_address} for ip in port.fixed_ips
            ],
            "allowed_address_pairs": [
                {"ip_address": p.ip_address, "mac_address": p.mac_address or port.mac_address}
                for p in port.allowed_address_pairs
            ],
            "port_security_enabled": port.port_security_enabled,
            "security_groups": list(port.security_groups),
            "binding:host_id": port.binding_host or "",
            "binding:vif_type": "ovs",
            "binding:vnic_type": "normal",
            "provider:network_type": network.network_type,
            "mtu": network.effective_mtu,
        }

    def security_group_info(self, devices: Iterable[str]) -> dict[str, Any]:
        ports = [self.ports[d] for d in devices if d in self.ports]
        result_devices: dict[str, Any] = {}
        groups: dict[str, list[dict[str, Any]]] = {}
        for port in ports:
            if port.device_owner.startswith("network:"):
                continue  # neutron leaves router/DHCP ports out
            entry = self.port_api_dict(port)
            entry["fixed_ips"] = [ip.ip_address for ip in port.fixed_ips]
            entry["device"] = port.port_id
            entry["security_group_rules"] = _provider_rules()
            entry["security_group_source_groups"] = sorted(
                {
                    rule.remote_group_id
                    for sg in port.security_groups
                    for rule in self.security_groups[sg].rules
                    if rule.remote_group_id
                }
            )
            entry["security_group_remote_address_groups"] = []
            result_devices[port.port_id] = entry
            for sg in port.security_groups:
                groups.setdefault(
                    sg, [_wire_rule(sg, rule) for rule in self.security_groups[sg].rules]
                )
        remote_groups = {
            rule["remote_group_id"]
            for rules in groups.values()
            for rule in rules
            if rule.get("remote_group_id")
        }
        member_ips: dict[str, dict[str, list[str]]] = {
            sg: {"IPv4": [], "IPv6": []} for sg in sorted(remote_groups)
        }
        for port in self.ports.values():
            for sg in port.security_groups:
                if sg in member_ips:
                    for address in [ip.ip_address for ip in port.fixed_ips] + [
                        pair.ip_address for pair in port.allowed_address_pairs
                    ]:
                        version = "IPv6" if ":" in address else "IPv4"
                        member_ips[sg][version].append(address)
        return {"devices": result_devices, "security_groups": groups, "sg_member_ips": member_ips}

    def tunnel_sync(self, tunnel_ip: str, tunnel_type: str | None, host: str | None) -> bool:
        """Record the endpoint; True when it is new (so other agents must be told)."""
        known = self.tunnels.get((tunnel_ip, tunnel_type)) or self.tunnels.get((tunnel_ip, None))
        self.tunnels[(tunnel_ip, tunnel_type)] = CloudTunnel(ip_address=tunnel_ip, host=host)
        return known is None or known.host != host

    def tunnels_reply(self, tunnel_type: str | None) -> dict[str, Any]:
        udp_port = VXLAN_UDP_PORT if tunnel_type == "vxlan" else None
        endpoints: dict[str, CloudTunnel] = {}
        for (ip, kind), tunnel in self.tunnels.items():
            if kind is not None and kind == tunnel_type:
                endpoints[ip] = tunnel  # this type's own registration wins
            elif kind is None:
                endpoints.setdefault(ip, tunnel)
        return {
            "tunnels": [
                {"ip_address": t.ip_address, "udp_port": udp_port, "host": t.host}
                for t in endpoints.values()
            ]
        }

    # ---- notifications (what ML2's AgentNotifierApi and l2pop send) --------------------------

    async def notify_port_update(self, port_id: str) -> None:
        port = self.ports[port_id]
        network = self.networks[port.network_id]
        await self.transport.fanout_cast(
            PORT_UPDATE_TOPIC,
            "port_update",
            {
                "port": self.port_api_dict(port),
                "network_type": network.network_type,
                "segmentation_id": network.segmentation_id,
                "physical_network": network.physical_network,
            },
            version="1.0",
        )

    async def notify_port_delete(self, port_id: str) -> None:
        await self.transport.fanout_cast(
            PORT_DELETE_TOPIC, "port_delete", {"port_id": port_id}, version="1.0"
        )

    async def notify_network_update(self, network_id: str) -> None:
        network = self.networks[network_id]
        payload = {
            "id": network_id,
            "admin_state_up": True,
            "provider:network_type": network.network_type,
            "provider:physical_network": network.physical_network,
            "provider:segmentation_id": network.segmentation_id,
            "mtu": network.effective_mtu,
        }
        await self.transport.fanout_cast(
            NETWORK_UPDATE_TOPIC, "network_update", {"network": payload}, version="1.0"
        )

    async def notify_network_delete(self, network_id: str) -> None:
        await self.transport.fanout_cast(
            NETWORK_DELETE_TOPIC, "network_delete", {"network_id": network_id}, version="1.0"
        )

    async def notify_security_groups_rule_updated(self, security_groups: Iterable[str]) -> None:
        await self.transport.fanout_cast(
            SECURITY_GROUP_UPDATE_TOPIC,
            "security_groups_rule_updated",
            {"security_groups": list(security_groups)},
            version="1.1",
        )

    async def notify_security_groups_member_updated(self, security_groups: Iterable[str]) -> None:
        await self.transport.fanout_cast(
            SECURITY_GROUP_UPDATE_TOPIC,
            "security_groups_member_updated",
            {"security_groups": list(security_groups)},
            version="1.1",
        )

    async def notify_tunnel_update(self, tunnel_ip: str, tunnel_type: str) -> None:
        await self.transport.fanout_cast(
            TUNNEL_UPDATE_TOPIC,
            "tunnel_update",
            {"tunnel_ip": tunnel_ip, "tunnel_type": tunnel_type},
            version="1.0",
        )

    async def notify_tunnel_delete(self, tunnel_ip: str, tunnel_type: str) -> None:
        await self.transport.fanout_cast(
            TUNNEL_DELETE_TOPIC,
            "tunnel_delete",
            {"tunnel_ip": tunnel_ip, "tunnel_type": tunnel_type},
            version="1.0",
        )

    async def notify_add_fdb_entries(
        self, fdb_entries: Mapping[str, Any], host: str | None = None
    ) -> None:
        await self._l2pop("add_fdb_entries", fdb_entries, host)

    async def notify_remove_fdb_entries(
        self, fdb_entries: Mapping[str, Any], host: str | None = None
    ) -> None:
        await self._l2pop("remove_fdb_entries", fdb_entries, host)

    async def notify_update_fdb_entries(
        self, fdb_entries: Mapping[str, Any], host: str | None = None
    ) -> None:
        await self._l2pop("update_fdb_entries", fdb_entries, host)

    async def _l2pop(self, method: str, fdb_entries: Mapping[str, Any], host: str | None) -> None:
        args = {"fdb_entries": dict(fdb_entries)}
        if host is None:
            await self.transport.fanout_cast(L2POPULATION_UPDATE_TOPIC, method, args, version="1.0")
        else:  # l2pop's directed cast: topic "<T>.<host>"
            await self.transport.cast(
                f"{L2POPULATION_UPDATE_TOPIC}.{host}", method, args, version="1.0"
            )

    def fdb_entries_for_network(self, network_id: str, agent_ip: str) -> dict[str, Any]:
        """l2pop's add_fdb_entries payload for every port of a network behind ``agent_ip``."""
        network = self.networks[network_id]
        ports: list[list[str]] = [["00:00:00:00:00:00", "0.0.0.0"]]
        for port in self.ports.values():
            if port.network_id == network_id:
                ports += [[port.mac_address, ip.ip_address] for ip in port.fixed_ips]
        return {
            network_id: {
                "segment_id": network.segmentation_id,
                "network_type": network.network_type,
                "ports": {agent_ip: ports},
            }
        }


def _wire_rule(sg_id: str, rule: CloudRule) -> dict[str, Any]:
    """A rule as security_group_info_for_devices sends it (None values left out)."""
    wire: dict[str, Any] = {
        "security_group_id": sg_id,
        "direction": rule.direction,
        "ethertype": rule.ethertype,
        "stateful": True,
    }
    for key in ("protocol", "port_range_min", "port_range_max", "remote_group_id"):
        value = getattr(rule, key)
        if value is not None:
            wire[key] = value
    if rule.remote_ip_prefix is not None:
        wire[_DIRECTION_PREFIX[rule.direction]] = rule.remote_ip_prefix
    return wire


def _provider_rules() -> list[dict[str, Any]]:
    """The DHCP/DHCPv6/RA allow rules neutron adds to every port's own rule list."""
    return [
        {
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": "udp",
            "port_range_min": 68,
            "port_range_max": 68,
            "source_port_range_min": 67,
            "source_port_range_max": 67,
        },
        {
            "direction": "ingress",
            "ethertype": "IPv6",
            "protocol": "ipv6-icmp",
            "source_port_range_min": 134,
        },
    ]


class _PluginEndpoint:
    """ML2's RpcCallbacks (with the tunnel mixin) on q-plugin."""

    rpc_version = "1.9"

    def __init__(self, sim: NeutronServerSimulator) -> None:
        self._sim = sim

    async def get_devices_details_list_and_failed_devices(
        self,
        _context: Mapping[str, Any],
        devices: list[str],
        agent_id: str,
        host: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        sim = self._sim
        await sim._serve("get_devices_details_list_and_failed_devices")
        failed = [d for d in devices if d in sim.fail_devices]
        details = [sim.device_details(d, host) for d in devices if d not in sim.fail_devices]
        return {"devices": details, "failed_devices": failed}

    async def get_device_details(
        self, _context: Mapping[str, Any], device: str, agent_id: str, host: str | None = None
    ) -> dict[str, Any]:
        await self._sim._serve("get_device_details")
        return self._sim.device_details(device, host)

    async def update_device_list(
        self,
        _context: Mapping[str, Any],
        devices_up: list[str],
        devices_down: list[str],
        agent_id: str,
        host: str,
        refresh_tunnels: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        sim = self._sim
        await sim._serve("update_device_list")
        sim.device_list_reports.append(
            DeviceListReport(
                tuple(devices_up), tuple(devices_down), agent_id, host, bool(refresh_tunnels)
            )
        )
        return {
            "devices_up": [d for d in devices_up if d not in sim.fail_devices],
            "failed_devices_up": [d for d in devices_up if d in sim.fail_devices],
            "devices_down": [
                {"device": d, "exists": d in sim.ports}
                for d in devices_down
                if d not in sim.fail_devices
            ],
            "failed_devices_down": [d for d in devices_down if d in sim.fail_devices],
        }

    async def tunnel_sync(
        self,
        _context: Mapping[str, Any],
        tunnel_ip: str,
        tunnel_type: str | None = None,
        host: str | None = None,
    ) -> dict[str, Any]:
        sim = self._sim
        await sim._serve("tunnel_sync")
        if sim.tunnel_sync(tunnel_ip, tunnel_type, host) and tunnel_type:
            await sim.notify_tunnel_update(tunnel_ip, tunnel_type)
        return sim.tunnels_reply(tunnel_type)


class _SecurityGroupEndpoint:
    """SecurityGroupServerRpcCallback on q-plugin."""

    rpc_version = "1.3"

    def __init__(self, sim: NeutronServerSimulator) -> None:
        self._sim = sim

    async def security_group_info_for_devices(
        self, _context: Mapping[str, Any], devices: list[str], **_: Any
    ) -> dict[str, Any]:
        await self._sim._serve("security_group_info_for_devices")
        return self._sim.security_group_info(devices)


class _ReportsEndpoint:
    """AgentExtRpcCallback on q-reports-plugin."""

    rpc_version = "1.3"

    def __init__(self, sim: NeutronServerSimulator) -> None:
        self._sim = sim

    async def report_state(self, _context: Mapping[str, Any], **kwargs: Any) -> str:
        sim = self._sim
        await sim._serve("report_state")
        agent_state = kwargs["agent_state"]["agent_state"]
        sim.state_reports.append(agent_state)
        key = f"{agent_state.get('agent_type')}@{agent_state.get('host')}"
        if key in sim._agents_seen:
            return "alive"
        sim._agents_seen.add(key)
        return "new"

    async def has_alive_neutron_server(self, _context: Mapping[str, Any], **_: Any) -> bool:
        await self._sim._serve("has_alive_neutron_server")
        return True
