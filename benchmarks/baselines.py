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
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aovs.sandbox import OVSSandbox
from benchmarks.suite.world import run_tool, transaction, vsctl

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
