"""What the agent extensions (``[agent] extensions = qos,trunk``) cost, unused and used.

In ONE run, each on a world of its own (a private OVS, RabbitMQ vhost and the simulator, as
``benchmarks.suite``'s cold plug): the agent idle on a switch with no VM port, then ONE
ovs-vsctl transaction plugs N ports (``scenarios.cold_plug``: to every port's flows verified on
the switch), with

- ``off``: no extension; ``idle``: ``qos,trunk`` with no policy and no trunk (run alternately,
  ``--runs`` times each: the difference against the run-to-run spread);
- ``qos``: every port's ``qos_policy_id`` names one policy (bandwidth_limit egress +
  dscp_marking): per-port overhead = (qos - idle median) / N;
- ``trunks``: as ``idle``, then ONE transaction plugs ``--trunks`` trunk VMs (each its
  ``tbr-`` bridge with the VM's tap on it, as os-vif makes it) with ``--subports`` subports
  each: until every trunk port's flows are verified, every trunk port reported up and every
  trunk reported ACTIVE; per-trunk overhead = that step / trunks.

Verified in each: the full flow check of the suite (the dscp flows are in the expectation when
a policy applies: ``aovs.extensions.qos.dscp_flows``, the agent's specification), the
Interface policing columns, ``ofproto/trace`` of a VM's packet (DSCP rewritten or not), and for
trunks traces of tagged frames from a VM's tap reaching their subport's network.
``python -m benchmarks.bench_extensions [--ports 1000]`` writes
benchmarks/results/extensions.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aovs.dataplane import compose
from aovs.dataplane.compose import BridgeFlows
from aovs.extensions.qos import DEFAULT_BURST_RATE, dscp_flows
from aovs.extensions.trunk import (
    PARENT_PREFIX,
    SUBPORT_PREFIX,
    int_port_name,
    trunk_bridge_name,
)
from aovs.ovsdb import OVSDBClient
from aovs.ovsdb.rows import EventKind
from aovs.testing.cloud import CloudPort, CloudQosRule, SimulatedCloud
from benchmarks.suite import scenarios
from benchmarks.suite.__main__ import git_commit, machine
from benchmarks.suite.agent_process import AgentProcess, config_toml
from benchmarks.suite.dataplane import TraceSample
from benchmarks.suite.expected import ServerView, dataplane_state, local_vlans
from benchmarks.suite.progress import Progress
from benchmarks.suite.results import ScenarioResult
from benchmarks.suite.session import Session, spread
from benchmarks.suite.world import (
    INTEGRATION_BRIDGE,
    VmPort,
    World,
    appctl,
    transaction,
    vsctl,
    vsctl_table,
)

RESULTS = Path(__file__).resolve().parent / "results"
EXTENSIONS = ("qos", "trunk")
MAX_KBPS, DSCP_MARK = 10000, 26
QOS_RULES = (
    CloudQosRule(type="bandwidth_limit", direction="egress", max_kbps=MAX_KBPS),
    CloudQosRule(type="dscp_marking", dscp_mark=DSCP_MARK),
)
OUTSIDE_MAC = "fa:16:3e:99:99:99"
TRACED_TRUNKS = 3
TRUNK_WAIT = 120.0  # s for every trunk port reported up and every trunk ACTIVE, after the flows
METRICS = ("seconds", "cpu_seconds", "peak_rss_mb", "vswitchd_cpu_seconds", "flows", "flowmods",
           "policing_writes", "interface_writes", "port_writes")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    extensions: tuple[str, ...]
    qos: bool = False
    trunks: bool = False


OFF = Variant("off", ())
IDLE = Variant("idle", EXTENSIONS)
QOS = Variant("qos", EXTENSIONS, qos=True)
TRUNKS = Variant("trunks", EXTENSIONS, trunks=True)
VARIANTS = (OFF, IDLE, QOS, TRUNKS)


# ---- the pure parts --------------------------------------------------------------------------


def schedule(runs: int, loaded_runs: int = 1, only: Iterable[str] = ()) -> list[Variant]:
    """off and idle alternately ``runs`` times each (a drift of the machine hits both), then
    qos and trunks ``loaded_runs`` times each; ``only``: just the variants named."""
    order = [variant for _ in range(runs) for variant in (OFF, IDLE)]
    order += [QOS] * loaded_runs + [TRUNKS] * loaded_runs
    wanted = set(only)
    unknown = wanted - {variant.name for variant in VARIANTS}
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}: {[v.name for v in VARIANTS]}")
    return [variant for variant in order if not wanted or variant.name in wanted]


def agent_config(base: str, extensions: Sequence[str], metrics_bind: str | None) -> str:
    """The suite's agent configuration with ``extensions`` and ``metrics_bind`` added to its
    ``[agent]`` section (TOML)."""
    lines = base.splitlines()
    try:
        at = lines.index("[agent]") + 1
    except ValueError:
        raise ValueError("the agent configuration has no [agent] section") from None
    added = [f"extensions = {json.dumps(list(extensions))}"]
    if metrics_bind is not None:
        added.append(f"metrics_bind = {json.dumps(metrics_bind)}")
    return "\n".join(lines[:at] + added + lines[at:]) + "\n"


def metric_total(text: str, name: str) -> float:
    """The sum over every label set of the Prometheus sample ``name`` in ``text``."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$")
    for row in text.splitlines():
        found = pattern.match(row)
        if found is not None:
            total += float(found.group(1))
    return total


