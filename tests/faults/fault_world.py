"""The hypervisor the faults are injected into: everything real, the agent in its own process.

A private OVS (``aovs.sandbox``), a private RabbitMQ vhost (created and deleted here, so
``rabbitmqctl close_all_connections --vhost`` touches nothing of anyone else's), the
neutron-server simulator in this process (its fault switches and its record of
update_device_list), a reference OVS that renders expected flows the way ovs-ofctl prints them
(the bench suite's ``Verifier``), the socket proxy between the agent and OVS, and ``aovs agent
--config FILE`` as a subprocess (the bench suite's ``AgentProcess``), so it can be SIGKILLed.

The world's ports: GOOD ports spread over two VLAN networks and a flat one, and one port per
kind of bad input the server can send (a MAC or an IP that does not parse, an unknown network
type, wrong JSON types) plus one the server does not know at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.suite.agent_process import AgentProcess, AgentSettings
from benchmarks.suite.dataplane import Verifier
from benchmarks.suite.world import vsctl
from fault_proxy import SocketProxy

from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import (
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    SimulatedCloud,
)
from aovs.testing.simulator import NeutronServerSimulator

RABBIT = "127.0.0.1:5672"
HOST = "fault-compute"
INTEGRATION_BRIDGE = "br-int"
PHYSICAL_BRIDGE = "br-phys"
PHYSNET = "physnet1"
NETWORKS = {
    "net-a": CloudNetwork(network_type="vlan", physical_network=PHYSNET, segmentation_id=101),
    "net-b": CloudNetwork(network_type="vlan", physical_network=PHYSNET, segmentation_id=102),
    "net-f": CloudNetwork(network_type="flat", physical_network=PHYSNET),
}
SG = "sg-web"
# what the server sends for the bad ports instead of their real details
BAD_DETAILS: dict[str, dict[str, Any]] = {
    "bad-mac": {"mac_address": "fa:16:3e:zz:00:01"},
    "bad-ip": {"fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.300"}]},
    "bad-type": {"network_type": "banana"},
    "bad-types": {"admin_state_up": {"yes": 1}, "fixed_ips": 7},
}
UNKNOWN = "not-on-server"  # an iface-id neutron-server has never heard of


@dataclass(frozen=True, slots=True)
class VmPort:
    iface_id: str
    tap: str
    mac: str

    def plug_args(self) -> list[str]:
        return ["--may-exist", "add-port", INTEGRATION_BRIDGE, self.tap, "--", "set",
                "Interface", self.tap, "type=dummy", f"external_ids:iface-id={self.iface_id}",
                f"external_ids:attached-mac={self.mac}",
                "external_ids:iface-status=active"]  # fmt: skip

    def unplug_args(self) -> list[str]:
        return ["--if-exists", "del-port", INTEGRATION_BRIDGE, self.tap]


def good_port_id(index: int) -> str:
    return f"good-{index:03d}"


def build_topology(good: int) -> tuple[SimulatedCloud, list[VmPort]]:
    """``good`` ports round-robin over the networks, the bad ones, one security group."""
    rules = (
        CloudRule(direction="egress"),
        CloudRule(direction="ingress", protocol="tcp", port_range_min=22, port_range_max=22,
             remote_ip_prefix="0.0.0.0/0"),
        CloudRule(direction="ingress", remote_group_id=SG),
    )  # fmt: skip
    networks = sorted(NETWORKS)
    ports, vms = [], []
    ids = [good_port_id(i) for i in range(good)] + list(BAD_DETAILS)
    for index, port_id in enumerate(ids):
        mac = f"fa:16:3e:01:{index >> 8:02x}:{index & 0xFF:02x}"  # a soak has hundreds
        network = networks[index % len(networks)]
        host = index + 2  # addresses from 10.x.0.2 on, past .255 into 10.x.1.0 and on
        ports.append(
            CloudPort.model_validate({
                "port_id": port_id, "network_id": network, "mac_address": mac,
                "fixed_ips": [{"ip_address": f"10.{10 + index % len(networks)}.{host >> 8}."
                                            f"{host & 0xFF}"}],
                "security_groups": [SG],
            })
        )  # fmt: skip
        vms.append(VmPort(port_id, f"tap-{port_id}"[:15], mac))
    vms.append(VmPort(UNKNOWN, "tap-unknown", "fa:16:3e:00:02:01"))
    groups = {SG: CloudSecurityGroup(rules=rules)}
    topology = SimulatedCloud(networks=NETWORKS, security_groups=groups, ports=tuple(ports))
    return topology, vms


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout  # fmt: skip


class FaultWorld:
    def __init__(self, good_ports: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="aovs-flt-", dir="/tmp"))
        self.topology, self.vms = build_topology(good_ports)
        self.by_id = {vm.iface_id: vm for vm in self.vms}
        self.sandbox = OVSSandbox(self.workdir / "ovs")
        self.reference = OVSSandbox(self.workdir / "ref")
        self.verifier = Verifier(self.sandbox, self.reference)
        # when the last read of the switch's state ended: a passing check's state is no older
        self.switch_read_at = 0.0
        self.vhost = f"aovs-faults-{uuid.uuid4().hex[:8]}"
        self.transport_url = f"rabbit://guest:guest@{RABBIT}/{self.vhost}"
        self.proxy_dir = self.workdir / "px"
        self.proxy = SocketProxy(self.proxy_dir, self.sandbox.directory,
                                 ["db.sock", f"{INTEGRATION_BRIDGE}.mgmt",
                                  f"{PHYSICAL_BRIDGE}.mgmt"])  # fmt: skip
        self.state_path = self.workdir / "state"
        self.simulator = NeutronServerSimulator(self.topology, self.transport_url)
        self.simulator.wire_overrides.update(BAD_DETAILS)
        self.agent: AgentProcess | None = None
        self.agents: list[AgentProcess] = []  # every run, for the log checks
        self._vhost_made = False

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(rabbitmqctl, "add_vhost", self.vhost)
        self._vhost_made = True
        await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", self.vhost, "guest", ".*",
                                ".*", ".*")  # fmt: skip
        await asyncio.to_thread(self.sandbox.start, (PHYSICAL_BRIDGE,))
        await asyncio.to_thread(self.reference.start)
        await vsctl(self.sandbox, "--may-exist", "add-br", INTEGRATION_BRIDGE, "--", "set",
                    "Bridge", INTEGRATION_BRIDGE, "datapath_type=dummy", "fail-mode=secure",
                    "protocols=OpenFlow13")  # fmt: skip
        await self.simulator.start()
        await self.proxy.start()

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
        await self.proxy.close()
        with contextlib.suppress(Exception):
            await self.simulator.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.sandbox.remove)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.reference.remove)
        if self._vhost_made:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(rabbitmqctl, "delete_vhost", self.vhost)

    def discard(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the agent -----------------------------------------------------------------------------
    def settings(self) -> AgentSettings:
        return AgentSettings(
            host=HOST,
            transport_url=self.transport_url,
            ovsdb_connection=f"unix:{self.proxy_dir / 'db.sock'}",
            state_path=self.state_path,
            rpc_response_timeout=2.0,
            rpc_response_max_timeout=4.0,
            report_interval=5.0,
            port_metadata_delay=0.5,  # the invariant reads the local VLANs from Port.tag
        )

    async def spawn_agent(self) -> AgentProcess:
        agent = AgentProcess(self.settings(), self.workdir, f"agent-{len(self.agents) + 1}")
        await agent.start()
        self.agent = agent
        self.agents.append(agent)
        return agent

    async def kill_agent(self) -> None:
        if self.agent is not None:
            await self.agent.stop(signal.SIGKILL)

    def agent_alive(self) -> bool:
        return self.agent is not None and self.agent.alive
