"""neutron's legacy agent RPC vs its push/pull (versioned-object cache) RPC, on a REAL server.

One neutron 29 server (``tests/neutron/server/neutron_server.py``: private MariaDB, own RabbitMQ
vhost, uWSGI API + neutron-rpc-server; ``debug = false`` as in production), one agent host
``bench-host`` that reports itself alive as aovs' StateReporter does (nothing else of an agent
runs: no OVS), one vxlan network with a /20 subnet, one security group (egress any, ingress
tcp/22 and icmp from anywhere, ingress IPv4/IPv6 from the group itself: remote-group rules) and
N ports (default 300: see DEFAULT_PORTS) bound to bench-host, created with bulk
``POST /v2.0/ports`` (setup, timed apart). The agent side is aovs' own RPC client
(:class:`aovs.rpc.RpcTransport`), wrapped only to count what crosses the wire. Measured, each
over ``--runs`` runs (median; neutron's own one-call-per-port pull: ``--neutron-agent-runs``):

a) cold start, legacy (what aovs does today): ``get_devices_details_list_and_failed_devices``
   [1.5] as :meth:`NeutronServerApi.get_devices_details` sends it (batches of 200, 4 in flight,
   parsed into PortDetails), then ``security_group_info_for_devices`` [1.3] for all N ports in
   one call (as aovs' agent asks for the ports it wants). The server's first answer for a port
   also writes its status (DOWN/ACTIVE -> BUILD: ``update_port_status`` per port, which the
   server pushes as a Port update); runs after the first find BUILD and only read, so the first
   run is reported apart (``first_call``) from the median of the repeats.
b) cold start, push/pull: what neutron 29's own agent pulls (``bulk_pull`` [1.1] on q-plugin,
   read from neutron/agent/rpc.py ``CacheBackedPluginApi`` and
   neutron/api/rpc/handlers/securitygroups_rpc.py ``SecurityGroupServerAPIShim``): its cache
   floods per query, so it pulls each Port by id, one call per port, one at a time (the rpc_loop
   is sequential), then the Network by id, then for the ports' group: SecurityGroupRule by
   security_group_id, Port by security_group_ids (the remote-group members: every port again),
   SecurityGroup by id (its ``stateful``). No Subnet (only DVR reads them) and no AddressGroup
   (no rule references one). ``neutron_agent`` is that sequence; ``batched`` is the same data
   pulled as aovs could: Ports by id in batches of 200, 4 in flight, plus the four others.
   Device details are derived from the objects as CacheBackedPluginApi.get_device_details does
   and checked equal to the legacy answer (segment, MAC, fixed IPs, MTU, groups).
c) one security group rule change (``POST /v2.0/security-group-rules`` on the group every port
   uses): legacy = the ``security_groups_rule_updated`` fanout, then aovs' re-fetch
   (``security_group_info_for_devices`` for the N ports), its reply checked to carry the rule;
   push = the ``push`` of the new rule on ``neutron-vo-SecurityGroupRule-1.3`` (and whatever
   else a cache-backed agent subscribed to every ``neutron-vo-*`` topic receives): no call.
   Times are from the POST's return (a fanout often arrives before it).
d) the server's CPU seconds for each, from /proc/<pid>/stat (utime + stime summed over each
   process group started by NeutronServer: neutron-rpc-server with its RPC worker, uWSGI,
   mariadbd).

Messages are AMQP messages as the agent's connection sees them: requests published + replies
received for calls, deliveries received for fanouts; bytes are AMQP bodies (the oslo envelope
included). Writes ``benchmarks/results/neutron-rpc.json``.

    python -m benchmarks.bench_neutron_rpc [--ports 300] [--runs 3] [--neutron-agent-runs 1]
                                           [--keep] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import uvloop
from aio_pika.abc import AbstractIncomingMessage

from aovs.rpc.amqp import RpcServer, RpcTransport, Session
from aovs.rpc.dispatch import Dispatcher
from aovs.rpc.resources import CONSUMED_RESOURCES
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.state_report import AGENT_BINARY, AGENT_TYPE
from benchmarks.suite.usage import cpu_seconds_from_stat

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "neutron-rpc.json"
INSTALL = ROOT / "tests" / "neutron" / "server" / "install-neutron"
SERVER_MODULE = ROOT / "tests" / "neutron" / "server" / "neutron_server.py"

HOST = "bench-host"
# 300, not 1000: creating ports costs the API ~0.3 CPU s each (one uWSGI process), so 1000
# ports alone take 7-11 minutes here; --ports 1000 works (16 minutes on a loaded machine)
DEFAULT_PORTS = 300
TUNNELING_IP = "127.0.0.50"
PLUGIN_TOPIC = "q-plugin"
PULL_VERSION = "1.1"  # ResourcesPullRpcCallback's target (bulk_pull)
CALL_TIMEOUT = 300.0
START_TIMEOUT = 240.0  # the server on a loaded 2-core machine: its own default is 60 s
# neutron 29's object versions (neutron/objects/*.py VERSION): what its agent pulls and the
# server pushes on neutron-vo-<Type>-<version>
OBJECT_VERSIONS = {
    "Port": "1.11", "Network": "1.3", "Subnet": "1.2", "SecurityGroup": "1.6",
    "SecurityGroupRule": "1.3", "AddressGroup": "1.2",
}  # fmt: skip
SG_UPDATE_TOPIC = "q-agent-notifier-security_group-update"
PORT_UPDATE_TOPIC = "q-agent-notifier-port-update"
LEGACY_TOPICS = (SG_UPDATE_TOPIC, PORT_UPDATE_TOPIC)
PUSH_TOPICS = tuple(f"neutron-vo-{t}-{v}" for t, v in OBJECT_VERSIONS.items())
PORT_CHUNK = 100  # ports per bulk POST
PORT_POSTS_IN_FLIGHT = 2
PULL_BATCH, PULL_CONCURRENCY = 200, 4
SETTLE = 1.0  # seconds to keep listening after a measurement for late fanouts
HEARTBEAT = 20.0  # report_state interval (the server's agent_down_time is 75 s)


def load_server_module() -> ModuleType:
    """tests/neutron/server/neutron_server.py, by path (the tests put tests/neutron on sys.path
    and import ``server.neutron_server``; a benchmark should not change sys.path)."""
    spec = importlib.util.spec_from_file_location("aovs_bench_neutron_server", SERVER_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---- counting what crosses the wire ---------------------------------------------------------


@dataclass
class Wire:
    requests: int = 0
    request_bytes: int = 0
    replies: int = 0
    reply_bytes: int = 0

    def copy(self) -> Wire:
        return Wire(self.requests, self.request_bytes, self.replies, self.reply_bytes)

    def minus(self, before: Wire) -> dict[str, int]:
        return {
            "calls": self.requests - before.requests,
            "messages": self.requests - before.requests + self.replies - before.replies,
            "request_bytes": self.request_bytes - before.request_bytes,
            "reply_bytes": self.reply_bytes - before.reply_bytes,
        }


class CountingTransport(RpcTransport):
    """aovs' transport, counting the messages it publishes and the replies it receives."""

    def __init__(self, transport_url: str) -> None:
        super().__init__(transport_url)
        self.wire = Wire()

    async def _publish(self, session: Session, exchange: Any, routing_key: str, body: bytes,
                       *, expiration: float | None = None) -> None:  # fmt: skip
        self.wire.requests += 1
        self.wire.request_bytes += len(body)
        await super()._publish(session, exchange, routing_key, body, expiration=expiration)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self.wire.replies += 1
        self.wire.reply_bytes += len(message.body)
        await super()._on_reply(message)


