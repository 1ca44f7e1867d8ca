"""The hypervisor the suite plays with: a private OVS, a private RabbitMQ vhost, the simulator.

Everything real: the sandbox's ovsdb-server and ovs-vswitchd (dummy datapath), RabbitMQ (a
vhost of its own, created and deleted with rabbitmqctl), the neutron-server simulator serving a
generated topology (in this process, so the suite can read which devices were reported up), and
N VM ports plugged the way libvirt plugs them (``ovs-vsctl add-port`` with ``iface-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator

RABBIT = "127.0.0.1:5672"
HOST = "bench-compute"
INTEGRATION_BRIDGE = "br-int"
PHYSICAL_BRIDGE = "br-phys"
PHYSNET = "physnet1"
UPLINK = "br-phys-up"  # OVSSandbox.add_physical_bridge's dummy uplink
TUNNEL_BRIDGE = "br-tun"  # the agent's defaults: [ovs] tunnel_bridge, *_peer_patch_port
INT_PEER_PATCH = "patch-tun"  # on br-int
TUN_PEER_PATCH = "patch-int"  # on br-tun
TUNNEL_TYPE = "vxlan"
LOCAL_IP = "192.0.2.250"  # this host's tunnel endpoint (the topology's are 192.0.2.1, .2, ...)
TUNNEL_ENDPOINTS = 2  # remote hypervisors: one vxlan port each on br-tun
SECURITY_GROUPS = 10
OFPORT_SHIFT = 20000  # a storm moves every VM port to ofport +- this (see ``replug_args``)


class WorldError(RuntimeError):
    """The world could not be set up or driven; the message names the step."""


async def run_tool(sandbox: OVSSandbox, *argv: str, within: float = 120.0) -> str:
    """An OVS command line tool against the sandbox, without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise WorldError(f"{' '.join(argv[:3])}: no answer within {within} s") from None
    if process.returncode != 0:
        raise WorldError(f"{' '.join(argv[:4])}: {err.decode(errors='replace').strip()[:400]}")
    return out.decode()


async def vsctl(sandbox: OVSSandbox, *args: str, within: float = 120.0) -> str:
    return await run_tool(sandbox, "ovs-vsctl", f"--timeout={int(within)}", *args,
                          within=within + 5)  # fmt: skip


async def ofctl(sandbox: OVSSandbox, *args: str, within: float = 120.0) -> str:
    return await run_tool(sandbox, "ovs-ofctl", "-O", "OpenFlow13", *args, within=within)


async def appctl(sandbox: OVSSandbox, *args: str, within: float = 30.0) -> str:
    ctl = str(sandbox.directory / "ovs-vswitchd.ctl")
    return await run_tool(sandbox, "ovs-appctl", "-t", ctl, *args, within=within)


def _rabbitmqctl(*args: str) -> None:
    try:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise WorldError("rabbitmqctl not found: is rabbitmq-server installed?") from None
    except subprocess.CalledProcessError as exc:
        raise WorldError(f"rabbitmqctl {args[0]}: {exc.stderr.decode().strip()[:300]}") from None


def vsctl_table(text: str) -> list[dict[str, Any]]:
    """``ovs-vsctl --format=json list TABLE`` output as rows of plain values (pure)."""
    data = json.loads(text)
    headings = data["headings"]
    return [
        {name: _ovsdb_value(value) for name, value in zip(headings, row, strict=True)}
        for row in data["data"]
    ]


