"""The scenarios, each a function of a Session returning a ScenarioResult (baselines apart).

Run in this order on one world, each leaving a correct dataplane for the next: cold boot,
agent restart, OVS restart, reboot storm, single reboots, host reboot with the server down
(last: it stops the simulator). Times are ``time.monotonic()`` in this process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from aovs.pipelines import tables
from benchmarks.suite.agent_process import AgentProcess, phase_timeline
from benchmarks.suite.dataplane import (
    Convergence,
    FlowWatch,
    Probe,
    Verdict,
    cold_boot_intervals,
    flows_younger_than,
)
from benchmarks.suite.expected import flows_in_port
from benchmarks.suite.results import ScenarioResult, distribution
from benchmarks.suite.session import OfportArrivals, Session, TagWatch, Target
from benchmarks.suite.stream import PacketStream, uplink_tx
from benchmarks.suite.usage import cpu_between, settled
from benchmarks.suite.world import (
    INTEGRATION_BRIDGE,
    replug_args,
    transaction,
    vsctl,
)

SNAPSHOT_FILE = "snapshot.json"
TAG_WAIT = 60.0  # seconds the agent gets, after the flows, to write every port's Port.tag


class ScenarioFailed(RuntimeError):
    """A scenario could not measure what it is for; the message says what was seen."""


def _usage(agent: AgentProcess, result: ScenarioResult, cpu_before: float = 0.0) -> None:
    usage = agent.usage()
    if usage is not None:
        result.cpu_seconds = usage.cpu_seconds - cpu_before
        result.peak_rss_mb = usage.peak_rss_mb


def _converged(result: ScenarioResult, convergence: Convergence, since: float) -> float:
    result.details["verified"] = convergence.verdict.to_json()
    result.details["full_checks"] = convergence.full_checks
    if convergence.problems:
        result.details["failed_checks"] = convergence.problems
    if convergence.matched_at is None:
        raise ScenarioFailed(
            f"{result.name}: dataplane not correct in time: {convergence.verdict.problem}"
        )
    return convergence.matched_at - since


async def _steady(session: Session, result: ScenarioResult) -> tuple[AgentProcess, float]:
    """The running agent with its peak RSS reset; its CPU seconds so far. When an earlier
    scenario left no agent running (it crashed), a fresh one is started and awaited, untimed,
    and the result says so."""
    agent = session.agent
    if agent is None or not agent.alive:
        session.progress.update("no agent running: starting one (untimed)")
        target = await session.target()
        agent = await session.spawn_agent("recovery")
        recovered = await session.converge(target)
        result.details["agent_started_by_suite_first"] = recovered.matched_at is not None
        if recovered.matched_at is None:
            raise ScenarioFailed(
                f"no agent reached a correct dataplane: {recovered.verdict.problem}"
            )
    agent.reset_peak()
    usage = agent.usage()
    return agent, 0.0 if usage is None else usage.cpu_seconds


async def _full_check(session: Session) -> Verdict:
    """The full check and the traces, once, at the end of a scenario timed otherwise."""
    session.mark_switch_cpu()
    verdict = await session.verifier.check(await session.expectation())
    if verdict.ok:
        verdict.traces = await session.verifier.traces(session.trace_samples())
        if verdict.traces["failed"]:
            verdict.ok = False
            verdict.problem = f"{verdict.traces['failed']} trace verdicts wrong"
    return verdict


async def _wait_snapshot(session: Session, within: float = 10.0) -> bool:
    path = session.state_path / SNAPSHOT_FILE
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            await asyncio.sleep(0.5)  # the debounced writer may still be writing a newer one
            return True
        await asyncio.sleep(0.05)
    return False


def _tags_then_mark(
    session: Session, tags: TagWatch, result: ScenarioResult, since: float
) -> Callable[[], Awaitable[None]]:
    """After the flows matched: wait until every plugged port carries its Port.tag (the agent
    may write them lazily, ``[ovs] port_metadata_delay`` after the ports forward, and each such
    write costs ovs-vswitchd a reconfiguration of every port), then sample ovs-vswitchd's CPU,
    so that a cold boot's ``vswitchd_cpu_seconds`` includes those writes. The wait is reported
    apart (``tag_wait_seconds``), never in the scenario's time."""

    async def wait() -> None:
        matched = time.monotonic()
        at_match = session.switch_mark  # sampled by the match itself
        taps = [vm.tap for vm in session.vms()]
        # with no port_metadata_delay the agent writes neutron's Port rows only when it stops:
        # nothing to wait for
        lazy = session.settings().port_metadata_delay is not None
        done = await tags.wait_all(taps, TAG_WAIT, session.progress.update) if lazy else None
        # ovs-vswitchd learns of the last write when our monitor does and then reconfigures:
        # the CPU sample is taken once it has gone quiet again
        session.progress.update("waiting for ovs-vswitchd to settle")
        session.switch_mark = await settled(session.switch_cpu)
        cpu, _ = cpu_between(at_match, session.switch_mark)
        result.details["vswitchd_cpu_after_flows_seconds"] = None if cpu is None else round(cpu, 3)
        if "tags_written_seconds" in result.details:
            return  # a second match (the first full check failed): keep the first figures
        if not lazy:
            result.details["tags_written_seconds"] = None
            result.details["tag_wait_seconds"] = 0.0
            result.details["vswitchd_cpu_note"] = "Port rows written when the agent stops"
        elif done is None:
            result.details["tags_written_seconds"] = None
            result.details["ports_without_tag"] = len(tags.untagged(taps))
            result.details["tag_wait_seconds"] = round(time.monotonic() - matched, 4)
            result.details["vswitchd_cpu_note"] = (
                f"not every port had its Port.tag {TAG_WAIT:g} s after the flows: CPU until then"
            )
        else:
            result.details["tags_written_seconds"] = round(done - since, 4)
            result.details["tag_wait_seconds"] = round(max(0.0, done - matched), 4)

    return wait