@dataclass(frozen=True)
class Delivery:
    at: float  # time.monotonic()
    topic: str
    method: str
    size: int
    args: Mapping[str, Any]


@dataclass
class Inbox:
    """Every fanout delivery the listener received, and waiters on them."""

    deliveries: list[Delivery] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def since(self, start: float, end: float | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if d.at >= start and (end is None or d.at <= end)]

    async def wait_for(self, predicate: Callable[[Delivery], bool], since: float,
                       within: float) -> Delivery:  # fmt: skip
        async with asyncio.timeout(within):
            while True:
                for delivery in self.since(since):
                    if predicate(delivery):
                        return delivery
                self.changed.clear()
                await self.changed.wait()


class CountingServer(RpcServer):
    """An RpcServer that records each delivery (arrival time, body size, method, args)."""

    def __init__(self, transport: RpcTransport, topic: str, inbox: Inbox) -> None:
        super().__init__(transport, topic, HOST, Dispatcher([Sink()]))
        self.inbox = inbox

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        at = time.monotonic()
        inner = json.loads(json.loads(message.body)["oslo.message"])
        self.inbox.deliveries.append(
            Delivery(at, self.topic, inner.get("method", "?"), len(message.body),
                     inner.get("args") or {})
        )  # fmt: skip
        self.inbox.changed.set()
        await super()._on_message(message)