def trunk_ports(topology: SimulatedCloud, first_index: int) -> list[VmPort]:
    """The br-int side of every trunk's patch pairs as VM ports (the agent wires them as
    such): the parent's ``tpi-`` and each subport's ``spi-``, indices from ``first_index``."""
    by_id = {port.port_id: port for port in topology.ports}
    found: list[VmPort] = []
    for trunk in topology.trunks.values():
        members = [(PARENT_PREFIX, trunk.port_id)]
        members += [(SUBPORT_PREFIX, sub.port_id) for sub in trunk.sub_ports]
        for prefix, port_id in members:
            port = by_id[port_id]
            found.append(VmPort(first_index + len(found), port_id, int_port_name(prefix, port_id),
                                port.mac_address, port.network_id))  # fmt: skip
    return found


def trunk_vm_tap(parent_id: str) -> str:
    return f"tap{parent_id[:11]}"


def trunk_plug_args(trunk_id: str, parent_id: str, mac: str) -> list[list[str]]:
    """What os-vif does for a VM on a trunk: its trunk bridge (br-int's dummy datapath) with
    the VM's tap on it, carrying the parent port's ids."""
    bridge, tap = trunk_bridge_name(trunk_id), trunk_vm_tap(parent_id)
    return [
        ["--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=dummy"],
        ["--may-exist", "add-port", bridge, tap, "--", "set", "Interface", tap, "type=dummy",
         f"external-ids:iface-id={parent_id}", f"external-ids:attached-mac={mac}",
         "external-ids:iface-status=active", f"external-ids:vm-uuid=vm-{parent_id[:8]}"],
    ]  # fmt: skip


def outputs(actions: str) -> set[int]:
    """The datapath ports a trace's datapath actions output to (bare numbers only)."""
    return {int(n) for n in re.findall(r"(?:^|[,;\s])(\d+)(?=$|[,;\s])", actions)}


def marks_dscp(actions: str, mark: int) -> bool:
    """The datapath actions rewrite the IPv4 DSCP to ``mark`` (``tos`` is DSCP << 2)."""
    return re.search(rf"tos=0x{mark << 2:x}/0xfc", actions) is not None


def spread_of(samples: Sequence[float]) -> dict[str, float | int | None]:
    """median, min, max and max - min of one figure over runs (None when no run has it)."""
    if not samples:
        return {"median": None, "min": None, "max": None, "spread": None, "runs": 0}
    return {"median": round(statistics.median(samples), 4), "min": round(min(samples), 4),
            "max": round(max(samples), 4), "spread": round(max(samples) - min(samples), 4),
            "runs": len(samples)}  # fmt: skip