async def _reports_first(reports: asyncio.Task[float | None], within: float) -> None:
    """Ask ovs-vswitchd nothing until the agent has reported every port up (the simulator
    sees it, not the switch; a port is reported only once its flows are committed): probes
    before that are wakeups of ovs-vswitchd the limit run does not pay, and at 5000 ports
    they were ~11% of a cold boot's vswitchd CPU. The verification starts then (a port that is
    never reported still gets verified, once ``within`` has passed)."""
    await asyncio.wait({reports}, timeout=within)


# ---- 1. cold boot ---------------------------------------------------------------------------


async def cold_boot(session: Session) -> ScenarioResult:
    """OVS up with the VM ports, an agent with no local state, the server answering: to every
    port's flows verified on the switch AND every port reported up. ovs-vswitchd's CPU runs
    until every port also has its Port.tag (see ``_tags_then_mark``)."""
    result = ScenarioResult("cold_boot")
    target = await session.target()
    tags = TagWatch(session.world.sandbox.ovsdb_connection)
    await tags.start()
    try:
        # watched from before the spawn: the time is when the last report arrived, not when
        # the suite, done verifying the flows, got round to looking
        reports = session.watch_reported_up(session.up_reports())
        polls = _Polls(session.watch)
        session.switch_start = session.switch_cpu()
        agent = await session.spawn_agent("cold-boot")
        waiting = _tags_then_mark(session, tags, result, agent.spawned_at)
        await _reports_first(reports, session.timeout)
        intervals = cold_boot_intervals(len(session.vms()))
        convergence = await session.converge(target, after_match=waiting, intervals=intervals)
        correct = _converged(result, convergence, agent.spawned_at)
        polls.stop()
        reported = await reports
    finally:
        await tags.close()
    await polls.estimate(session, target, result, intervals)
    if reported is None:
        raise ScenarioFailed("cold boot: not every port was reported up")
    result.seconds = max(correct, reported - agent.spawned_at)
    result.details.update(
        dataplane_correct_seconds=round(correct, 4),
        all_reported_up_seconds=round(reported - agent.spawned_at, 4),
    )
    _log_figures(agent, result)
    _usage(agent, result)
    return result


# ---- 1b. cold boot with the agent running ---------------------------------------------------


def polling_estimate(
    polls: tuple[int, int],
    intervals: tuple[float, float],
    cost: tuple[float, float] | None,
) -> dict[str, float | int | None]:
    """The suite's own OpenFlow polling during a scenario and what it cost ovs-vswitchd, at
    most (every count round taken as complete), from costs measured on the converged switch
    (pure). It is part of ``vswitchd_cpu_seconds``; the limit run has none."""
    probes, rounds = polls
    estimate = None if cost is None else probes * cost[0] + rounds * cost[1]
    return {
        "probe_requests": probes,
        "count_rounds": rounds,
        "poll_interval_seconds": intervals[0],
        "count_interval_seconds": intervals[1],
        "vswitchd_cpu_per_probe_ms": None if cost is None else round(cost[0] * 1e3, 4),
        "vswitchd_cpu_per_count_round_ms": None if cost is None else round(cost[1] * 1e3, 2),
        "vswitchd_cpu_seconds_at_most": None if estimate is None else round(estimate, 3),
    }