class Sink:
    """Endpoint for every notification and push: the Inbox already recorded it."""

    rpc_version = None  # any version

    def push(self, context: object, **kwargs: Any) -> None:
        pass

    def security_groups_rule_updated(self, context: object, **kwargs: Any) -> None:
        pass

    def security_groups_member_updated(self, context: object, **kwargs: Any) -> None:
        pass

    def port_update(self, context: object, **kwargs: Any) -> None:
        pass


def summarize(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for d in deliveries:
        kind = by_kind.setdefault(f"{d.topic} {d.method}", {"messages": 0, "bytes": 0})
        kind["messages"] += 1
        kind["bytes"] += d.size
    return {
        "messages": len(deliveries),
        "bytes": sum(d.size for d in deliveries),
        "by_topic_method": by_kind,
    }


# ---- server CPU -----------------------------------------------------------------------------


def group_cpu(pgids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of every process in each process group (a role's leader and the
    workers it forked: neutron-rpc-server's RPC worker, uWSGI's worker)."""
    totals = dict.fromkeys(pgids, 0.0)
    wanted = {pgid: role for role, pgid in pgids.items()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        role = wanted.get(int(fields[2]))  # pgrp
        if role is not None:
            totals[role] += cpu_seconds_from_stat(stat)
    return totals


def cpu_delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    out = {role: round(after[role] - before[role], 2) for role in after}
    out["total"] = round(sum(out.values()), 2)
    return out


# ---- the world ------------------------------------------------------------------------------


def agent_state(start_flag: bool) -> dict[str, Any]:
    """What aovs' StateReporter sends (aovs.agent.configurations.reported_configurations)."""
    defaults = {"allocation_ratio": 1.0, "min_unit": 1, "step_size": 1, "reserved": 0}
    state: dict[str, Any] = {
        "binary": AGENT_BINARY, "host": HOST, "topic": "N/A", "agent_type": AGENT_TYPE,
        "configurations": {
            "bridge_mappings": {"physnet1": "br-phys"},
            "resource_provider_bandwidths": {},
            "resource_provider_inventory_defaults": defaults,
            "resource_provider_packet_processing_without_direction": {},
            "resource_provider_packet_processing_with_direction": {},
            "resource_provider_packet_processing_inventory_defaults": defaults,
            "resource_provider_hypervisors": {},
            "integration_bridge": "br-int", "tunnel_types": ["vxlan"],
            "tunneling_ip": TUNNELING_IP, "l2_population": True,
            "arp_responder_enabled": False, "enable_distributed_routing": False,
            "log_agent_heartbeats": False, "extensions": [], "datapath_type": "system",
            "ovs_capabilities": {"datapath_types": ["netdev", "system"], "iface_types": []},
            "vhostuser_socket_dir": "/var/run/openvswitch", "ovs_hybrid_plug": False,
            "baremetal_smartnic": False, "in_distributed_mode": False,
            "firewall_driver": "openvswitch", "devices": 0,
        },
    }  # fmt: skip
    if start_flag:
        state["start_flag"] = True
        state["resource_versions"] = dict(CONSUMED_RESOURCES)
    return state


@dataclass
class World:
    network: dict[str, Any]
    subnet: dict[str, Any]
    sg_id: str
    ports: list[dict[str, Any]]
    setup: dict[str, Any]

    @property
    def port_ids(self) -> list[str]:
        return [p["id"] for p in self.ports]


def build_world(server: Any, ports: int) -> World:
    """Network, subnet, group and ports, through the REST API (blocking: run it in a thread)."""
    started = time.monotonic()
    network = server.create_network(**{"provider:network_type": "vxlan"})
    cidr = "10.64.0.0/20" if ports <= 4000 else "10.64.0.0/16"
    subnet = server.create_subnet(network["id"], cidr)
    sg = server.post("/v2.0/security-groups", {"security_group": {"name": "bench-sg"}})
    sg_id = sg["security_group"]["id"]
    rules = [
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"},
        {"direction": "ingress", "ethertype": "IPv4", "remote_group_id": sg_id},
        {"direction": "ingress", "ethertype": "IPv6", "remote_group_id": sg_id},
    ]  # fmt: skip
    for rule in rules:
        server.post("/v2.0/security-group-rules",
                    {"security_group_rule": {"security_group_id": sg_id, **rule}})  # fmt: skip
    world_seconds = time.monotonic() - started
    started = time.monotonic()

    def chunk(first: int) -> list[dict[str, Any]]:
        body = [
            {"network_id": network["id"], "binding:host_id": HOST,
             "device_owner": "compute:nova", "device_id": str(uuid.uuid4()),
             "name": f"bench-{first + i}", "security_groups": [sg_id]}
            for i in range(min(PORT_CHUNK, ports - first))
        ]  # fmt: skip
        reply = server.request("POST", "/v2.0/ports", {"ports": body}, timeout=900.0)
        answer: list[dict[str, Any]] = reply["ports"]
        progress(f"ports {first}-{first + len(body) - 1} created "
                 f"({time.monotonic() - started:.0f} s)")  # fmt: skip
        return answer

    # two POSTs in flight: the API's uWSGI worker has 4 threads, and one request waits on the
    # database part of the time
    with ThreadPoolExecutor(PORT_POSTS_IN_FLIGHT) as pool:
        created = [p for part in pool.map(chunk, range(0, ports, PORT_CHUNK)) for p in part]
    ports_seconds = time.monotonic() - started
    unbound = [p["id"] for p in created if p.get("binding:vif_type") != "ovs"]
    if unbound:
        raise RuntimeError(f"{len(unbound)} ports not bound to {HOST} (vif_type != ovs)")
    setup = {
        "ports_posts_in_flight": PORT_POSTS_IN_FLIGHT,
        "network_subnet_group_seconds": round(world_seconds, 2),
        "ports_bulk_create_seconds": round(ports_seconds, 2),
        "ports_per_post": PORT_CHUNK,
        "subnet_cidr": cidr,
        "security_group_rules": 2 + len(rules),  # neutron adds egress IPv4 + IPv6
    }
    return World(network, subnet, sg_id, created, setup)


# ---- the pull side: what neutron 29's cache asks, and the details derived from it -----------


async def bulk_pull(transport: RpcTransport, rtype: str, filters: Mapping[str, Sequence[str]]
                    ) -> list[dict[str, Any]]:  # fmt: skip
    reply = await transport.call(
        PLUGIN_TOPIC, "bulk_pull",
        {"resource_type": rtype, "version": OBJECT_VERSIONS[rtype],
         "filter_kwargs": {k: list(v) for k, v in filters.items()}},
        version=PULL_VERSION, timeout=CALL_TIMEOUT,
    )  # fmt: skip
    if not isinstance(reply, list):
        raise RuntimeError(f"bulk_pull {rtype}: {reply!r}")
    return [primitive["versioned_object.data"] for primitive in reply]


@dataclass
class Pulled:
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    calls_by_type: dict[str, int] = field(default_factory=dict)

    def count(self, rtype: str) -> None:
        self.calls_by_type[rtype] = self.calls_by_type.get(rtype, 0) + 1


async def pull_like_neutron_agent(transport: RpcTransport, devices: Sequence[str]) -> Pulled:
    """neutron 29's OVS agent on a cold start with an empty cache: get_device_details per
    device floods the cache for {"id": (device,)}, one blocking call at a time; the network
    once; then security_group_info_for_devices (the shim) floods its three queries."""
    pulled = Pulled()
    for device in devices:
        for port in await bulk_pull(transport, "Port", {"id": [device]}):
            pulled.ports[port["id"]] = port
        pulled.count("Port")
        network_id = pulled.ports[device]["network_id"]
        if network_id not in pulled.networks:
            for net in await bulk_pull(transport, "Network", {"id": [network_id]}):
                pulled.networks[net["id"]] = net
            pulled.count("Network")
    await pull_security_groups(transport, pulled)
    return pulled


async def pull_batched(transport: RpcTransport, devices: Sequence[str]) -> Pulled:
    """The same data, Ports by id in batches of 200 with 4 in flight (aovs' legacy batching)."""
    pulled = Pulled()
    limit = asyncio.Semaphore(PULL_CONCURRENCY)

    async def one(batch: Sequence[str]) -> None:
        async with limit:
            for port in await bulk_pull(transport, "Port", {"id": batch}):
                pulled.ports[port["id"]] = port
            pulled.count("Port")

    batches = [devices[i : i + PULL_BATCH] for i in range(0, len(devices), PULL_BATCH)]
    await asyncio.gather(*(one(b) for b in batches))
    network_ids = sorted({p["network_id"] for p in pulled.ports.values()})
    for net in await bulk_pull(transport, "Network", {"id": network_ids}):
        pulled.networks[net["id"]] = net
    pulled.count("Network")
    await pull_security_groups(transport, pulled)
    return pulled


async def pull_security_groups(transport: RpcTransport, pulled: Pulled) -> None:
    """SecurityGroupServerAPIShim.security_group_info_for_ports' queries, in its order:
    rules by group, the stateful flag (SecurityGroup by id), then the remote groups' members
    (Port by security_group_ids)."""
    sg_ids = sorted({sg for p in pulled.ports.values() for sg in p["security_group_ids"]})
    for sg_id in sg_ids:
        pulled.rules += await bulk_pull(transport, "SecurityGroupRule",
                                        {"security_group_id": [sg_id]})  # fmt: skip
        pulled.count("SecurityGroupRule")
    for sg_id in sg_ids:
        pulled.groups += await bulk_pull(transport, "SecurityGroup", {"id": [sg_id]})
        pulled.count("SecurityGroup")
    remote = sorted({r["remote_group_id"] for r in pulled.rules if r.get("remote_group_id")})
    for sg_id in remote:
        pulled.members += await bulk_pull(transport, "Port", {"security_group_ids": [sg_id]})
        pulled.count("Port")


def mac(value: object) -> str:
    return str(value).lower().replace("-", ":")


def details_from_objects(port: Mapping[str, Any], network: Mapping[str, Any]) -> dict[str, Any]:
    """CacheBackedPluginApi.get_device_details' keys that aovs uses, from the objects."""
    level = port["binding_levels"][-1]["versioned_object.data"]
    segment = level["segment"]["versioned_object.data"]
    return {
        "network_type": segment["network_type"],
        "segmentation_id": segment["segmentation_id"],
        "physical_network": segment.get("physical_network"),
        "mac_address": mac(port["mac_address"]),
        "fixed_ips": sorted(
            str(ip["versioned_object.data"]["ip_address"]) for ip in port["fixed_ips"]
        ),
        "mtu": network["mtu"],
        "host": next(
            b["versioned_object.data"]["host"]
            for b in port["bindings"]
            if b["versioned_object.data"]["status"] == "ACTIVE"
        ),
    }


def check_pulled(pulled: Pulled, legacy: Mapping[str, Any], sg_id: str, ports: int) -> None:
    """The pull gives what the legacy calls give: every device's details, the group's rules,
    every member address."""
    if len(pulled.ports) != ports:
        raise RuntimeError(f"pulled {len(pulled.ports)} of {ports} ports")
    for port_id, details in legacy.items():
        derived = details_from_objects(pulled.ports[port_id],
                                       pulled.networks[details.network_id])  # fmt: skip
        expected = {
            "network_type": details.network_type, "segmentation_id": details.segmentation_id,
            "physical_network": details.physical_network,
            "mac_address": mac(details.mac_address),
            "fixed_ips": sorted(str(ip.ip_address) for ip in details.fixed_ips),
            "mtu": details.mtu, "host": HOST,
        }  # fmt: skip
        if derived != expected:
            raise RuntimeError(f"pulled details of {port_id} differ:\n{derived}\n{expected}")
        if pulled.ports[port_id]["security_group_ids"] != [sg_id]:
            raise RuntimeError(f"pulled port {port_id}: {pulled.ports[port_id]}")
    if not any(r.get("remote_group_id") == sg_id for r in pulled.rules):
        raise RuntimeError("pulled rules lack the remote-group rule")
    if len({p["id"] for p in pulled.members}) != ports:
        raise RuntimeError(f"pulled {len(pulled.members)} remote-group members, not {ports}")
    if pulled.groups[0].get("stateful") is not True:
        raise RuntimeError(f"pulled group: {pulled.groups[0]}")


# ---- measurements ---------------------------------------------------------------------------


@dataclass
class Bench:
    server: Any
    transport: CountingTransport
    api: NeutronServerApi
    inbox: Inbox
    pgids: dict[str, int]

    async def measure(self, what: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, Any]]:
        """Run ``what``; its wall time, calls/messages/bytes, server CPU and the fanouts the
        listener got meanwhile (plus SETTLE seconds)."""
        wire, cpu = self.transport.wire.copy(), group_cpu(self.pgids)
        started = time.monotonic()
        result = await what()
        seconds = time.monotonic() - started
        cpu_after = group_cpu(self.pgids)
        await asyncio.sleep(SETTLE)
        figures = {
            "seconds": round(seconds, 3),
            **self.transport.wire.minus(wire),
            "server_cpu_seconds": cpu_delta(cpu_after, cpu),
            "fanouts_received": summarize(self.inbox.since(started)),
        }
        return result, figures


def median_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median of each number over the runs (server CPU per role too); the last run's fanouts."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(statistics.median(r[key] for r in runs), 3)
        elif key == "server_cpu_seconds":
            out[key] = {k: round(statistics.median(r[key][k] for r in runs), 2) for k in value}
        else:
            out[key] = runs[-1][key]
    out["runs"] = len(runs)
    return out


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def cold_start_legacy(bench: Bench, devices: list[str], runs: int) -> dict[str, Any]:
    async def once() -> Any:
        details = await bench.api.get_devices_details(devices)
        if len(details.ports) != len(devices):
            raise RuntimeError(f"details: {len(details.ports)} of {len(devices)} ports")
        info = await bench.api.security_group_info_for_devices(devices)
        if len(info.devices) != len(devices):
            raise RuntimeError(f"sg info: {len(info.devices)} of {len(devices)} ports")
        return details.ports

    async def details_only() -> Any:
        return await bench.api.get_devices_details(devices)

    async def sg_only() -> Any:
        return await bench.api.security_group_info_for_devices(devices)

    progress("legacy cold start: first call (status writes)")
    ports, first = await bench.measure(once)
    repeats = []
    for run in range(runs):
        progress(f"legacy cold start: repeat {run + 1}/{runs}")
        repeats.append((await bench.measure(once))[1])
    details_runs = [(await bench.measure(details_only))[1] for _ in range(runs)]
    sg_runs = [(await bench.measure(sg_only))[1] for _ in range(runs)]
    return {
        "ports": ports,
        "first_call": first,
        "repeat": median_of(repeats),
        "repeat_details_only": median_of(details_runs),
        "repeat_security_groups_only": median_of(sg_runs),
    }


async def cold_start_pull(bench: Bench, world: World, legacy_ports: Mapping[str, Any],
                          runs: int, neutron_runs: int) -> dict[str, Any]:  # fmt: skip
    devices = world.port_ids
    out: dict[str, Any] = {}
    for name, puller, count in (("neutron_agent", pull_like_neutron_agent, neutron_runs),
                                ("batched", pull_batched, runs)):  # fmt: skip
        samples = []
        for run in range(count):
            progress(f"pull cold start ({name}): run {run + 1}/{count}")
            pulled, figures = await bench.measure(partial(puller, bench.transport, devices))
            check_pulled(pulled, legacy_ports, world.sg_id, len(devices))
            figures["calls_by_resource_type"] = dict(pulled.calls_by_type)
            samples.append(figures)
        out[name] = median_of(samples)
    return out


async def rule_change(bench: Bench, world: World, runs: int) -> dict[str, Any]:
    """One rule POSTed per run; legacy runs re-fetch on the fanout, push runs only listen."""
    devices = world.port_ids
    server = bench.server
    next_port = iter(range(10000, 20000))

    async def post_rule() -> tuple[dict[str, Any], float, float]:
        number = next(next_port)
        rule = {"security_group_id": world.sg_id, "direction": "ingress", "ethertype": "IPv4",
                "protocol": "tcp", "port_range_min": number, "port_range_max": number}  # fmt: skip
        sent = time.monotonic()
        answer = await asyncio.to_thread(
            server.post, "/v2.0/security-group-rules", {"security_group_rule": rule}
        )
        return answer["security_group_rule"], sent, time.monotonic()

    def since(t: float, ref: float) -> float:
        return round(t - ref, 4)

    legacy_runs, push_runs = [], []
    for run in range(runs):
        progress(f"rule change, legacy: run {run + 1}/{runs}")
        wire, cpu = bench.transport.wire.copy(), group_cpu(bench.pgids)
        posting = asyncio.create_task(post_rule())
        # as the agent does: re-fetch when the fanout comes (often before the POST returns)
        notified = await bench.inbox.wait_for(
            lambda d: d.method == "security_groups_rule_updated"
            and world.sg_id in d.args.get("security_groups", ()),
            since=time.monotonic(), within=30,
        )  # fmt: skip
        info = await bench.api.security_group_info_for_devices(devices)
        done = time.monotonic()
        rule, sent, returned = await posting
        cpu_after = group_cpu(bench.pgids)
        ports_seen = {r.port_range_min for r in info.security_groups[world.sg_id].rules}
        if rule["port_range_min"] not in ports_seen or len(info.devices) != len(devices):
            raise RuntimeError("the re-fetch does not carry the new rule")
        await asyncio.sleep(SETTLE)
        legacy = [d for d in bench.inbox.since(sent) if d.topic in LEGACY_TOPICS]
        refetch = bench.transport.wire.minus(wire)
        legacy_runs.append({
            "post_seconds": round(returned - sent, 3),
            "notification_after_post_return_seconds": since(notified.at, returned),
            "refetch_seconds": round(done - notified.at, 3),
            "seconds": round(done - returned, 3),
            "fanout_messages": len(legacy),
            "fanout_bytes": sum(d.size for d in legacy),
            **{f"refetch_{k}": v for k, v in refetch.items()},
            "messages": len(legacy) + refetch["messages"],
            "bytes": sum(d.size for d in legacy) + refetch["request_bytes"]
            + refetch["reply_bytes"],
            "server_cpu_seconds": cpu_delta(cpu_after, cpu),
            "fanouts_received": summarize(legacy),
        })  # fmt: skip
    for run in range(runs):
        progress(f"rule change, push: run {run + 1}/{runs}")
        cpu = group_cpu(bench.pgids)
        rule, sent, returned = await post_rule()
        pushed = await bench.inbox.wait_for(
            lambda d, rid=rule["id"]: d.method == "push" and d.topic.startswith(
                "neutron-vo-SecurityGroupRule-")
            and any(o["versioned_object.data"]["id"] == rid for o in d.args["resource_list"]),
            since=sent, within=30,
        )  # fmt: skip
        await asyncio.sleep(SETTLE)
        cpu_after = group_cpu(bench.pgids)
        pushes = [d for d in bench.inbox.since(sent) if d.topic in PUSH_TOPICS]
        push_runs.append({
            "post_seconds": round(returned - sent, 3),
            "seconds": since(pushed.at, returned),
            "push_after_post_sent_seconds": since(pushed.at, sent),
            "messages": len(pushes),
            "bytes": sum(d.size for d in pushes),
            "rule_push_bytes": pushed.size,
            "server_cpu_seconds_incl_settle": cpu_delta(cpu_after, cpu),
            "fanouts_received": summarize(pushes),
        })  # fmt: skip
    legacy_out = median_of(legacy_runs)
    push_out = median_of(push_runs)
    push_out["server_cpu_seconds_incl_settle"] = {
        k: round(statistics.median(r["server_cpu_seconds_incl_settle"][k] for r in push_runs), 2)
        for k in push_runs[0]["server_cpu_seconds_incl_settle"]
    }
    return {"legacy": legacy_out, "push": push_out}


async def heartbeat(api: NeutronServerApi) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT)
        with contextlib.suppress(Exception):
            await api.report_state(agent_state(start_flag=False))