def figures(runs: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    return [float(run[key]) for run in runs if isinstance(run.get(key), int | float)]


def comparison(
    loaded: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]], units: int
) -> dict[str, dict[str, float | None]]:
    """Per metric: both medians, their difference, per unit (a port, a trunk), and the
    spread of the base runs (a difference within it is noise)."""
    table: dict[str, dict[str, float | None]] = {}
    for key in METRICS:
        mine, theirs = spread_of(figures(loaded, key)), spread_of(figures(base, key))
        a, b = mine["median"], theirs["median"]
        diff = None if a is None or b is None else float(a) - float(b)
        table[key] = {
            "median": a, "base_median": b,
            "difference": None if diff is None else round(diff, 4),
            "per_unit": None if diff is None or units <= 0 else round(diff / units, 6),
            "base_spread": theirs["spread"], "spread": mine["spread"],
        }  # fmt: skip
    return table


def within_noise(row: Mapping[str, float | None]) -> bool | None:
    """The difference is no larger than the larger run-to-run spread."""
    diff, spreads = row.get("difference"), (row.get("base_spread"), row.get("spread"))
    known = [s for s in spreads if s is not None]
    if diff is None or not known:
        return None
    return abs(diff) <= max(known)


# ---- the session: extensions in the agent's configuration, QoS in the expectation -----------


class ExtensionSession(Session):
    """The suite's session, with ``[agent] extensions``, the agent's ``/metrics`` served, and
    the dscp flows of the QoS policy in the expected flows of the ports that name it."""

    def __init__(self, world: World, progress: Progress, timeout: float, variant: Variant) -> None:
        super().__init__(world, progress, timeout)
        self.variant = variant
        self.metrics_port = free_port()
        self.qos_ports = {p.port_id for p in world.topology.ports if p.qos_policy_id}

    async def spawn_agent(self, name: str) -> AgentProcess:
        self._runs += 1
        agent = AgentProcess(self.settings(), self.world.workdir, f"agent-{self._runs}-{name}")
        bind = f"127.0.0.1:{self.metrics_port}"
        agent.config_path.write_text(
            agent_config(config_toml(self.settings()), self.variant.extensions, bind)
        )
        await agent.start()
        self.agent = agent
        return agent

    def _flows(self, ofports: Mapping[str, int], vlans: Mapping[str, int]) -> BridgeFlows:
        state = dataplane_state(self.server, self.vms(), ofports, vlans, self.overlay)
        if self.qos_ports:
            ports = {
                iface: replace(plan, extension_flows=dscp_flows(plan.ofport, DSCP_MARK))
                if iface in self.qos_ports else plan
                for iface, plan in state.ports.items()
            }  # fmt: skip
            state = replace(state, ports=ports)
        return compose.desired_flows(state)

    async def expectation(self) -> BridgeFlows:
        ofports = await self.refresh_ofports()
        vlans = await self.local_vlans(ofports)
        return await asyncio.to_thread(self._flows, ofports, vlans)

    def provisional(self, ofports: dict[str, int] | None = None) -> BridgeFlows:
        ofports = ofports if ofports is not None else self._provisional_ofports()
        return self._flows(ofports, local_vlans(self.vms(), {}, provisional=True))

    def trace_samples(self) -> list[TraceSample]:
        """The suite's traces, of VM taps only (never a trunk's patch port)."""
        plugged = self.plugged
        self.plugged = [vm for vm in plugged if vm.tap.startswith("tap")]
        try:
            return super().trace_samples()
        finally:
            self.plugged = plugged


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return str(reply.read().decode())

    return await asyncio.to_thread(get)


class OvsdbWrites:
    """Row changes of the columns the agent writes, seen by an OVSDB monitor of our own:
    Interface (policing, external_ids) and Port (tag, other_config) modifications, and the
    Interface rows inserted (by the plug command, and by the agent: the trunks' patch ports)."""

    COLUMNS: Mapping[str, tuple[str, ...]] = {
        "Interface": ("name", "ingress_policing_rate", "ingress_policing_burst", "external_ids"),
        "Port": ("name", "tag", "other_config"),
    }

    def __init__(self, connection: str) -> None:
        self.client = OVSDBClient(connection)
        self.counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.start(timeout=30.0)
        monitor = await self.client.monitor(self.COLUMNS)
        self._task = asyncio.create_task(self._pump(monitor), name="bench-ovsdb-writes")

    async def _pump(self, monitor: Any) -> None:
        async for event in monitor:
            if event.kind is EventKind.INSERT:
                self.counts[f"{event.table} inserted"] += 1
            elif event.kind is EventKind.MODIFY:
                self.counts[event.table] += 1
                if {"ingress_policing_rate", "ingress_policing_burst"} & event.changed:
                    self.counts["policing"] += 1

    def mark(self) -> Counter[str]:
        return Counter(self.counts)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.close()


