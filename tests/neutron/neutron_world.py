"""Hypervisors for the neutron conformance tier: a private OVS each, with a real aovs agent.

A hypervisor is what a compute node is to a real neutron-server: an OVS (a private sandbox, dummy
datapath, tunnel-capable, br-phys for physnet1) and an aovs ``Agent`` in this process, reporting
as ``host`` with a loopback tunnel address. VMs are plugged the way nova/os-vif does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from server.neutron_server import NeutronServer

from aovs.agent.agent import Agent
from aovs.config import AgentConfig
from aovs.sandbox import OVSSandbox, running_sandbox

OVS_AGENT = "Open vSwitch agent"
# what neutron 29's own agent puts in report_state's configurations (ovs_neutron_agent.py
# ``agent_state``, plus ``devices`` and ``in_distributed_mode`` added at each report); checked
# against the installed source by test_lifecycle's registration test
NEUTRON_CONFIGURATION_KEYS = frozenset({
    "bridge_mappings", "resource_provider_bandwidths", "resource_provider_inventory_defaults",
    "resource_provider_packet_processing_without_direction",
    "resource_provider_packet_processing_with_direction",
    "resource_provider_packet_processing_inventory_defaults", "resource_provider_hypervisors",
    "integration_bridge", "tunnel_types", "tunneling_ip", "l2_population",
    "arp_responder_enabled", "enable_distributed_routing", "log_agent_heartbeats", "extensions",
    "datapath_type", "ovs_capabilities", "vhostuser_socket_dir", "ovs_hybrid_plug",
    "baremetal_smartnic", "devices", "in_distributed_mode",
})  # fmt: skip
PHYSICAL_BRIDGE = "br-phys"  # physnet1's bridge
PORT_METADATA_DELAY = 0.5  # [ovs] port_metadata_delay (default 5 s): tests read Port.tag
# one loopback address per simulated hypervisor, by host name (never a non-loopback one)
LOCAL_IPS = {"host-a": "127.0.0.11", "host-b": "127.0.0.12", "host-c": "127.0.0.13"}


def tap_name(port_id: str) -> str:
    """nova's device name for a port: ``tap`` + the first 11 characters of its id."""
    return f"tap{port_id[:11]}"


@dataclass
class Hypervisor:
    """One simulated compute node: ``sandbox`` (its OVS) and ``agent`` (aovs, in-process)."""

    host: str
    local_ip: str
    sandbox: OVSSandbox
    config: AgentConfig
    agent: Agent
    plugged: dict[str, str] = field(default_factory=dict)  # port id -> tap name

    def plug(self, port: Mapping[str, Any], *, vm_uuid: str | None = None) -> str:
        """Plug a neutron port (a REST port dict) into br-int as nova/os-vif does; the tap."""
        tap = tap_name(port["id"])
        vm = vm_uuid or port.get("device_id") or str(uuid.uuid4())
        self.sandbox.vsctl(
            "--may-exist", "add-port", "br-int", tap,
            "--", "set", "Interface", tap, "type=dummy",
            f"external-ids:iface-id={port['id']}",
            f"external-ids:attached-mac={port['mac_address']}",
            "external-ids:iface-status=active",
            f"external-ids:vm-uuid={vm}",
        )  # fmt: skip
        self.plugged[port["id"]] = tap
        return tap

    def unplug(self, port_id: str) -> None:
        """Delete the port's tap from br-int (a VM deleted or migrated away)."""
        tap = self.plugged.pop(port_id, tap_name(port_id))
        self.sandbox.vsctl("--if-exists", "del-port", "br-int", tap)

    def ofport(self, port_id: str) -> int:
        """The OpenFlow port number of a plugged port's tap (-1 or 0 while OVS has none)."""
        tap = self.plugged.get(port_id, tap_name(port_id))
        value = self.sandbox.vsctl("get", "Interface", tap, "ofport").strip()
        return int(value) if value.lstrip("-").isdigit() else 0

    def flows(self, bridge: str = "br-int") -> list[str]:
        """``ovs-ofctl -O OpenFlow13 dump-flows`` (without statistics), sorted."""
        return self.sandbox.dump_flows(bridge)

    def flows_on_port(self, ofport: int, bridge: str = "br-int") -> list[str]:
        """The flows that match or act on ``ofport`` (in_port, output, reg5 or the register
        the openvswitch firewall loads with it)."""
        pattern = re.compile(
            rf"(in_port={ofport}\b|output:{ofport}\b|reg5=0x{ofport:x}\b"
            rf"|set_field:0x{ofport:x}->reg5\b|load:0x{ofport:x}->NXM_NX_REG5)"
        )
        return [flow for flow in self.flows(bridge) if pattern.search(flow)]


