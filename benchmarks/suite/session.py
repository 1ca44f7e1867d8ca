"""One suite run's moving parts, and the questions every scenario asks of them.

A ``Session`` holds the world (OVS, RabbitMQ vhost, simulator, ports), a reference OVS for
rendering expected flows and for the baselines, the suite's OpenFlow watch, the current agent
process and the ofports as OVSDB last reported them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aovs.dataplane.compose import BridgeFlows
from aovs.ovsdb import OVSDBClient
from aovs.ovsdb.rows import EventKind
from aovs.pipelines import tables
from aovs.sandbox import OVSSandbox
from benchmarks.suite.agent_process import AgentProcess, AgentSettings
from benchmarks.suite.dataplane import (
    COUNT_INTERVAL,
    POLL_INTERVAL,
    Convergence,
    FlowWatch,
    Probe,
    TraceSample,
    Verifier,
    wait_correct,
)
from benchmarks.suite.expected import (
    Overlay,
    ServerView,
    expected_flows,
    flows_in_port,
    local_vlans,
    patch_port_names,
    port_zones,
    vlan_sources,
)
from benchmarks.suite.progress import Progress
from benchmarks.suite.usage import CpuSample, sample_pidfile
from benchmarks.suite.world import (
    HOST,
    INTEGRATION_BRIDGE,
    LOCAL_IP,
    TUNNEL_TYPE,
    VmPort,
    World,
)

PROBES = 12  # ports whose own flows are polled, besides the flow counts
TRACED_PORTS = 6
PROVISIONAL_OFPORT = 65000  # patch/tunnel ports before the agent made them: counts only
PROVISIONAL_VM_OFPORT = 30000  # VM ports not plugged yet (cold plug): counts only


class OfportArrivals:
    """When each Interface's ofport appeared, seen through an OVSDB monitor of our own (the
    agent sees the same update at the same moment)."""

    def __init__(self, connection: str) -> None:
        self.client = OVSDBClient(connection)
        self.seen: list[tuple[str, int, float]] = []  # (name, ofport, when), in arrival order
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.start(timeout=30.0)
        monitor = await self.client.monitor({"Interface": ("name", "ofport")})
        self._task = asyncio.create_task(self._pump(monitor), name="bench-ofports")

    async def _pump(self, monitor: Any) -> None:
        async for event in monitor:
            if event.kind is EventKind.DELETE:
                continue
            name, ofport = event.row["name"], event.row["ofport"]
            if isinstance(ofport, int) and ofport > 0:
                self.seen.append((str(name), ofport, time.monotonic()))

    async def new_ofport(
        self, name: str, old: int, since: float, within: float
    ) -> tuple[int, float]:
        """The first ofport other than ``old`` that ``name`` got after ``since``, and when."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._task is not None and self._task.done():
                raise RuntimeError(f"the ofport monitor stopped: {self._task.exception()!r}")
            for seen_name, ofport, at in self.seen:
                if at >= since and seen_name == name and ofport != old:
                    return ofport, at
            await asyncio.sleep(0.002)
        raise TimeoutError(f"{name}: no new ofport within {within} s")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.close()


class TagWatch:
    """Port.tag of every Port, kept current by an OVSDB monitor of our own (no polling of
    ovsdb-server, nothing asked of ovs-vswitchd)."""

    def __init__(self, connection: str) -> None:
        self.client = OVSDBClient(connection)
        self._monitor: Any = None

    async def start(self) -> None:
        await self.client.start(timeout=30.0)
        self._monitor = await self.client.monitor({"Port": ("name", "tag")}, emit_events=False)

    def tags(self) -> dict[str, int | None]:
        if self._monitor is None:
            return {}
        return {
            str(row["name"]): row["tag"] if isinstance(row["tag"], int) else None
            for row in self._monitor.rows("Port").values()
        }

    def untagged(self, names: Iterable[str]) -> list[str]:
        """The named ports without a local VLAN tag (none, or 4095: the dead VLAN)."""
        tags = self.tags()
        return [name for name in names if not _local_vlan(tags.get(name))]

    async def wait_all(
        self, names: Sequence[str], within: float, on_wait: Callable[[str], None]
    ) -> float | None:
        """Poll our cache until every named port has a local VLAN tag: the monotonic time it was
        first seen so; None when ``within`` passed first."""
        deadline = time.monotonic() + within
        while True:
            missing = len(self.untagged(names))
            now = time.monotonic()
            if not missing:
                return now
            if now > deadline:
                return None
            on_wait(f"flows correct: {missing} ports still without Port.tag")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()


def _local_vlan(tag: int | None) -> bool:
    return tag is not None and 1 <= tag <= 4094