# ---- one run ---------------------------------------------------------------------------------


@dataclass
class RunContext:
    args: argparse.Namespace
    progress: Progress
    topology: SimulatedCloud  # the trunks (unplugged unless the variant plugs them) included
    qos_topology: SimulatedCloud
    runs: list[dict[str, Any]] = field(default_factory=list)


def topologies(ports: int, trunks: int, subports: int) -> tuple[SimulatedCloud, SimulatedCloud]:
    """The world every variant shares (vlan networks; the trunks' ports, plugged or not, are
    members of the security groups in every variant), and the same with the QoS policy on
    every VM port (not on the trunks' ports)."""
    base = SimulatedCloud.generate(ports, network_types=("vlan",), security_groups=10,
                                   tunnels=0, physical_network="physnet1")  # fmt: skip
    with_qos, _ = base.with_qos_policy(QOS_RULES)
    return base.with_trunks(trunks, subports), with_qos.with_trunks(trunks, subports)


async def one_run(ctx: RunContext, variant: Variant, number: int) -> dict[str, Any]:
    args, progress = ctx.args, ctx.progress
    world = World(args.ports, network_types=("vlan",))
    world.topology = ctx.qos_topology if variant.qos else ctx.topology
    session = ExtensionSession(world, progress, args.timeout, variant)
    record: dict[str, Any] = {"variant": variant.name, "run": number}
    progress.begin(f"{variant.name} #{number}: agent idle on a switch with no port")
    writes = OvsdbWrites(world.sandbox.ovsdb_connection)
    try:
        await session.start(plug=False)
        await session.watch.start()
        await scenarios.idle_agent(session)
        await writes.start()
        progress.finish("agent idle")
        progress.begin(f"{variant.name} #{number}: cold plug of {args.ports} ports")
        before_metrics = await scrape(session.metrics_port)
        before_writes = writes.mark()
        switch_before = session.switch_cpu()
        calls_before = Counter(world.simulator.calls if world.simulator is not None else {})
        result = await scenarios.cold_plug(session)
        record.update(cold_plug_figures(result, session, switch_before))
        await asyncio.sleep(1.0)  # the agent's Interface writes follow its bundles
        record.update(await agent_counts(session, before_metrics, writes, before_writes))
        record["server_calls"] = server_calls(session, calls_before)
        record["verified"] = await verify_plugged(session, variant)
        progress.finish(f"{record['seconds']:.3f} s, agent CPU {record['cpu_seconds']:.2f} s")
        if variant.trunks:
            progress.begin(f"trunks #{number}: {len(ctx.topology.trunks)} trunk VMs plugged")
            record["trunk_plug"] = await trunk_plug(session, writes)
            progress.finish(f"{record['trunk_plug']['seconds']:.3f} s")
    except Exception as exc:
        progress.note(f"{variant.name} #{number}: FAILED: {type(exc).__name__}: {exc}")
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        progress.finish("failed")
    finally:
        await writes.close()
        await session.close()
    return record


def cold_plug_figures(
    result: ScenarioResult, session: Session, switch_before: Any
) -> dict[str, Any]:
    start = session.switch_start or switch_before
    end = session.switch_mark or session.switch_cpu()
    vswitchd = None
    if start is not None and end is not None:
        vswitchd = round(end.cpu_seconds - start.cpu_seconds, 3)
    return {
        "seconds": result.seconds,
        "all_reported_up_seconds": result.details.get("all_reported_up_seconds"),
        "cpu_seconds": result.cpu_seconds,
        "peak_rss_mb": result.peak_rss_mb,
        "vswitchd_cpu_seconds": vswitchd,
        "dataplane_verified": result.details.get("verified"),
        "agent_errors": result.details.get("agent_errors", []),
    }


def server_calls(session: Session, before: Counter[str]) -> dict[str, int]:
    """The calls the simulator answered since ``before`` (pulls, trunk RPCs, details...)."""
    now = Counter(session.world.simulator.calls if session.world.simulator is not None else {})
    return {method: count for method, count in sorted((now - before).items()) if count}