class HypervisorFactory(Protocol):
    async def __call__(
        self, host: str, *, local_ip: str | None = None, **agent: Any
    ) -> Hypervisor: ...


def agent_config(
    sandbox: OVSSandbox, transport_url: str, host: str, local_ip: str, **agent: Any
) -> AgentConfig:
    """The agent of a hypervisor: vxlan with l2population from ``local_ip``, physnet1 on
    br-phys, the openvswitch firewall, state reports every 2 s, Port rows written 0.5 s after
    the flows (tests read Port.tag); ``agent`` overrides ``[agent]`` options."""
    state = tempfile.mkdtemp(prefix=f"state-{host}-", dir=sandbox.directory)  # goes with it
    base = sandbox.agent_config(transport_url, Path(state), host=host).model_dump(mode="json")
    base["ovs"]["local_ip"] = local_ip
    base["ovs"]["port_metadata_delay"] = PORT_METADATA_DELAY
    base["agent"].update(
        {"tunnel_types": ["vxlan"], "l2_population": True, "report_interval": 2.0, **agent}
    )
    return AgentConfig.model_validate(base)


@contextlib.asynccontextmanager
async def hypervisors(
    transport_url: str, directory_prefix: str = "aovs-n-"
) -> AsyncIterator[HypervisorFactory]:
    """A factory of hypervisors on ``transport_url``; on exit every agent is stopped, then every
    sandbox (also those of a hypervisor whose agent failed to start)."""
    stack = contextlib.AsyncExitStack()
    used_ips: set[str] = set()

    async def make(host: str, *, local_ip: str | None = None, **agent: Any) -> Hypervisor:
        ip = local_ip or LOCAL_IPS.get(host) or f"127.0.0.{20 + len(used_ips)}"
        if ip in used_ips:
            raise ValueError(f"local_ip {ip} is already used by another hypervisor")
        used_ips.add(ip)
        directory = Path(tempfile.mkdtemp(prefix=directory_prefix, dir="/tmp"))
        sandbox = stack.enter_context(running_sandbox(directory, tunnels=True))
        sandbox.add_physical_bridge(PHYSICAL_BRIDGE)
        config = agent_config(sandbox, transport_url, host, ip, **agent)
        instance = Agent(config)
        await instance.start()
        stack.push_async_callback(instance.stop)
        return Hypervisor(host=host, local_ip=ip, sandbox=sandbox, config=config, agent=instance)

    async with stack:
        yield make


# -- waiting on the server (the REST client blocks: run it in a thread, the agents run on) ----
async def poll(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.25,
) -> Any:
    """Call ``fetch`` in a thread until ``done(result)``; the last result, or AssertionError
    naming ``what`` and showing the last result after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await asyncio.to_thread(fetch)
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}; last: {result}")
        await asyncio.sleep(interval)


async def wait_port_status(
    server: NeutronServer, port_id: str, status: str = "ACTIVE", within: float = 30.0
) -> dict[str, Any]:
    """Until the server shows the port in ``status``; the port (REST dict)."""
    port: dict[str, Any] = await poll(
        lambda: server.show_port(port_id),
        lambda port: port["status"] == status,
        within=within,
        what=f"port {port_id} {status}",
    )
    return port


async def wait_agents_alive(
    server: NeutronServer, hosts: Iterable[str], within: float = 30.0
) -> list[dict[str, Any]]:
    """Until ``GET /v2.0/agents`` shows an alive Open vSwitch agent on each of ``hosts``."""
    wanted = set(hosts)

    def alive(agents: list[dict[str, Any]]) -> bool:
        return wanted <= {a["host"] for a in agents if a["alive"]}

    agents: list[dict[str, Any]] = await poll(
        lambda: server.agents(agent_type=OVS_AGENT),
        alive,
        within=within,
        what=f"alive OVS agents on {sorted(wanted)}",
    )
    return [a for a in agents if a["host"] in wanted]


async def in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking REST call without stalling the agents that run on this event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)