async def run(server: Any, ports: int, runs: int, neutron_runs: int) -> dict[str, Any]:
    url = server.transport_url
    async with RpcTransport(url) as control, CountingTransport(url) as transport, \
            RpcTransport(url) as listener:  # fmt: skip
        control_api = NeutronServerApi(control, HOST, rpc_response_timeout=CALL_TIMEOUT)
        status = await control_api.report_state(agent_state(start_flag=True))
        if status not in ("new", "alive", "revived"):
            raise RuntimeError(f"report_state answered {status!r}")
        beating = asyncio.create_task(heartbeat(control_api))
        try:
            progress(f"agent {HOST} registered ({status}); building the world: {ports} ports")
            world = await asyncio.to_thread(build_world, server, ports)
            progress(f"world built: {world.setup}")
            inbox = Inbox()
            for topic in (*LEGACY_TOPICS, *PUSH_TOPICS):
                consumer = CountingServer(listener, topic, inbox)
                await consumer.start()
            pgids = server.pids()
            bench = Bench(server, transport,
                          NeutronServerApi(transport, HOST, rpc_response_timeout=CALL_TIMEOUT),
                          inbox, pgids)  # fmt: skip
            legacy = await cold_start_legacy(bench, world.port_ids, runs)
            legacy_ports = legacy.pop("ports")
            pull = await cold_start_pull(bench, world, legacy_ports, runs, neutron_runs)
            change = await rule_change(bench, world, runs)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
    return {
        "setup": world.setup,
        "cold_start": {"legacy": legacy, "pull": pull},
        "rule_change": change,
    }