class _Polls:
    """The suite's OpenFlow polls from now until ``stop`` (the scenario's CPU window)."""

    def __init__(self, watch: FlowWatch) -> None:
        self.watch = watch
        self.since = (watch.probe_requests, watch.count_rounds)
        self.polls = (0, 0)

    def stop(self) -> None:
        self.polls = (self.watch.probe_requests - self.since[0],
                      self.watch.count_rounds - self.since[1])  # fmt: skip

    async def estimate(
        self,
        session: Session,
        target: Target,
        result: ScenarioResult,
        intervals: tuple[float, float],
    ) -> None:
        """Their cost to ovs-vswitchd, measured now on the converged switch, in the result."""
        cost = await self.watch.polling_cost(target.counts, session.probes(target),
                                             session.switch_cpu_seconds)  # fmt: skip
        result.details["suite_polling"] = polling_estimate(self.polls, intervals, cost)


async def idle_agent(session: Session) -> None:
    """Untimed set-up of ``cold_plug``: an agent started on the switch with no VM port, until
    its dataplane (bridges, patch and tunnel ports, base flows) is correct, then left idle."""
    if session.vms():
        raise ScenarioFailed("cold plug: the world must start with no VM port plugged")
    target = await session.target()
    await session.spawn_agent("cold-plug")
    ready = await session.converge(target)
    if ready.matched_at is None:
        raise ScenarioFailed(f"the idle agent's dataplane is not correct: {ready.verdict.problem}")
    await asyncio.sleep(1.0)  # idle: its start-up reports and timers done


async def cold_plug(session: Session) -> ScenarioResult:
    """The agent running and idle on a switch with no VM port; ONE ovs-vsctl transaction plugs
    all N (a host whose VMs all start at once): from the command to every port's flows
    verified on the switch (``seconds``; every port reported up is beside it). ovs-vswitchd's
    CPU runs from the command until every port also has its Port.tag (see
    ``_tags_then_mark``), to compare with ``baselines.plug_limit``."""
    result = ScenarioResult("cold_plug")
    agent, cpu_before = await _steady(session, result)
    vms = list(session.world.vms)
    session.plugged = vms
    target = await session.target()
    tags = TagWatch(session.world.sandbox.ovsdb_connection)
    await tags.start()
    try:
        reports = session.watch_reported_up(session.up_reports())
        polls = _Polls(session.watch)
        session.switch_start = session.switch_cpu()
        started_wall = time.time()
        started = time.monotonic()
        await vsctl(session.world.sandbox, *transaction(vm.plug_args() for vm in vms),
                    within=1200)  # fmt: skip
        command_done = time.monotonic()
        command_cpu, _ = cpu_between(session.switch_start, session.switch_cpu())
        session.ofports = await session.world.wait_ofports(vm.tap for vm in vms)
        waiting = _tags_then_mark(session, tags, result, started)
        await _reports_first(reports, session.timeout)
        intervals = cold_boot_intervals(len(vms))
        convergence = await session.converge(target, after_match=waiting, intervals=intervals)
        result.seconds = _converged(result, convergence, started)
        polls.stop()
        reported = await reports
    finally:
        await tags.close()
    result.details.update(
        ovs_vsctl_seconds=round(command_done - started, 4),
        vswitchd_cpu_plug_command_seconds=None if command_cpu is None else round(command_cpu, 3),
        all_reported_up_seconds=None if reported is None else round(reported - started, 4),
    )
    await polls.estimate(session, target, result, intervals)
    _log_figures(agent, result, installed=False, since=started_wall)  # installed: idle start
    _usage(agent, result, cpu_before)
    return result


def _log_figures(
    agent: AgentProcess, result: ScenarioResult, installed: bool = True, since: float | None = None
) -> None:
    """The agent's own figures of its last "dataplane installed" (``installed``: that line is
    this scenario's), its first errors, and the scenario's phases from its lines after
    ``since`` (``time.time()``; default: the agent's spawn)."""
    log = agent.read_log()
    result.details["agent_timeline"] = phase_timeline(
        log, agent.spawned_wall if since is None else since
    )
    if log.installed and installed:
        last = log.installed[-1]
        result.details["agent_logged"] = {
            key: last[key] for key in ("flowmods", "ms", "ports") if key in last
        }
    if log.errors:
        result.details["agent_errors"] = log.errors[:5]


# ---- 2. host reboot, server unavailable -----------------------------------------------------