async def agent_counts(
    session: ExtensionSession, before_metrics: str, writes: OvsdbWrites, before: Counter[str]
) -> dict[str, Any]:
    after = await scrape(session.metrics_port)
    flows = sum([len(await session.verifier.dump(b)) for b in session.world.bridges])
    done = writes.mark()
    usage = session.agent.usage() if session.agent is not None else None
    return {
        "rss_mb": None if usage is None else round(usage.rss_mb, 1),
        "flows": flows,
        "flowmods": int(metric_total(after, "aovs_bundle_flowmods_sum")
                        - metric_total(before_metrics, "aovs_bundle_flowmods_sum")),
        "interface_writes": done["Interface"] - before["Interface"],
        "interfaces_inserted": done["Interface inserted"] - before["Interface inserted"],
        "policing_writes": done["policing"] - before["policing"],
        "port_writes": done["Port"] - before["Port"],
        "extension_problem_ports": metric_total(after, "aovs_extension_problem_ports"),
    }  # fmt: skip


async def verify_plugged(session: ExtensionSession, variant: Variant) -> dict[str, Any]:
    """Beyond the suite's flow check: every VM port's policing columns (set with a policy,
    untouched without), and a traced IPv4 packet of a few ports (DSCP rewritten or not)."""
    columns = "--columns=name,ingress_policing_rate,ingress_policing_burst"
    listed = await vsctl(session.world.sandbox, "--format=json", columns, "list", "Interface")
    rows = vsctl_table(listed)
    by_name = {str(row["name"]): row for row in rows}
    want = (MAX_KBPS, int(MAX_KBPS * DEFAULT_BURST_RATE)) if variant.qos else (0, 0)
    wrong = [vm.tap for vm in session.world.vms
             if (by_name[vm.tap]["ingress_policing_rate"],
                 by_name[vm.tap]["ingress_policing_burst"]) != want]  # fmt: skip
    traces = []
    for vm in spread(session.world.vms, 4):
        port = next(p for p in session.world.topology.ports if p.port_id == vm.iface_id)
        ofport = session.ofports[vm.tap]
        packet = (f"in_port={ofport},dl_src={vm.mac},dl_dst={OUTSIDE_MAC},udp,"
                  f"nw_src={port.fixed_ips[0].ip_address},nw_dst=203.0.113.9,nw_ttl=64,"
                  "udp_dst=53")  # fmt: skip
        out = await appctl(session.world.sandbox, "ofproto/trace", INTEGRATION_BRIDGE, packet,
                           "--ct-next", "trk,new")  # fmt: skip
        actions = " ; ".join(re.findall(r"^Datapath actions: (.*)$", out, re.M))
        traces.append({"port": vm.tap, "dscp_marked": marks_dscp(actions, DSCP_MARK),
                       "forwarded": "push_vlan" in actions})  # fmt: skip
    ok = not wrong and all(t["dscp_marked"] == variant.qos and t["forwarded"] for t in traces)
    if not ok:
        raise scenarios.ScenarioFailed(
            f"{variant.name}: policing wrong on {len(wrong)} ports ({wrong[:3]}), traces {traces}"
        )
    return {"policing": {"ports": len(session.world.vms), "rate_burst": list(want)},
            "dscp_traces": traces}  # fmt: skip


# ---- trunks ----------------------------------------------------------------------------------


