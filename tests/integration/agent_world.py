"""A world for the agent's integration tests: a private OVS, the simulator, the agent.

Everything real: the sandbox's ovsdb-server/ovs-vswitchd, RabbitMQ (a private vhost), the
neutron-server simulator on it, and the agent in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aovs.agent.agent import Agent
from aovs.config import AgentConfig
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import (
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    SimulatedCloud,
)
from aovs.testing.simulator import NeutronServerSimulator

VLAN_NET = "net-vlan"
FLAT_NET = "net-flat"
SEGMENTATION_ID = 101
SG = "sg-web"
PORT_METADATA_DELAY = 0.2  # [ovs] port_metadata_delay: tests read Port.tag soon after wiring


def port_id(index: int) -> str:
    return f"port-{index:05d}"


def tap(index: int) -> str:
    return f"tap{index:05d}"


def mac(index: int) -> str:
    return f"fa:16:3e:00:{index // 256:02x}:{index % 256:02x}"


def ip(index: int) -> str:
    return f"10.{1 + index // 60000}.{index // 250 % 240}.{index % 250 + 2}"


def topology(ports: int, flat_every: int = 10) -> SimulatedCloud:
    """``ports`` ports; every ``flat_every``-th one on the flat network, the rest on vlan 101."""
    ssh = CloudRule(direction="ingress", protocol="tcp", port_range_min=22, port_range_max=22,
               remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    rules = (CloudRule(direction="egress"), ssh, CloudRule(direction="ingress", remote_group_id=SG))
    vlan = CloudNetwork(
        network_type="vlan", physical_network="physnet1", segmentation_id=SEGMENTATION_ID
    )
    flat = CloudNetwork(network_type="flat", physical_network="physnet1")
    world = [
        CloudPort.model_validate(
            {
                "port_id": port_id(i),
                "network_id": FLAT_NET if i % flat_every == 0 else VLAN_NET,
                "mac_address": mac(i),
                "fixed_ips": [{"ip_address": ip(i)}],
                "security_groups": [SG],
            }
        )
        for i in range(ports)
    ]
    return SimulatedCloud(
        networks={VLAN_NET: vlan, FLAT_NET: flat},
        security_groups={SG: CloudSecurityGroup(rules=rules)},
        ports=tuple(world),
    )


def agent_config(
    sandbox: OVSSandbox, transport_url: str, state_path: Path, **agent: Any
) -> AgentConfig:
    return sandbox.agent_config(transport_url, state_path, host="compute-test",
                                ovs={"port_metadata_delay": PORT_METADATA_DELAY},
                                rpc_response_timeout=2.0, rpc_response_max_timeout=4.0,
                                **agent)  # fmt: skip


async def port_tag(sandbox: OVSSandbox, name: str, within: float = 10.0) -> int:
    """The Port row's tag, once the agent has written it (lazily: PORT_METADATA_DELAY)."""
    await wait_until(lambda: sandbox.vsctl("get", "Port", name, "tag").strip().isdigit(),
                     within, f"Port {name}'s tag")  # fmt: skip
    return int(sandbox.vsctl("get", "Port", name, "tag"))


def plug(sandbox: OVSSandbox, indexes: range | list[int]) -> None:
    """libvirt's add-port, for many VMs in ONE ovs-vsctl transaction."""
    args: list[str] = []
    for i in indexes:
        args += ["--", "--may-exist", "add-port", "br-int", tap(i), "--", "set", "Interface",
                 tap(i), "type=dummy", f"external_ids:iface-id={port_id(i)}",
                 f"external_ids:attached-mac={mac(i)}"]  # fmt: skip
    sandbox.vsctl(*args[1:])


def unplug(sandbox: OVSSandbox, indexes: range | list[int]) -> None:
    args: list[str] = []
    for i in indexes:
        args += ["--", "--if-exists", "del-port", "br-int", tap(i)]
    sandbox.vsctl(*args[1:])


def ofport(sandbox: OVSSandbox, name: str) -> int:
    return int(sandbox.vsctl("get", "Interface", name, "ofport").strip())


async def wait_until(
    predicate: Callable[[], bool], within: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def flows_with(sandbox: OVSSandbox, bridge: str, needle: str) -> list[str]:
    return [f for f in sandbox.dump_flows(bridge) if needle in f]


def ofports(sandbox: OVSSandbox, bridge: str = "br-int") -> dict[str, int]:
    """The ofport of each of ``bridge``'s interfaces by name (ofports are per bridge)."""
    mine = set(sandbox.vsctl("list-ifaces", bridge).split())
    out = sandbox.vsctl("--format=csv", "--no-headings", "--columns=name,ofport", "list",
                        "Interface")  # fmt: skip
    return {
        name.strip('"'): int(port)
        for name, port in (line.split(",") for line in out.splitlines())
        if name.strip('"') in mine and port.lstrip("-").isdigit()
    }


PORT_NUMBER = re.compile(
    r"(?P<head>in_port=|output:|reg5=0x|set_field:0x)(?P<n>[0-9a-f]+)(?P<tail>->reg5)?"
)


def flows_by_port_name(
    sandbox: OVSSandbox, names: dict[int, str], bridge: str = "br-int"
) -> list[str]:
    """The bridge's flows (sorted), each ofport replaced by its interface's name: equal before
    and after VMs reboot exactly when every rebooted port's flows moved to its new ofport.
    An ofport no interface has (a stale flow) stays a number and so breaks the equality."""

    def name(m: re.Match[str]) -> str:
        head, n, tail = m["head"], m["n"], m["tail"] or ""
        hexadecimal = head.endswith("0x")
        if head == "set_field:0x" and not tail:
            return m[0]  # some other register or field
        ofport = int(n, 16) if hexadecimal else int(n)
        return f"{head.removesuffix('0x')}<{names.get(ofport, n)}>{tail}"

    return sorted(PORT_NUMBER.sub(name, line) for line in sandbox.dump_flows(bridge))


def in_ports(sandbox: OVSSandbox, bridge: str = "br-int") -> set[int]:
    return {int(m) for f in sandbox.dump_flows(bridge) for m in re.findall(r"in_port=(\d+)", f)}


@contextlib.asynccontextmanager
async def simulator(
    transport_url: str, world: SimulatedCloud
) -> AsyncIterator[NeutronServerSimulator]:
    sim = NeutronServerSimulator(world, transport_url)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig, **kwargs: Any) -> AsyncIterator[Agent]:
    agent = Agent(config, **kwargs)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