@dataclass(frozen=True)
class Target:
    """Flow counts per bridge and probe ports' table-60 flow counts (ofport-independent)."""

    counts: dict[str, int]
    probes: list[tuple[VmPort, int]]


class Session:
    def __init__(
        self, world: World, progress: Progress, timeout: float, profile_dir: Path | None = None
    ) -> None:
        self.world = world
        self.profile_dir = profile_dir
        self.progress = progress
        self.timeout = timeout
        self.reference = OVSSandbox(Path(tempfile.mkdtemp(prefix="aovs-ref-", dir="/tmp")))
        self.server = ServerView.of(world.topology, world.vms)
        self.overlay = (
            Overlay(TUNNEL_TYPE, LOCAL_IP, world.remote_endpoints) if world.tunnelled else None
        )
        self.watch = FlowWatch(world.sandbox, world.bridges)
        self.verifier = Verifier(world.sandbox, self.reference)
        self.state_path = world.workdir / "state"
        self.agent: AgentProcess | None = None
        self.ofports: dict[str, int] = {}
        self.plugged: list[VmPort] = list(world.vms)  # the VM ports on the switch (all but in
        # the cold plug's world, which starts with none)
        self.switch_start: CpuSample | None = None  # set by a scenario that starts its own clock
        self.switch_mark: CpuSample | None = None  # ovs-vswitchd's CPU when the clock stopped
        self._runs = 0

    async def start(self, plug: bool = True) -> None:
        """The world up; with ``plug`` every VM port plugged (else none: see ``cold_plug``)."""
        await asyncio.to_thread(self.reference.start)
        await self.world.start()
        if plug:
            await self.world.plug_all()
            self.ofports = await self.world.wait_ofports(vm.tap for vm in self.world.vms)
        else:
            self.plugged = []
        await self.world.start_simulator()

    async def close(self) -> None:
        try:
            if self.agent is not None:
                await self.agent.stop()
            await self.watch.close()
            await self.world.close()
        finally:
            self.reference.remove()  # blocking, but sure to run even when cancelled

    # -- ovs-vswitchd's CPU -------------------------------------------------------------------
    def switch_cpu(self) -> CpuSample | None:
        return sample_pidfile(self.world.sandbox.directory / "ovs-vswitchd.pid")

    def mark_switch_cpu(self) -> None:
        """Called when the suite starts verifying: its own dumps are not the scenario's cost."""
        self.switch_mark = self.switch_cpu()

    # -- the agent ---------------------------------------------------------------------------
    def settings(self) -> AgentSettings:
        return AgentSettings(
            host=HOST,
            transport_url=self.world.transport_url,
            ovsdb_connection=self.world.sandbox.ovsdb_connection,
            state_path=self.state_path,
            tunnel_types=(TUNNEL_TYPE,) if self.overlay is not None else (),
            local_ip=LOCAL_IP if self.overlay is not None else None,
        )

    async def spawn_agent(self, name: str) -> AgentProcess:
        self._runs += 1
        agent = AgentProcess(self.settings(), self.world.workdir, f"agent-{self._runs}-{name}",
                             self.profile_dir)  # fmt: skip
        await agent.start()
        self.agent = agent
        return agent

    async def stop_agent(self) -> None:
        if self.agent is not None:
            await self.agent.stop()

    def alive(self) -> None:
        if self.agent is not None:
            self.agent.check_alive()

    # -- what the dataplane must be -----------------------------------------------------------
    def vms(self) -> Sequence[VmPort]:
        return self.plugged

    async def refresh_ofports(self) -> dict[str, int]:
        found = await self.world.interfaces()
        self.ofports = {name: port for name, port in found.items() if port is not None and port > 0}
        return self.ofports

    async def expectation(self) -> BridgeFlows:
        """The flows for the switch's CURRENT ofports and local VLANs (see ``local_vlans``);
        computed in a thread, so the simulator in this process keeps answering the agent."""
        ofports = await self.refresh_ofports()
        vlans = await self.local_vlans(ofports)
        return await asyncio.to_thread(
            expected_flows, self.server, self.vms(), ofports, vlans, self.overlay
        )

    async def local_vlans(self, ofports: dict[str, int] | None = None) -> dict[str, int]:
        """network id -> local VLAN: each port's Port.tag, and for a port the agent has not
        tagged yet (it writes Port.tag lazily, after the port forwards) the conntrack zone its
        table-60 flow loads into reg6 (the openvswitch firewall's zone IS the local VLAN).
        Either way every port of a network must agree and no two networks may share one."""
        tags = await self.world.port_tags()
        if all(_local_vlan(tags.get(vm.tap)) for vm in self.vms()):
            return local_vlans(self.vms(), tags)
        ofports = ofports if ofports is not None else await self.refresh_ofports()
        table = await self.verifier.dump(INTEGRATION_BRIDGE, table=tables.TRANSIENT_TABLE)
        sources = vlan_sources(self.vms(), tags, port_zones(table), ofports)
        return local_vlans(self.vms(), sources)

    async def target(self) -> Target:
        """What the cheap poll compares, computed BEFORE the event a scenario times (it costs
        CPU seconds at 1000 ports, which must not delay the agent or the simulator)."""
        ofports = self._provisional_ofports()
        provisional = await asyncio.to_thread(self.provisional, ofports)
        counts = {bridge: len(flows) for bridge, flows in provisional.items()}
        probes = [
            (vm, flows_in_port(provisional[INTEGRATION_BRIDGE], ofports[vm.tap],
                               tables.TRANSIENT_TABLE))
            for vm in spread(self.vms(), PROBES)
        ]  # fmt: skip
        return Target(counts, probes)

    def _provisional_ofports(self) -> dict[str, int]:
        ofports = dict(self.ofports)
        made_by_agent = list(patch_port_names(self.overlay))
        if self.overlay is not None:
            made_by_agent += sorted(self.overlay.tunnel_ports())
        for index, name in enumerate(made_by_agent):
            ofports.setdefault(name, PROVISIONAL_OFPORT + index)
        for vm in self.vms():
            ofports.setdefault(vm.tap, PROVISIONAL_VM_OFPORT + vm.index)
        return ofports

    def provisional(self, ofports: dict[str, int] | None = None) -> BridgeFlows:
        """Expected flows with made-up VLAN numbers (and patch ofports before they exist, VM
        ports' before they are plugged): right in number, which is all the cheap poll
        compares."""
        ofports = ofports if ofports is not None else self._provisional_ofports()
        vlans = local_vlans(self.vms(), {}, provisional=True)
        return expected_flows(self.server, self.vms(), ofports, vlans, self.overlay)

    def trace_samples(self) -> list[TraceSample]:
        samples = []
        for vm in spread(self.vms(), TRACED_PORTS):
            details = self.server.details[vm.iface_id]
            if details.network_type != "vlan" or details.segmentation_id is None:
                continue
            samples.append(TraceSample(vm, self.ofports[vm.tap],
                                       details.fixed_ips[0].ip_address,
                                       details.segmentation_id))  # fmt: skip
        return samples

    async def converge(
        self,
        target: Target,
        within: float | None = None,
        after_match: Callable[[], Awaitable[None]] | None = None,
        intervals: tuple[float, float] = (POLL_INTERVAL, COUNT_INTERVAL),
    ) -> Convergence:
        """Wait for the dataplane to be correct for the current ofports (see dataplane);
        ``after_match`` runs once the cheap poll matched, before the full check; ``intervals``
        between probe polls and between flow counts."""
        probes = self.probes(target)
        return await wait_correct(
            self.watch, self.verifier, target.counts, probes, self.expectation,
            within=within or self.timeout, samples=self.trace_samples(), alive=self.alive,
            on_wait=self.progress.update, on_match=self.mark_switch_cpu, after_match=after_match,
            poll_interval=intervals[0], count_interval=intervals[1],
        )  # fmt: skip

    def probes(self, target: Target) -> list[Probe]:
        return [
            Probe(INTEGRATION_BRIDGE, tables.TRANSIENT_TABLE, self.ofports[vm.tap], count)
            for vm, count in target.probes
        ]

    def switch_cpu_seconds(self) -> float | None:
        sample = self.switch_cpu()
        return None if sample is None else sample.cpu_seconds

    def watch_reported_up(self, since: int) -> asyncio.Task[float | None]:
        """Start watching, in the background, for every port reported up after record
        ``since``; the task's result is the monotonic time it was seen (None: not in time)."""
        return asyncio.create_task(self._reported_up(since, self.timeout), name="bench-reports")

    async def _reported_up(self, since: int, within: float) -> float | None:
        deadline = time.monotonic() + within
        wanted = {vm.iface_id for vm in self.vms()}
        reported: set[str] = set()
        while time.monotonic() < deadline:
            simulator = self.world.simulator
            if simulator is not None:
                reports = simulator.device_list_reports[since:]
                since += len(reports)
                reported.update(d for report in reports for d in report.devices_up)
                if wanted <= reported:
                    return time.monotonic()
            await asyncio.sleep(0.005)
        return None

    def up_reports(self) -> int:
        """How many update_device_list calls the simulator has recorded so far."""
        simulator = self.world.simulator
        return 0 if simulator is None else len(simulator.device_list_reports)


def spread(items: Sequence[VmPort], count: int) -> list[VmPort]:
    """``count`` items evenly spread over ``items``, first and last included (pure)."""
    if count >= len(items):
        return list(items)
    if count <= 1:
        return [items[-1]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(index * step)] for index in range(count)]