def _ovsdb_value(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, payload = value
        if kind == "set":
            return [_ovsdb_value(item) for item in payload] or None
        if kind == "map":
            return {str(k): _ovsdb_value(v) for k, v in payload}
        if kind in ("uuid", "named-uuid"):
            return payload
    return value


@dataclass(frozen=True, slots=True)
class VmPort:
    """One VM's port: the neutron port id doubles as the iface-id, tap name as nova makes it."""

    index: int
    iface_id: str
    tap: str
    mac: str
    network_id: str

    def plug_args(self, ofport_request: int | None = None, tag: int | None = None) -> list[str]:
        """``add-port`` as libvirt runs it; ``tag`` sets Port.tag in the same command (the
        practical limit's transaction, never libvirt's)."""
        port = [] if tag is None else [f"tag={tag}"]
        args = ["add-port", INTEGRATION_BRIDGE, self.tap, *port, "--", "set", "Interface",
                self.tap, "type=dummy", f"external_ids:iface-id={self.iface_id}",
                f"external_ids:attached-mac={self.mac}", "external_ids:iface-status=active",
                f"external_ids:vm-uuid=vm-{self.index:05d}"]  # fmt: skip
        if ofport_request is not None:
            args.append(f"ofport_request={ofport_request}")
        return args


def bridge_args(bridge: str) -> list[str]:
    """An empty bridge as the suite makes its own (OpenFlow 1.3, secure, dummy datapath)."""
    return ["--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge,
            "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13"]  # fmt: skip


def port_copy_args(bridge: str, interface: Mapping[str, Any]) -> list[str]:
    """``add-port`` recreating an Interface row (``vsctl_table`` form: name, type, options,
    ofport) with the same ofport, type and options, e.g. in another OVS (pure)."""
    name = str(interface["name"])
    args = ["add-port", bridge, name, "--", "set", "Interface", name]
    kind = interface.get("type")
    if kind:
        args.append(f"type={kind}")
    options = interface.get("options") or {}
    args += [f"options:{key}={value}" for key, value in sorted(options.items())]
    ofport = interface.get("ofport")
    if isinstance(ofport, int) and ofport > 0:
        args.append(f"ofport_request={ofport}")
    return args


def transaction(commands: Iterable[list[str]]) -> list[str]:
    """Several ovs-vsctl commands as ONE transaction's argv (``a -- b -- c``)."""
    argv: list[str] = []
    for command in commands:
        argv += ["--", *command]
    return argv[1:]


def replug_args(vm: VmPort, old_ofport: int) -> list[list[str]]:
    """Delete and re-add the port in one transaction with a NEW ofport (in one transaction OVS
    would otherwise give the same name its old number back)."""
    new = old_ofport + OFPORT_SHIFT if old_ofport < OFPORT_SHIFT else old_ofport - OFPORT_SHIFT
    return [["--if-exists", "del-port", INTEGRATION_BRIDGE, vm.tap], vm.plug_args(new)]


class World:
    def __init__(
        self,
        ports: int,
        network_types: Sequence[Literal["vlan", "vxlan"]] = ("vlan",),
        workdir: Path | None = None,
        keep: bool = False,
    ) -> None:
        self.keep = keep  # leave the work directory (agent logs, OVS logs) for a post-mortem
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="aovs-bench-", dir="/tmp"))
        self.network_types = tuple(network_types)
        self.topology = SimulatedCloud.generate(
            ports,
            network_types=self.network_types,
            security_groups=SECURITY_GROUPS,
            tunnels=TUNNEL_ENDPOINTS if TUNNEL_TYPE in self.network_types else 0,
            physical_network=PHYSNET,
        )
        self.vms = [
            VmPort(index, port.port_id, f"tap{port.port_id[:11]}", port.mac_address,
                   port.network_id)
            for index, port in enumerate(self.topology.ports)
        ]  # fmt: skip
        self.by_iface = {vm.iface_id: vm for vm in self.vms}
        self.sandbox = OVSSandbox(self.workdir / "ovs")
        self.vhost = f"aovs-bench-{uuid.uuid4().hex[:8]}"
        self.transport_url = f"rabbit://guest:guest@{RABBIT}/{self.vhost}"
        self.simulator: NeutronServerSimulator | None = None
        self._vhost_created = False

    @property
    def tunnelled(self) -> bool:
        """Whether the agent runs br-tun (``tunnel_types``, ``local_ip``)."""
        return TUNNEL_TYPE in self.network_types

    @property
    def remote_endpoints(self) -> tuple[str, ...]:
        return tuple(tunnel.ip_address for tunnel in self.topology.tunnels)

    @property
    def bridges(self) -> tuple[str, ...]:
        """The bridges the agent programs."""
        tunnel = (TUNNEL_BRIDGE,) if self.tunnelled else ()
        return (INTEGRATION_BRIDGE, PHYSICAL_BRIDGE, *tunnel)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if shutil.which("rabbitmqctl") is None and shutil.which("/usr/sbin/rabbitmqctl") is None:
            raise WorldError("rabbitmqctl not found: is rabbitmq-server installed?")
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", self.vhost)
        self._vhost_created = True
        await asyncio.to_thread(
            _rabbitmqctl, "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"
        )
        await asyncio.to_thread(self.sandbox.start, (PHYSICAL_BRIDGE,))
        # br-int (and br-tun) exist before the agent, as on a host the agent ran on before:
        # the suite's OpenFlow watch connects to them from the start
        for bridge in self.bridges:
            if bridge != PHYSICAL_BRIDGE:
                await vsctl(self.sandbox, *bridge_args(bridge))

    async def close(self) -> None:
        await self.stop_simulator()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.sandbox.stop if self.keep else self.sandbox.remove)
        if self._vhost_created:
            with contextlib.suppress(WorldError):
                await asyncio.to_thread(_rabbitmqctl, "delete_vhost", self.vhost)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def start_simulator(self) -> NeutronServerSimulator:
        await self.stop_simulator()
        simulator = NeutronServerSimulator(self.topology, self.transport_url)
        await simulator.start()
        self.simulator = simulator
        return simulator

    async def stop_simulator(self) -> None:
        if self.simulator is not None:
            with contextlib.suppress(Exception):
                await self.simulator.stop()
            self.simulator = None

    # -- OVS -------------------------------------------------------------------------------
    async def plug_all(self) -> None:
        """Every VM port in ONE transaction (a host whose VMs were all defined before boot)."""
        await vsctl(self.sandbox, *transaction(vm.plug_args() for vm in self.vms), within=300)

    async def restart_ovs(self) -> None:
        """Both daemons stopped and started again: the database stays, the flows are gone."""
        await asyncio.to_thread(self.sandbox.stop)
        await asyncio.to_thread(self.sandbox.start_ovsdb)
        await asyncio.to_thread(self.sandbox.start_vswitchd)

    async def interfaces(self) -> dict[str, int | None]:
        """Interface name -> ofport (None while ovs-vswitchd has not assigned one)."""
        rows = vsctl_table(
            await vsctl(self.sandbox, "--format=json", "--columns=name,ofport", "list", "Interface")
        )
        return {
            str(row["name"]): row["ofport"] if isinstance(row["ofport"], int) else None
            for row in rows
        }

    async def switch_copy(self, leave_out: Iterable[str]) -> list[list[str]]:
        """ovs-vsctl commands that rebuild this switch's bridges and ports (same names, types,
        options, ofports) in another OVS, without the ports named in ``leave_out``."""
        skip = set(leave_out)
        rows = vsctl_table(await vsctl(self.sandbox, "--format=json",
                                       "--columns=name,type,options,ofport", "list",
                                       "Interface"))  # fmt: skip
        by_name = {str(row["name"]): row for row in rows}
        commands = []
        for bridge in self.bridges:
            commands.append(bridge_args(bridge))
            for name in (await vsctl(self.sandbox, "list-ports", bridge)).split():
                if name not in skip and name in by_name:
                    commands.append(port_copy_args(bridge, by_name[name]))
        return commands

    async def port_tags(self) -> dict[str, int | None]:
        rows = vsctl_table(
            await vsctl(self.sandbox, "--format=json", "--columns=name,tag", "list", "Port")
        )
        return {str(r["name"]): r["tag"] if isinstance(r["tag"], int) else None for r in rows}

    async def wait_ofports(self, names: Iterable[str], within: float = 120.0) -> dict[str, int]:
        """Wait until every named interface has a valid ofport; name -> ofport for all."""
        wanted = set(names)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = await self.interfaces()
            ready = {n: p for n, p in found.items() if p is not None and p > 0}
            if wanted <= ready.keys():
                return ready
            if asyncio.get_running_loop().time() > deadline:
                missing = sorted(wanted - ready.keys())
                raise WorldError(f"{len(missing)} ports without an ofport, e.g. {missing[:3]}")
            await asyncio.sleep(0.05)
