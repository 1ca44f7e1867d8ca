"""The two baselines every suite figure is compared with, measured in the same run, same flows.

- The practical limit: ``ovs-ofctl -O OpenFlow13 --bundle add-flows`` of the final flow dump of
  each bridge into an empty bridge (the fastest way this OVS takes these flows; median of runs).
- The legacy way, as neutron's agent and firewall do it: per port, one ``ovs-vsctl set Port``
  (``tag`` and ``other_config``: net_uuid, network_type, physical_network, segmentation_id,
  tag) and ``ovs-ofctl --bundle add-flows`` of the port's flows in chunks of 100, sequentially;
  the flows that belong to no port once, in chunks of 100. ovs-vsctl's cost grows with the
  number of ports in OVSDB, so the bridge it runs on holds all N ports; with many ports a sample
  is timed and the per-port mean scaled to N (``extrapolated_from`` says so).

Both run in a reference OVS of their own (``OVSSandbox``), so they never disturb the agent.

- The plug limit (cold boot with the agent running): on a fresh OVS of its own holding the same
  bridges and patch/tunnel ports (same ofports), ONE ``ovs-vsctl`` transaction plugging the N
  VM ports WITH their tags (and their ofports, so the flows apply as dumped), then ``ovs-ofctl
  --bundle add-flows`` of each bridge's final dump; its wall time and ovs-vswitchd's CPU seconds
  (/proc utime + stime from before the transaction to after the last bundle), median of runs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aovs.sandbox import OVSSandbox
from benchmarks.suite.usage import cpu_between, sample_pidfile, settled
from benchmarks.suite.world import WorldError, run_tool, transaction, vsctl

CHUNK = 100  # neutron's firewall: flows per ovs-ofctl call
LEGACY_BRIDGE = "leg-int"


def chunks(lines: Sequence[str], size: int = CHUNK) -> list[list[str]]:
    return [list(lines[start : start + size]) for start in range(0, len(lines), size)]


async def _empty_bridge(reference: OVSSandbox, name: str) -> None:
    await vsctl(reference, "--may-exist", "add-br", name, "--", "set", "Bridge", name,
                "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13")  # fmt: skip
    await run_tool(reference, "ovs-ofctl", "-O", "OpenFlow13", "del-flows", name)


async def practical_limit(
    reference: OVSSandbox, dumps: Mapping[str, Sequence[str]], runs: int = 3
) -> float:
    """Median over ``runs`` of the summed ``--bundle add-flows`` time of every bridge's dump."""
    files = {}
    for bridge, lines in dumps.items():
        path = reference.directory / f"limit-{bridge}.flows"
        path.write_text("".join(line + "\n" for line in lines))
        files[bridge] = path
    totals = []
    for _ in range(runs):
        total = 0.0
        for bridge, path in files.items():
            scratch = f"lim-{bridge}"[:15]
            await _empty_bridge(reference, scratch)
            started = time.perf_counter()
            await run_tool(reference, "ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows",
                           scratch, str(path))  # fmt: skip
            total += time.perf_counter() - started
        totals.append(total)
    return statistics.median(totals)


@dataclass(frozen=True, slots=True)
class LegacyPort:
    """One port as neutron's agent wires it: its Port row settings and its flows (text)."""

    tap: str
    tag: int
    other_config: Mapping[str, str]
    flows: Sequence[str]


@dataclass(frozen=True)
class LegacyResult:
    seconds: float  # for all ports (extrapolated when ``extrapolated_from`` < ports)
    per_port_seconds: tuple[float, ...]  # the timed ports
    shared_seconds: float  # the flows of no port
    ports: int
    extrapolated_from: int

    @property
    def per_port_mean(self) -> float:
        return statistics.fmean(self.per_port_seconds)


def extrapolate(per_port: Sequence[float], ports: int, shared: float) -> float:
    """All ports' time from a sample's per-port mean (pure)."""
    if not per_port:
        raise ValueError("no port was timed")
    return statistics.fmean(per_port) * ports + shared


async def legacy_way(
    reference: OVSSandbox, ports: Sequence[LegacyPort], shared_flows: Sequence[str], sample: int
) -> LegacyResult:
    """Time neutron's per-port subprocesses for ``sample`` ports, on a bridge with all ports."""
    await _empty_bridge(reference, LEGACY_BRIDGE)
    plugged = [["--may-exist", "add-port", LEGACY_BRIDGE, p.tap, "--", "set", "Interface", p.tap,
                "type=dummy"] for p in ports]  # fmt: skip
    await vsctl(reference, *transaction(plugged), within=300)
    started = time.perf_counter()
    for chunk in chunks(shared_flows):
        await _add_flows(reference, chunk)
    shared = time.perf_counter() - started
    timed = []
    for port in ports[: max(1, sample)]:
        started = time.perf_counter()
        settings = [f"tag={port.tag}"] + [
            f"other_config:{key}={value}" for key, value in port.other_config.items()
        ]
        await vsctl(reference, "set", "Port", port.tap, *settings)
        for chunk in chunks(port.flows):
            await _add_flows(reference, chunk)
        timed.append(time.perf_counter() - started)
    return LegacyResult(
        seconds=extrapolate(timed, len(ports), shared),
        per_port_seconds=tuple(timed),
        shared_seconds=shared,
        ports=len(ports),
        extrapolated_from=len(timed),
    )


async def _add_flows(reference: OVSSandbox, lines: Sequence[str]) -> None:
    path = reference.directory / "legacy-chunk.flows"
    path.write_text("".join(line + "\n" for line in lines))
    await run_tool(reference, "ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows",
                   LEGACY_BRIDGE, str(path))  # fmt: skip