# ---- the command line -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(), "model": model, "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }  # fmt: skip


def git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=ROOT).stdout.strip()  # fmt: skip
        return head or "unknown"
    return "unknown"


def neutron_venv() -> Path:
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=1200,
                          check=True)  # fmt: skip
    return Path(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def started_server(keep: bool) -> Iterator[Any]:
    module = load_server_module()
    # debug logging off, as in production (with it the server logs every object it returns);
    # no port quota (neutron's default is 500 per project)
    config = {"DEFAULT": {"debug": False}, "quotas": {"quota_port": -1}}
    with module.NeutronServer(
        neutron_venv(), keep=keep, extra_config=config, start_timeout=START_TIMEOUT
    ) as server:
        try:
            yield server
        finally:
            if keep:
                print(f"server directory: {server.directory}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=DEFAULT_PORTS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--neutron-agent-runs",
        type=int,
        default=1,
        help="runs of neutron's one-call-per-port pull (the slow one; default 1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the server's directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.monotonic()
    document: dict[str, Any] = {
        "ports": args.ports,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": git_commit(),
    }
    with started_server(args.keep) as server:
        document["server_start_seconds"] = round(server.started_at, 1)
        mark = server.log_mark()
        document.update(uvloop.run(run(server, args.ports, args.runs, args.neutron_agent_runs)))
        errors = server.error_lines(since=mark)
        document["server_errors"] = errors[:20]
        warnings = server.warning_lines(since=mark)
        document["server_warnings"] = sorted({w.split(" ", 4)[-1][:200] for w in warnings})[:20]
    document["machine"]["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    document["total_seconds"] = round(time.monotonic() - started, 1)
    document["units"] = UNITS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(headline(document), indent=2))
    progress(f"wrote {args.out}")
    return 1 if errors else 0


UNITS = {
    "seconds": "wall-clock seconds (median of the runs)",
    "calls": "RPC calls sent by the agent",
    "messages": "AMQP messages: requests + replies for calls, deliveries for fanouts",
    "bytes": "AMQP body bytes (oslo envelope included)",
    "server_cpu_seconds": "utime+stime of each server process group during the measurement",
}


def headline(doc: Mapping[str, Any]) -> dict[str, Any]:
    cold, change = doc["cold_start"], doc["rule_change"]

    def pick(d: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("seconds", "calls", "messages", "request_bytes", "reply_bytes", "bytes")
        out = {k: d[k] for k in keys if k in d}
        cpu = d.get("server_cpu_seconds") or d.get("server_cpu_seconds_incl_settle")
        if cpu:
            out["server_cpu_total"] = cpu["total"]
        return out

    return {
        "ports": doc["ports"],
        "setup": doc["setup"],
        "cold_legacy_first_call": pick(cold["legacy"]["first_call"]),
        "cold_legacy_repeat": pick(cold["legacy"]["repeat"]),
        "cold_pull_neutron_agent": pick(cold["pull"]["neutron_agent"]),
        "cold_pull_batched": pick(cold["pull"]["batched"]),
        "rule_change_legacy": pick(change["legacy"]),
        "rule_change_push": pick(change["push"]),
        "total_seconds": doc["total_seconds"],
        "server_errors": len(doc["server_errors"]),
    }


if __name__ == "__main__":
    sys.exit(main())