async def snapshot_restore(session: Session) -> ScenarioResult:
    """The agent and both OVS daemons stopped, OVS started again (flows gone, OVSDB kept), the
    server down: the agent restores from its local snapshot alone."""
    result = ScenarioResult("snapshot_restore")
    result.details["snapshot_found"] = await _wait_snapshot(session)
    await session.stop_agent()
    await session.world.stop_simulator()
    await session.world.restart_ovs()
    await session.watch.wait_connected(30.0)
    session.ofports = await session.world.wait_ofports(vm.tap for vm in session.vms())
    target = await session.target()
    agent = await session.spawn_agent("snapshot-restore")
    convergence = await session.converge(target)
    result.seconds = _converged(result, convergence, agent.spawned_at)
    _log_figures(agent, result)
    _usage(agent, result)
    return result


# ---- 3. OVS restart -------------------------------------------------------------------------


async def ovs_restart(session: Session) -> ScenarioResult:
    """kill -9 ovs-vswitchd, start it: to every flow back (timed from OpenFlow answering)."""
    result = ScenarioResult("ovs_restart")
    target = await session.target()
    agent, cpu_before = await _steady(session, result)
    sandbox = session.world.sandbox
    started_wall = time.time()
    await asyncio.to_thread(sandbox.kill, "ovs-vswitchd")
    started = time.monotonic()
    await asyncio.to_thread(sandbox.start_vswitchd)
    answered = None
    while time.monotonic() - started < 30:
        if await session.watch.count(INTEGRATION_BRIDGE) is not None:
            answered = time.monotonic()
            break
        await asyncio.sleep(0.002)
    if answered is None:
        raise ScenarioFailed("ovs-vswitchd did not answer OpenFlow within 30 s")
    convergence = await session.converge(target)
    result.seconds = _converged(result, convergence, answered)
    result.details.update(
        since_vswitchd_start_seconds=round(result.seconds + answered - started, 4),
        openflow_answered_after_seconds=round(answered - started, 4),
    )
    _log_figures(agent, result, installed=False, since=started_wall)
    _usage(agent, result, cpu_before)
    return result


# ---- 4. agent restart -----------------------------------------------------------------------


async def agent_restart(session: Session) -> ScenarioResult:
    """The agent stopped (SIGTERM) and started again with the dataplane in place: no FlowMod,
    no packet lost in a steady stream."""
    result = ScenarioResult("agent_restart")
    # a vlan port: its flood leaves by br-phys's uplink, whose tx counter the suite reads
    vm = next(v for v in session.vms() if session.server.details[v.iface_id].network_type == "vlan")
    details = session.server.details[vm.iface_id]
    stream = PacketStream(session.world.sandbox, vm, session.ofports[vm.tap],
                          details.fixed_ips[0].ip_address)  # fmt: skip
    injected, delivered = await stream.burst(0.5)
    result.details["stream_self_check"] = {"injected": injected, "delivered": delivered}
    stream_ok = injected > 0 and injected == delivered
    await _wait_snapshot(session)
    reports = session.watch_reported_up(session.up_reports())
    tx_before, injected_before = await uplink_tx(session.world.sandbox), stream.injected
    stream.start()
    await asyncio.sleep(0.3)
    await session.stop_agent()
    agent = await session.spawn_agent("agent-restart")
    ready = await _wait_installed(session, agent)
    reported = await reports
    await asyncio.sleep(0.5)
    await stream.stop()
    await asyncio.sleep(0.2)
    sent = stream.injected - injected_before
    arrived = await uplink_tx(session.world.sandbox) - tx_before
    since_spawn = time.monotonic() - agent.spawned_at
    young = sum(
        [await flows_younger_than(session.world.sandbox, bridge, since_spawn)
         for bridge in session.world.bridges]
    )  # fmt: skip
    result.seconds = ready - agent.spawned_at
    log = agent.read_log()
    flowmods = log.installed[-1].get("flowmods") if log.installed else None
    result.details.update(
        flowmods=flowmods if isinstance(flowmods, int) else None,
        flowmods_source="the agent's 'dataplane installed' log line (its first sync)",
        flows_replaced_per_switch=young,
        injected_packets=sent,
        delivered_packets=arrived,
        lost_packets=(sent - arrived) if stream_ok else None,
        failed_injections=stream.failed_injections,
        all_reported_up_seconds=None if reported is None else round(reported - agent.spawned_at, 3),
    )
    if not stream_ok:
        result.details["stream_problem"] = "the stream did not arrive before the restart"
    result.details["verified"] = (await _full_check(session)).to_json()
    _log_figures(agent, result)
    _usage(agent, result)
    return result