# ---- the plug limit: one transaction with the tags, then the bundles --------------------------


@dataclass(frozen=True)
class PlugLimitRun:
    seconds: float  # the transaction (ovs-vsctl waits for ovs-vswitchd) + every bundle
    vsctl_seconds: float
    bundle_seconds: float
    vswitchd_cpu_seconds: float
    vsctl_vswitchd_cpu_seconds: float  # of which the transaction's (the rest: the bundles')
    idle_vswitchd_cpu_per_second: float  # afterwards, nothing asked of it


@dataclass(frozen=True)
class PlugLimit:
    """The median of the runs, each figure on its own (``runs`` keeps them all)."""

    ports: int
    flows: int
    runs: tuple[PlugLimitRun, ...] = field(default_factory=tuple)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def vswitchd_cpu_seconds(self) -> float:
        return statistics.median(run.vswitchd_cpu_seconds for run in self.runs)

    def to_json(self) -> dict[str, object]:
        return {
            "ports": self.ports,
            "flows": self.flows,
            "seconds": round(self.seconds, 4),
            "vswitchd_cpu_seconds": round(self.vswitchd_cpu_seconds, 3),
            "runs": [
                {"seconds": round(run.seconds, 4), "vsctl_seconds": round(run.vsctl_seconds, 4),
                 "bundle_seconds": round(run.bundle_seconds, 4),
                 "vswitchd_cpu_seconds": round(run.vswitchd_cpu_seconds, 3),
                 "vsctl_vswitchd_cpu_seconds": round(run.vsctl_vswitchd_cpu_seconds, 3),
                 "idle_vswitchd_cpu_per_second": round(run.idle_vswitchd_cpu_per_second, 4)}
                for run in self.runs
            ],
        }  # fmt: skip


def flow_file_text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


async def plug_limit(
    setup: Sequence[list[str]],
    plug: Sequence[list[str]],
    dumps: Mapping[str, Sequence[str]],
    runs: int = 1,
    idle_seconds: float = 2.0,
) -> PlugLimit:
    """``runs`` times, in a fresh OVS each: ``setup`` (ovs-vsctl commands: the bridges and the
    ports that exist before the VMs, untimed), then timed: ``plug`` in ONE transaction and
    every bridge's ``dumps`` by ``--bundle add-flows``; checked (every flow is there)."""
    results = []
    for _ in range(max(1, runs)):
        sandbox = OVSSandbox(Path(tempfile.mkdtemp(prefix="aovs-lim-", dir="/tmp")))
        try:
            results.append(await _plug_limit_once(sandbox, setup, plug, dumps, idle_seconds))
        finally:
            await asyncio.to_thread(sandbox.remove)
    return PlugLimit(
        ports=len(plug), flows=sum(len(lines) for lines in dumps.values()), runs=tuple(results)
    )


async def _plug_limit_once(
    sandbox: OVSSandbox,
    setup: Sequence[list[str]],
    plug: Sequence[list[str]],
    dumps: Mapping[str, Sequence[str]],
    idle_seconds: float,
) -> PlugLimitRun:
    await asyncio.to_thread(sandbox.start)
    if setup:
        await vsctl(sandbox, *transaction(setup), within=300)
    files = {}
    for bridge, lines in dumps.items():
        path = sandbox.directory / f"limit-{bridge}.flows"
        path.write_text(flow_file_text(lines))
        files[bridge] = path
    pidfile = sandbox.directory / "ovs-vswitchd.pid"
    await asyncio.sleep(0.5)  # let the set-up's reconfiguration finish
    before = sample_pidfile(pidfile)
    started = time.perf_counter()
    await vsctl(sandbox, *transaction(plug), within=1200)
    plugged = time.perf_counter()
    middle = sample_pidfile(pidfile)
    for bridge, path in files.items():
        await run_tool(sandbox, "ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows",
                       bridge, str(path), within=1200)  # fmt: skip
    done = time.perf_counter()
    after = await settled(lambda: sample_pidfile(pidfile))  # as the cold boot's CPU window
    await asyncio.sleep(idle_seconds)
    idle = sample_pidfile(pidfile)
    cpu, restarted = cpu_between(before, after)
    vsctl_cpu, _ = cpu_between(before, middle)
    idle_cpu, _ = cpu_between(after, idle)
    if cpu is None or restarted:
        raise WorldError("the limit's ovs-vswitchd was not running throughout")
    for bridge, lines in dumps.items():
        out = await run_tool(sandbox, "ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge)
        count = aggregate_flow_count(out)
        if count != len(lines):
            raise WorldError(f"the limit's {bridge} holds {count} flows, not {len(lines)}")
    return PlugLimitRun(
        seconds=done - started,
        vsctl_seconds=plugged - started,
        bundle_seconds=done - plugged,
        vswitchd_cpu_seconds=cpu,
        vsctl_vswitchd_cpu_seconds=vsctl_cpu or 0.0,
        idle_vswitchd_cpu_per_second=(idle_cpu or 0.0) / idle_seconds if idle_seconds else 0.0,
    )


def aggregate_flow_count(text: str) -> int:
    """``flow_count=N`` of ``ovs-ofctl dump-aggregate`` output (pure)."""
    for token in text.replace(",", " ").split():
        if token.startswith("flow_count="):
            return int(token.split("=", 1)[1])
    raise ValueError(f"no flow_count in {text.strip()[:120]!r}")
