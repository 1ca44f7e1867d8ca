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

It also holds the cloud's QoS policies and trunks and answers for them as neutron's
ResourcesPullRpcCallback (``pull`` / ``bulk_pull`` on q-plugin: versioned-object primitives at
neutron 29's versions) and TrunkSkeleton (topic and namespace ``trunk``: subports bound to the
parent's host, trunk statuses recorded); ``update_qos_policy`` / ``add_subports`` /
``remove_subports`` change them and push them on ``neutron-vo-<Type>-<version>`` as the server
does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
from aovs.testing.cloud import (
    QOS_RULE_FIELDS,
    CloudNetwork,
    CloudPort,
    CloudQosPolicy,
    CloudQosRule,
    CloudRule,
    CloudSubPort,
    CloudTrunk,
    CloudTunnel,
    SimulatedCloud,
)

LOG = logging.getLogger(__name__)

VXLAN_UDP_PORT = 4789
_DIRECTION_PREFIX = {"ingress": "source_ip_prefix", "egress": "dest_ip_prefix"}


# ---- versioned objects: neutron's ResourcesPullRpcCallback, TrunkSkeleton, pushes -------------

TRUNK_TOPIC = "trunk"  # neutron's TRUNK_BASE_TOPIC and TRUNK_BASE_NAMESPACE
TRUNK_SUBPORT_OWNER = "trunk:subport"
OVO_NAMESPACE = "versionedobjects"
# neutron 29's object versions: what the simulator serves (it backports to no older one)
QOS_POLICY, TRUNK, SUBPORT = "QosPolicy", "Trunk", "SubPort"
OBJECT_VERSIONS = {QOS_POLICY: "1.10", TRUNK: "1.1", SUBPORT: "1.0"}
QOS_RULE_VERSION = "1.5"  # every QosRule subclass in neutron 29
QOS_RULE_OBJECTS = {
    "bandwidth_limit": "QosBandwidthLimitRule",
    "dscp_marking": "QosDscpMarkingRule",
    "minimum_bandwidth": "QosMinimumBandwidthRule",
    "packet_rate_limit": "QosPacketRateLimitRule",
    "minimum_packet_rate": "QosMinimumPacketRateRule",
}
PROJECT_ID = "simulated-project"
TIMESTAMP = "2026-01-01T00:00:00Z"  # created_at / updated_at, as oslo's DateTimeField sends them


class CallbackNotFound(Exception):
    """neutron's rpc_exc.CallbackNotFound: no producer for this resource type (expected)."""


class InvalidTargetVersion(Exception):
    """A version the simulator does not serve (neutron would backport to an older one)."""


class InvalidInput(Exception):
    """A bulk_pull filter on a field the object does not have."""


def versioned_object(name: str, version: str, data: dict[str, Any]) -> dict[str, Any]:
    """oslo.versionedobjects' ``obj_to_primitive``: every field set is a change."""
    return {
        "versioned_object.name": name,
        "versioned_object.namespace": OVO_NAMESPACE,
        "versioned_object.version": version,
        "versioned_object.data": data,
        "versioned_object.changes": sorted(data),
    }


def qos_rule_id(policy_id: str, position: int) -> str:
    """A rule's id when the cloud gives none: stable, derived from its policy."""
    return str(uuid.uuid5(uuid.UUID(int=0), f"{policy_id}/rule/{position}"))


def qos_rule_primitive(policy_id: str, position: int, rule: CloudQosRule) -> dict[str, Any]:
    data: dict[str, Any] = {"id": rule.id or qos_rule_id(policy_id, position),
                            "qos_policy_id": policy_id}  # fmt: skip
    data.update({key: getattr(rule, key) for key in QOS_RULE_FIELDS[rule.type]})
    return versioned_object(QOS_RULE_OBJECTS[rule.type], QOS_RULE_VERSION, data)


def qos_policy_primitive(policy_id: str, policy: CloudQosPolicy) -> dict[str, Any]:
    """``QosPolicy`` 1.10 as neutron's server sends it (pull, bulk_pull, push)."""
    data = {
        "id": policy_id,
        "project_id": PROJECT_ID,
        "name": "",
        "description": "",
        "shared": False,
        "is_default": False,
        "rules": [qos_rule_primitive(policy_id, i, r) for i, r in enumerate(policy.rules)],
        "revision_number": policy.revision_number,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    return versioned_object(QOS_POLICY, OBJECT_VERSIONS[QOS_POLICY], data)


def subport_primitive(trunk_id: str, subport: CloudSubPort) -> dict[str, Any]:
    """``SubPort`` 1.0 (no id of its own, no revision)."""
    data = {
        "port_id": subport.port_id,
        "trunk_id": trunk_id,
        "segmentation_type": subport.segmentation_type,
        "segmentation_id": subport.segmentation_id,
    }
    return versioned_object(SUBPORT, OBJECT_VERSIONS[SUBPORT], data)


def trunk_primitive(trunk_id: str, trunk: CloudTrunk) -> dict[str, Any]:
    """``Trunk`` 1.1 with its subports."""
    data = {
        "id": trunk_id,
        "project_id": PROJECT_ID,
        "name": "",
        "description": "",
        "admin_state_up": True,
        "port_id": trunk.port_id,
        "status": trunk.status,
        "sub_ports": [subport_primitive(trunk_id, s) for s in trunk.sub_ports],
        "revision_number": trunk.revision_number,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    return versioned_object(TRUNK, OBJECT_VERSIONS[TRUNK], data)


def _matches(data: Mapping[str, Any], filters: Mapping[str, Any], kind: str) -> bool:
    """neutron's get_objects(**filters): a list is IN, anything else equality."""
    for key, wanted in filters.items():
        if key not in data:
            raise InvalidInput(f"{kind} has no field {key!r}")
        value = data[key]
        if isinstance(wanted, list | tuple | set):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


class _SimulatorResources:
    """The resource half of NeutronServerSimulator, kept apart (mixed in)."""

    ports: dict[str, CloudPort]
    qos_policies: dict[str, CloudQosPolicy]
    trunks: dict[str, CloudTrunk]
    trunk_status_reports: list[tuple[str, str]]
    transport: RpcTransport
    _details_cache: dict[str, dict[str, Any]]
    port_api_dict: Callable[[CloudPort], dict[str, Any]]

    def resource_primitives(self, resource_type: str) -> list[dict[str, Any]]:
        """Every object of the type, as primitives."""
        if resource_type == QOS_POLICY:
            return [qos_policy_primitive(i, p) for i, p in self.qos_policies.items()]
        if resource_type == TRUNK:
            return [trunk_primitive(i, t) for i, t in self.trunks.items()]
        if resource_type == SUBPORT:
            return [subport_primitive(i, s) for i, t in self.trunks.items() for s in t.sub_ports]
        raise CallbackNotFound(f"no callback for resource type {resource_type}")

    def pull_resource(
        self, resource_type: str, version: str, resource_id: str
    ) -> dict[str, Any] | None:
        """neutron's ``pull``: a QoS policy by id; a trunk by its PARENT PORT id (the trunk
        plugin's trunk_by_port_provider); None when there is none. SubPort has no provider."""
        self._check_version(resource_type, version)
        if resource_type == QOS_POLICY:
            policy = self.qos_policies.get(resource_id)
            return None if policy is None else qos_policy_primitive(resource_id, policy)
        if resource_type == TRUNK:
            for trunk_id, trunk in self.trunks.items():
                if trunk.port_id == resource_id:
                    return trunk_primitive(trunk_id, trunk)
            return None
        raise CallbackNotFound(f"no callback for resource type {resource_type}")

    def bulk_pull_resources(
        self, resource_type: str, version: str, filter_kwargs: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """neutron's ``bulk_pull``: get_objects(**filter_kwargs) as primitives."""
        self._check_version(resource_type, version)
        filters = dict(filter_kwargs or {})
        return [
            primitive
            for primitive in self.resource_primitives(resource_type)
            if _matches(primitive["versioned_object.data"], filters, resource_type)
        ]

    @staticmethod
    def _check_version(resource_type: str, version: str) -> None:
        ours = OBJECT_VERSIONS.get(resource_type)
        if ours is None:
            raise CallbackNotFound(f"no callback for resource type {resource_type}")
        if version != ours:
            raise InvalidTargetVersion(f"{resource_type} {version}: the simulator has {ours}")

    # -- TrunkSkeleton ---------------------------------------------------------------------
    def bind_subports(self, subports: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """``update_subport_bindings``: each listed subport bound to its trunk's parent's host
        with device_owner ``trunk:subport``; the trunk BUILD (DEGRADED when a port could not be
        bound); trunk id -> the bound ports as the API shows them."""
        by_trunk: dict[str, list[str]] = {}
        for subport in subports:
            by_trunk.setdefault(str(subport["trunk_id"]), []).append(str(subport["port_id"]))
        bound: dict[str, list[Any]] = {}
        for trunk_id, port_ids in by_trunk.items():
            trunk = self.trunks.get(trunk_id)
            if trunk is None:
                continue  # neutron: "Trunk not found", nothing for it
            parent = self.ports.get(trunk.port_id)
            host = None if parent is None else parent.binding_host
            updated = []
            for port_id in port_ids:
                port = self.ports.get(port_id)
                if port is None:
                    continue  # neutron logs the failure and goes on
                port = port.model_copy(
                    update={"binding_host": host, "device_owner": TRUNK_SUBPORT_OWNER}
                )
                self.ports[port_id] = port
                self._details_cache.pop(port_id, None)
                updated.append(self.port_api_dict(port))
            status = "BUILD" if len(updated) == len(port_ids) else "DEGRADED"
            self.trunks[trunk_id] = trunk.model_copy(update={"status": status})
            bound[trunk_id] = updated
        return bound

    def set_trunk_status(self, trunk_id: str, status: str) -> None:
        """``update_trunk_status``: recorded; an unknown trunk is ignored, as neutron does."""
        self.trunk_status_reports.append((trunk_id, status))
        trunk = self.trunks.get(trunk_id)
        if trunk is not None:
            self.trunks[trunk_id] = trunk.model_copy(update={"status": status})

    # -- changes, pushed as the server pushes them -----------------------------------------
    async def push_resources(
        self, resource_type: str, primitives: list[dict[str, Any]], event_type: str
    ) -> None:
        """ResourcesPushRpcApi.push: a fanout cast on ``neutron-vo-<Type>-<version>``."""
        topic = f"neutron-vo-{resource_type}-{OBJECT_VERSIONS[resource_type]}"
        await self.transport.fanout_cast(
            topic, "push", {"resource_list": primitives, "event_type": event_type}, version="1.1"
        )

    async def update_qos_policy(self, policy_id: str, rules: Iterable[CloudQosRule]) -> None:
        """The policy created or its rules replaced (revision + 1), pushed."""
        known = self.qos_policies.get(policy_id)
        revision = 1 if known is None else known.revision_number + 1
        policy = CloudQosPolicy(rules=tuple(rules), revision_number=revision)
        self.qos_policies[policy_id] = policy
        event = "created" if known is None else "updated"
        await self.push_resources(QOS_POLICY, [qos_policy_primitive(policy_id, policy)], event)

    async def add_subports(self, trunk_id: str, subports: Iterable[CloudSubPort]) -> None:
        """neutron's add_subports: stored, pushed as SubPort "created" (not the trunk)."""
        trunk = self.trunks[trunk_id]
        added = tuple(subports)
        for subport in added:
            if subport.port_id not in self.ports:
                raise ValueError(f"subport {subport.port_id}: unknown port")
        self.trunks[trunk_id] = CloudTrunk.model_validate(
            {**dict(trunk), "sub_ports": trunk.sub_ports + added,
             "revision_number": trunk.revision_number + 1}
        )  # fmt: skip
        await self.push_resources(SUBPORT, [subport_primitive(trunk_id, s) for s in added],
                                  "created")  # fmt: skip

    async def remove_subports(self, trunk_id: str, port_ids: Iterable[str]) -> None:
        """neutron's remove_subports: pushed as SubPort "deleted"."""
        trunk = self.trunks[trunk_id]
        gone = set(port_ids)
        removed = [s for s in trunk.sub_ports if s.port_id in gone]
        kept = tuple(s for s in trunk.sub_ports if s.port_id not in gone)
        self.trunks[trunk_id] = trunk.model_copy(
            update={"sub_ports": kept, "revision_number": trunk.revision_number + 1}
        )
        await self.push_resources(SUBPORT, [subport_primitive(trunk_id, s) for s in removed],
                                  "deleted")  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeviceListReport:
    """One update_device_list call as received."""

    devices_up: tuple[str, ...]
    devices_down: tuple[str, ...]
    agent_id: str
    host: str
    refresh_tunnels: bool


class NeutronServerSimulator(_SimulatorResources):
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
        # resources (versioned objects) and the trunk RPC's records
        self.qos_policies: dict[str, CloudQosPolicy] = dict(topology.qos_policies)
        self.trunks: dict[str, CloudTrunk] = dict(topology.trunks)
        self.trunk_status_reports: list[tuple[str, str]] = []  # (trunk id, status), in order

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._own_transport:
            await self.transport.start()
        self._servers = [
            await self.transport.serve(
                PLUGIN_TOPIC,
                self.server_host,
                [_PluginEndpoint(self), _SecurityGroupEndpoint(self), _ResourcesPullEndpoint(self)],
            ),
            await self.transport.serve(REPORTS_TOPIC, self.server_host, [_ReportsEndpoint(self)]),
            await self.transport.serve(TRUNK_TOPIC, self.server_host, [_TrunkEndpoint(self)]),
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
                "qos_policy_id": port.qos_policy_id,
                "qos_network_policy_id": network.qos_policy_id,
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


class _ResourcesPullEndpoint:
    """ResourcesPullRpcCallback on q-plugin (version 1.1, no namespace)."""

    rpc_version = "1.1"

    def __init__(self, sim: NeutronServerSimulator) -> None:
        self._sim = sim

    async def pull(
        self, _context: Mapping[str, Any], resource_type: str, version: str, resource_id: str
    ) -> dict[str, Any] | None:
        await self._sim._serve("pull")
        return self._sim.pull_resource(resource_type, version, resource_id)

    async def bulk_pull(
        self,
        _context: Mapping[str, Any],
        resource_type: str,
        version: str,
        filter_kwargs: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._sim._serve("bulk_pull")
        return self._sim.bulk_pull_resources(resource_type, version, filter_kwargs)


class _TrunkEndpoint:
    """The trunk plugin's TrunkSkeleton: topic and namespace ``trunk``, version 1.0."""

    rpc_version = "1.0"
    rpc_namespace = TRUNK_TOPIC

    def __init__(self, sim: NeutronServerSimulator) -> None:
        self._sim = sim

    async def update_subport_bindings(
        self, _context: Mapping[str, Any], subports: list[Mapping[str, Any]]
    ) -> dict[str, list[Any]]:
        await self._sim._serve("update_subport_bindings")
        return self._sim.bind_subports(subports)

    async def update_trunk_status(
        self, _context: Mapping[str, Any], trunk_id: str, status: str
    ) -> None:
        await self._sim._serve("update_trunk_status")
        self._sim.set_trunk_status(trunk_id, status)