async def _wait_installed(session: Session, agent: AgentProcess) -> float:
    deadline = time.monotonic() + session.timeout
    while time.monotonic() < deadline:
        session.alive()
        if agent.read_log().installed:
            return time.monotonic()
        session.progress.update("waiting for the agent's 'dataplane installed'")
        await asyncio.sleep(0.01)
    raise ScenarioFailed("the restarted agent never logged 'dataplane installed'")


# ---- 5. reboot storm ------------------------------------------------------------------------


async def reboot_storm(session: Session) -> ScenarioResult:
    """Every VM port deleted and re-added with a new ofport in ONE ovs-vsctl transaction."""
    result = ScenarioResult("reboot_storm")
    target = await session.target()
    agent, cpu_before = await _steady(session, result)
    commands = [c for vm in session.vms() for c in replug_args(vm, session.ofports[vm.tap])]
    started_wall = time.time()
    started = time.monotonic()
    await vsctl(session.world.sandbox, *transaction(commands), within=300)
    command_done = time.monotonic()
    session.ofports = await session.world.wait_ofports(vm.tap for vm in session.vms())
    convergence = await session.converge(target)
    result.seconds = _converged(result, convergence, started)
    result.details["ovs_vsctl_seconds"] = round(command_done - started, 4)
    _log_figures(agent, result, installed=False, since=started_wall)
    _usage(agent, result, cpu_before)
    return result


# ---- 6. single VM reboots -------------------------------------------------------------------


async def single_reboots(session: Session, reboots: int, budget: float) -> ScenarioResult:
    """One VM at a time, as nova/libvirt reboot it: ``ovs-vsctl del-port``, then ``add-port``
    (a new Interface row, a new ofport), under the load of all the other ports. Stops after
    ``reboots`` or ``budget`` seconds, whichever comes first (the result says how many)."""
    result = ScenarioResult("single_reboot")
    agent, cpu_before = await _steady(session, result)
    arrivals = OfportArrivals(session.world.sandbox.ovsdb_connection)
    await arrivals.start()
    expected = await session.expectation()
    stale: set[str] = set()  # taps rebooted since ``expected`` was computed (new ofports)
    randomiser = random.Random(9)
    pool = list(session.vms())
    command_ms, ofport_ms, agent_ms = [], [], []
    early = 0
    stop_at = time.monotonic() + budget
    try:
        for index in range(reboots):
            if time.monotonic() > stop_at:
                break
            session.alive()
            vm = randomiser.choice(pool)
            if vm.tap in stale:  # rebooted before: recompute for the ofports as they are now
                expected = await asyncio.to_thread(session.provisional)
                stale.clear()
            old = session.ofports[vm.tap]
            count = flows_in_port(expected[INTEGRATION_BRIDGE], old, tables.TRANSIENT_TABLE)
            started = time.monotonic()
            await vsctl(session.world.sandbox, "--if-exists", "del-port", INTEGRATION_BRIDGE,
                        vm.tap)  # fmt: skip
            await vsctl(session.world.sandbox, *vm.plug_args())
            new, seen = await arrivals.new_ofport(vm.tap, old, started, 30.0)
            probe = Probe(INTEGRATION_BRIDGE, tables.TRANSIENT_TABLE, new, count)
            wired = await session.watch.wait_port(probe, 30.0)
            session.ofports[vm.tap] = new
            stale.add(vm.tap)
            command_ms.append((wired - started) * 1e3)
            if wired < seen:
                early += 1  # our monitor saw the ofport after the flows: count it as 0 ms
            ofport_ms.append(max(0.0, wired - seen) * 1e3)
            for transition in reversed(agent.read_log().transitions):
                if transition.iface_id == vm.iface_id and transition.ofport == new:
                    agent_ms.append(transition.ms)
                    break
            if index % 10 == 0:
                session.progress.update(f"{index}/{reboots} reboots")
    finally:
        await arrivals.close()
    await asyncio.sleep(1.5)  # past the agent's unplug grace: old ofports' flows must be gone
    result.details["verified"] = (await _full_check(session)).to_json()
    result.details.update(
        reboots=len(command_ms),
        reboots_asked=reboots,
        ofport_to_flows=distribution(ofport_ms),
        command_to_flows=distribution(command_ms),
        agent_logged=distribution(agent_ms),
        flows_seen_before_our_monitor=early,
        samples_ms={"ofport_to_flows": [round(v, 2) for v in ofport_ms],
                    "command_to_flows": [round(v, 2) for v in command_ms],
                    "agent_logged": [round(v, 2) for v in agent_ms]},
    )  # fmt: skip
    if ofport_ms:
        result.seconds = distribution(ofport_ms)["p99_ms"] / 1e3
    _usage(agent, result, cpu_before)
    return result