async def trunk_plug(session: ExtensionSession, writes: OvsdbWrites) -> dict[str, Any]:
    """Every trunk VM plugged in ONE transaction, the agent running with the N VM ports: to
    every trunk port's flows verified, reported up, every trunk ACTIVE."""
    world, topology = session.world, session.world.topology
    simulator = world.simulator
    assert simulator is not None and session.agent is not None
    agent = session.agent
    trunk_vms = trunk_ports(topology, len(world.vms))
    session.plugged = [*world.vms, *trunk_vms]
    session.server = await asyncio.to_thread(ServerView.of, topology, session.plugged)
    target = await session.target()
    by_id = {port.port_id: port for port in topology.ports}
    commands = [c for trunk_id, trunk in topology.trunks.items()
                for c in trunk_plug_args(trunk_id, trunk.port_id,
                                         by_id[trunk.port_id].mac_address)]  # fmt: skip
    agent.reset_peak()
    usage = agent.usage()
    cpu_before = 0.0 if usage is None else usage.cpu_seconds
    metrics_before = await scrape(session.metrics_port)
    writes_before = writes.mark()
    flows_before = sum([len(await session.verifier.dump(b)) for b in world.bridges])
    since = len(simulator.device_list_reports)
    statuses_since = len(simulator.trunk_status_reports)
    calls_before = Counter(simulator.calls)
    switch_before = session.switch_cpu()
    started = time.monotonic()
    await vsctl(world.sandbox, *transaction(commands), within=600)
    command_done = time.monotonic()
    wanted = {vm.iface_id for vm in trunk_vms}
    # the agent makes the patch ports: the probes need their ofports
    session.ofports = await world.wait_ofports((vm.tap for vm in session.plugged),
                                               within=session.timeout)  # fmt: skip
    convergence = await session.converge(target)
    if convergence.matched_at is None:
        raise scenarios.ScenarioFailed(f"trunk ports not correct: {convergence.verdict.problem}")
    switch_after = session.switch_mark
    reported_at = active_at = None
    deadline = time.monotonic() + TRUNK_WAIT
    while time.monotonic() < deadline and (reported_at is None or active_at is None):
        reports = simulator.device_list_reports[since:]
        if reported_at is None and wanted <= {d for r in reports for d in r.devices_up}:
            reported_at = time.monotonic()
        active = {t for t, s in simulator.trunk_status_reports[statuses_since:] if s == "ACTIVE"}
        if active_at is None and active >= set(topology.trunks):
            active_at = time.monotonic()
        session.progress.update("waiting for trunk ports reported up and trunks ACTIVE")
        await asyncio.sleep(0.01)
    if reported_at is None or active_at is None:
        raise scenarios.ScenarioFailed(
            f"trunks: reported up {reported_at is not None}, all ACTIVE {active_at is not None}"
        )
    usage = agent.usage()
    await asyncio.sleep(1.0)
    counts = await agent_counts(session, metrics_before, writes, writes_before)
    trunks = len(topology.trunks)
    vswitchd = None
    if switch_before is not None and switch_after is not None:
        vswitchd = round(switch_after.cpu_seconds - switch_before.cpu_seconds, 3)
    figures_now = {
        "seconds": round(max(convergence.matched_at, reported_at, active_at) - started, 4),
        "dataplane_correct_seconds": round(convergence.matched_at - started, 4),
        "all_reported_up_seconds": round(reported_at - started, 4),
        "all_active_seconds": round(active_at - started, 4),
        "ovs_vsctl_seconds": round(command_done - started, 4),
        "cpu_seconds": None if usage is None else round(usage.cpu_seconds - cpu_before, 3),
        "peak_rss_mb": None if usage is None else usage.peak_rss_mb,
        "vswitchd_cpu_seconds": vswitchd,
        "flows_added": counts["flows"] - flows_before,
        "flowmods": counts["flowmods"],
        "interface_writes": counts["interface_writes"],
        "interfaces_inserted": counts["interfaces_inserted"],
        "port_writes": counts["port_writes"],
        "rss_mb": counts["rss_mb"],
        "trunks": trunks,
        "trunk_ports": len(trunk_vms),
        "server_calls": server_calls(session, calls_before),
        "verified": convergence.verdict.to_json(),
        "trunk_traces": await trunk_traces(session),
    }
    figures_now["per_trunk"] = {
        key: None if figures_now.get(key) is None else round(figures_now[key] / trunks, 5)
        for key in ("seconds", "cpu_seconds", "vswitchd_cpu_seconds", "flows_added", "flowmods",
                    "interface_writes", "interfaces_inserted", "port_writes")
    }  # fmt: skip
    return figures_now


async def trunk_traces(session: ExtensionSession) -> dict[str, Any]:
    """For a few trunks, ``ofproto/trace`` on the trunk bridge of a tcp/22 frame the VM sends
    to a VM port of the network it means: untagged to one on the parent's network, tagged with
    each subport's VLAN to one on that subport's network: each delivered to that VM's tap; a
    tagged frame addressed to a VM of the parent's network (another network) is not."""
    world, topology = session.world, session.world.topology
    by_id = {port.port_id: port for port in topology.ports}
    interfaces = await world.interfaces()
    datapath = await session.verifier.datapath_ports()
    vm_of_network: dict[str, VmPort] = {}
    for vm in world.vms:
        vm_of_network.setdefault(vm.network_id, vm)
    checked, failures = 0, []

    async def trace(bridge: str, tap: str, vlan: int | None, src: CloudPort, dst: VmPort) -> str:
        tag = "" if vlan is None else f"dl_vlan={vlan},"
        dst_ip = by_id[dst.iface_id].fixed_ips[0].ip_address
        packet = (f"in_port={interfaces[tap]},{tag}dl_src={src.mac_address},dl_dst={dst.mac},"
                  f"tcp,nw_src={src.fixed_ips[0].ip_address},nw_dst={dst_ip},nw_ttl=64,"
                  "tp_dst=22")  # fmt: skip
        out = await appctl(world.sandbox, "ofproto/trace", bridge, packet, "--ct-next", "trk,new")
        return " ; ".join(re.findall(r"^Datapath actions: (.*)$", out, re.M))

    trunks = list(topology.trunks.items())
    for trunk_id, trunk in [trunks[i] for i in sorted({0, len(trunks) // 2, len(trunks) - 1})]:
        bridge, tap = trunk_bridge_name(trunk_id), trunk_vm_tap(trunk.port_id)
        parent = by_id[trunk.port_id]
        parent_vm = vm_of_network[parent.network_id]
        cases: list[tuple[int | None, CloudPort]] = [(None, parent)]
        cases += [(sub.segmentation_id, by_id[sub.port_id]) for sub in trunk.sub_ports]
        for vlan, port in cases:
            target = vm_of_network[port.network_id]
            checked += 1
            actions = await trace(bridge, tap, vlan, port, target)
            if datapath[target.tap] not in outputs(actions):
                failures.append(f"{bridge} vlan {vlan} to {target.tap}: {actions[:160]}")
            if vlan is not None and port.network_id != parent.network_id:
                checked += 1
                actions = await trace(bridge, tap, vlan, port, parent_vm)
                if datapath[parent_vm.tap] in outputs(actions):
                    failures.append(f"{bridge} vlan {vlan} reached the parent's network")
    if failures:
        raise scenarios.ScenarioFailed(f"trunk traces wrong: {failures[:3]}")
    return {"checked": checked, "failed": 0}


# ---- the document ----------------------------------------------------------------------------


def summarise(runs: Sequence[Mapping[str, Any]], ports: int) -> dict[str, Any]:
    """The comparisons the issue asks for, from the runs that completed."""
    good = [r for r in runs if "error" not in r]
    of = {name: [r for r in good if r["variant"] == name] for name in ("off", "idle", "qos",
                                                                          "trunks")}  # fmt: skip
    unused = comparison(of["idle"], of["off"], 1)
    summary: dict[str, Any] = {
        "unused": {key: {**row, "within_noise": within_noise(row)} for key, row in unused.items()},
        "qos_per_port": comparison(of["qos"], of["idle"], ports),
    }
    plugs = [r["trunk_plug"] for r in of["trunks"] if "trunk_plug" in r]
    if plugs:
        summary["trunk_plug"] = {key: spread_of(figures(plugs, key)) for key in
                                 ("seconds", "cpu_seconds", "peak_rss_mb", "vswitchd_cpu_seconds",
                                  "flows_added", "flowmods", "interface_writes",
                                  "interfaces_inserted", "port_writes")}  # fmt: skip
        summary["per_trunk"] = plugs[-1]["per_trunk"]
    return summary


def render(document: Mapping[str, Any]) -> str:
    """extensions.md: the runs and the comparisons."""
    m = document["machine"]
    out = [f"# Agent extensions: cost unused and used ({document['ports']} ports)", "",
           f"git {document['git_commit']}, {m['cpus']} CPUs ({m['model']}), {m['ovs']}, "
           f"load {m['loadavg']} at the start, {m.get('loadavg_end', '?')} at the end.", "",
           "| variant | run | cold plug s | agent CPU s | peak RSS MB | vswitchd CPU s | flows | "
           "FlowMods | Interface writes | Port writes | verified |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in document["runs"]:
        if "error" in run:
            out.append(f"| {run['variant']} | {run['run']} | FAILED: {run['error'][:120]} |"
                       + " |" * 8)  # fmt: skip
            continue
        ok = bool(run.get("dataplane_verified", {}).get("ok")) and "verified" in run
        out.append("| " + " | ".join(str(x) for x in (
            run["variant"], run["run"], _f(run["seconds"]), _f(run["cpu_seconds"]),
            _f(run["peak_rss_mb"], 1), _f(run["vswitchd_cpu_seconds"]), run["flows"],
            run["flowmods"], run["interface_writes"], run["port_writes"],
            "yes" if ok else "NO")) + " |")  # fmt: skip
    summary = document["summary"]
    out += ["", "## Unused: `qos,trunk` on, no policy, no trunk (idle) vs off", "",
            "| figure | idle median | off median | difference | spread idle / off | within noise |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for key, row in summary["unused"].items():
        out.append(f"| {key} | {_f(row['median'])} | {_f(row['base_median'])} | "
                   f"{_f(row['difference'])} | {_f(row['spread'])} / {_f(row['base_spread'])} | "
                   f"{row['within_noise']} |")  # fmt: skip
    out += ["", "## A QoS policy on every port (bandwidth_limit egress + dscp_marking)", "",
            "| figure | qos | idle median | per port |", "|---|---|---|---|"]  # fmt: skip
    for key, row in summary["qos_per_port"].items():
        out.append(f"| {key} | {_f(row['median'])} | {_f(row['base_median'])} | "
                   f"{_f(row['per_unit'], 6)} |")  # fmt: skip
    if "per_trunk" in summary:
        out += ["", f"## {document['trunks']} trunks with {document['subports']} subports, "
                "plugged with the agent running", "",
                "| figure | all trunks (median) | per trunk |", "|---|---|---|"]  # fmt: skip
        for key, row in summary["trunk_plug"].items():
            per = summary["per_trunk"].get(key)
            out.append(f"| {key} | {_f(row['median'])} | {_f(per, 5)} |")
    return "\n".join(out) + "\n"


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    order = schedule(args.runs, args.loaded_runs, args.only)
    progress = Progress(len(order) * 2 + sum(1 for variant in order if variant.trunks))
    topology, qos_topology = topologies(args.ports, args.trunks, args.subports)
    ctx = RunContext(args, progress, topology, qos_topology)
    document: dict[str, Any] = {
        "benchmark": "extensions",
        "ports": args.ports, "trunks": args.trunks, "subports": args.subports,
        "qos_rules": [rule.model_dump(exclude_none=True) for rule in QOS_RULES],
        "machine": machine(), "git_commit": git_commit(),
        "order": [variant.name for variant in order],
    }  # fmt: skip
    counters: Counter[str] = Counter()
    for variant in order:
        counters[variant.name] += 1
        ctx.runs.append(await one_run(ctx, variant, counters[variant.name]))
    document["machine"]["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    document["runs"] = ctx.runs
    document["summary"] = summarise(ctx.runs, args.ports)
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_extensions",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs of off and idle, alternating")
    parser.add_argument("--loaded-runs", type=int, default=1, help="runs of qos and trunks")
    parser.add_argument("--trunks", type=int, default=100)
    parser.add_argument("--subports", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0, help="per cold plug, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="extensions")
    parser.add_argument(
        "--only",
        type=lambda text: tuple(text.split(",")),
        default=(),
        help="variants to run, e.g. qos,trunks (default: all)",
    )
    args = parser.parse_args(argv)
    if args.ports < 2 or args.runs < 1 or args.loaded_runs < 1:
        parser.error("--ports >= 2, --runs >= 1, --loaded-runs >= 1")
    if not 1 <= args.subports <= 4094 - 100:
        parser.error("--subports must be 1..3994")
    try:
        schedule(1, 1, args.only)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    document = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out / f"{args.stem}.md").write_text(render(document))
    print(f"wrote {args.out / args.stem}.json and .md", file=sys.stderr)
    return 1 if any("error" in r for r in document["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
