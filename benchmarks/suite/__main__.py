"""``python -m benchmarks.suite --ports 1000``: run every scenario and both baselines.

``make bench`` (1000 ports, 500 single reboots, scaling at 100/300/1000/3000/5000 ports) writes
benchmarks/results/results.{json,md} and PNGs; ``make bench-quick`` (100 ports, fewer
reboots, no scaling) writes results-quick.{json,md} and its PNGs, so a CI run never overwrites
the full one. ``--only cold_plug`` (or ``cold_boot``) runs that scenario alone, at ``--ports``
and, unless ``--no-scaling``, at each ``--scaling-sizes``, into ``results-<only>.*`` (or
``--stem``): ``make bench-coldboot`` is the cold boot with the agent running at 1000, 3000 and
5000 ports with ovs-vswitchd's CPU against the limit's. See benchmarks/README.md for what each
figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import stable_cookie
from aovs.owners import port_owner
from benchmarks.baselines import (
    LegacyPort,
    LegacyResult,
    PlugLimit,
    legacy_way,
    plug_limit,
    practical_limit,
)
from benchmarks.suite import scenarios
from benchmarks.suite.expected import owned_flows
from benchmarks.suite.plots import latency_plot, scaling_plot
from benchmarks.suite.progress import Progress
from benchmarks.suite.report import render
from benchmarks.suite.results import (
    ScenarioResult,
    TargetCheck,
    check_targets,
    cold_plug_row,
    scale_checks,
    set_plug_limit,
    size_checks,
)
from benchmarks.suite.session import Session
from benchmarks.suite.usage import USAGE_SOURCE, CpuSample, cpu_between
from benchmarks.suite.world import INTEGRATION_BRIDGE, PHYSNET, World

RESULTS = Path(__file__).resolve().parent.parent / "results"
SCALING_SIZES = (100, 300, 1000, 3000, 5000)
ONLY = ("cold_boot", "cold_plug")  # the scenarios ``--only`` can run alone
LIMIT_RUNS_UP_TO = 1000  # the plug limit is the median of 3 runs up to this many ports, 1 above
VLAN_ONLY_NOTE = "vlan networks only (--network-types vlan): br-tun is not run"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[0]  # fmt: skip
    except (OSError, IndexError, subprocess.SubprocessError):
        ovs = "unknown"
    return {
        "cpus": os.cpu_count(),
        "model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ovs": ovs,
        "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=RESULTS.parent).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10,
                               cwd=RESULTS.parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+uncommitted" if dirty else "")


async def _scenario(
    progress: Progress,
    name: str,
    results: dict[str, ScenarioResult],
    run: Callable[[], Awaitable[ScenarioResult]],
    session: Session | None = None,
) -> ScenarioResult | None:
    progress.begin(name)
    switch_before = session.switch_cpu() if session is not None else None
    if session is not None:
        session.switch_mark = session.switch_start = None
    try:
        result = await run()
        if session is not None:
            before = session.switch_start or switch_before  # the scenario started its own clock
            _switch_cpu(result, before, session.switch_mark or session.switch_cpu())
    except Exception as exc:  # one failed scenario is reported, the others still run
        progress.note(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        results[name] = ScenarioResult(name, details={"error": f"{type(exc).__name__}: {exc}"})
        progress.finish("failed")
        return None
    results[name] = result
    progress.finish(f"{result.seconds:.3f} s" if result.seconds is not None else "done")
    return result


def _switch_cpu(result: ScenarioResult, before: CpuSample | None, after: CpuSample | None) -> None:
    """ovs-vswitchd's CPU seconds from the scenario's start to when the suite began verifying
    (its dumps excluded; its 50 ms flow counts and 3 ms probe lookups included)."""
    seconds, restarted = cpu_between(before, after)
    result.details["vswitchd_cpu_seconds"] = None if seconds is None else round(seconds, 3)
    if restarted:
        result.details["vswitchd_cpu_note"] = "ovs-vswitchd restarted: the new process's total"


def wants(args: argparse.Namespace, name: str) -> bool:
    """Whether this run includes ``name`` (``--only`` restricts it to those listed)."""
    return args.only is None or name in args.only


async def _limit_of_current_dump(session: Session) -> float:
    dumps = {b: await session.verifier.dump(b) for b in session.world.bridges}
    return await practical_limit(session.reference, dumps)


async def _legacy(session: Session, sample: int) -> tuple[LegacyResult, list[LegacyPort]]:
    """neutron's per-port way for the ports as the cold boot left them (their local VLANs)."""
    vlans = await session.local_vlans()
    owners = owned_flows(session.server, session.vms(), session.ofports, vlans, session.overlay)
    ports, shared = [], []
    port_owned = {port_owner(vm.iface_id) for vm in session.vms()}
    for owner, by_bridge in owners.items():
        if owner in port_owned:
            continue
        for bridge, flows in by_bridge.items():
            shared += [to_ofctl(f, stable_cookie(bridge)) for f in flows]
    cookie = stable_cookie(INTEGRATION_BRIDGE)
    for vm in session.vms():
        details = session.server.details[vm.iface_id]
        vlan = vlans[vm.network_id]
        other_config = {
            "net_uuid": vm.network_id, "network_type": details.network_type,
            "physical_network": details.physical_network or "None",
            "segmentation_id": str(details.segmentation_id), "tag": str(vlan),
        }  # fmt: skip
        flows = owners[port_owner(vm.iface_id)].get(INTEGRATION_BRIDGE, frozenset())
        ports.append(LegacyPort(vm.tap, vlan, other_config,
                                [to_ofctl(f, cookie) for f in flows]))  # fmt: skip
    return await legacy_way(session.reference, ports, shared, sample), ports


async def _single_port_limit(session: Session, ports: list[LegacyPort]) -> float:
    """The limit for one port: its flows by ``--bundle add-flows`` into an empty bridge."""
    times = []
    for port in ports[:20]:
        times.append(await practical_limit(session.reference, {"one": port.flows}, runs=1))
    times.sort()
    return times[len(times) // 2]


def _steps(args: argparse.Namespace) -> int:
    main = 8 if args.only is None else 2  # setup, cold boot, baselines, 5 more (or just those)
    per_size = 3 if args.only is None else 2  # the size, its cold boot, OVS restart
    plug = 3  # set-up, the scenario, its limit
    steps = (main if wants(args, "cold_boot") else 0) + (plug if wants(args, "cold_plug") else 0)
    if wants(args, "cold_boot"):
        steps += per_size * len(args.scaling)
    if wants(args, "cold_plug"):  # the main size's figures are reused
        steps += plug * len([size for size in args.scaling if size != args.ports])
    return steps


async def run_main(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress(_steps(args))
    document: dict[str, Any] = {
        "ports": args.ports,
        "mode": "quick" if args.quick else "full",
        "only": list(args.only) if args.only is not None else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "git_commit": git_commit(),
        "usage_source": USAGE_SOURCE,
        "vxlan": "vxlan" in args.network_types,
        "network_types": list(args.network_types),
        "physical_network": PHYSNET,
        "notes": [] if "vxlan" in args.network_types else [VLAN_ONLY_NOTE],
        "baselines": {},
    }
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        document["notes"].append(f"PROFILED with py-spy (stacks in {args.profile}): "
                                 "CPU and RSS figures are not the agent's alone")  # fmt: skip
    results: dict[str, ScenarioResult] = {}
    if wants(args, "cold_boot"):
        await run_world(args, progress, document, results)
    if wants(args, "cold_plug"):
        result, limit = await run_cold_plug(args, args.ports, progress, "cold_plug", document)
        if result is not None:
            results["cold_plug"] = result
        if limit is not None:
            document["baselines"]["plug_limit"] = limit.to_json()
    document["machine"]["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    document["scenarios"] = {name: results[name].to_json() for name in results}
    if args.scaling:
        by_size: dict[str, Any] = {}
        document["scaling"] = await run_scaling(args, progress, results, by_size)
        if by_size:
            document["cold_plug_scenarios"] = by_size
    if wants(args, "cold_plug"):
        document["cold_plug"] = cold_plug_rows(args.ports, results.get("cold_plug"),
                                               document.get("scaling") or [])  # fmt: skip
    document["targets"] = [
        {"scenario": c.scenario, "what": c.what, "target": c.target, "measured": c.measured,
         "met": c.met} for c in all_checks(document)
    ]  # fmt: skip
    return document


def all_checks(document: dict[str, Any]) -> list[TargetCheck]:
    """The targets of the scenarios run, and the cold plug's at each other size."""
    results = {
        name: ScenarioResult.from_json(name, data)
        for name, data in document.get("scenarios", {}).items()
    }
    checks = check_targets(results)
    skip = document["ports"] if "cold_plug" in results else None
    checks += size_checks(document.get("cold_plug") or [], skip)
    if document.get("only") is None and document.get("mode") == "full":  # issue 21: whole run
        limit = (document.get("baselines") or {}).get("limit_seconds")
        scaling = [*(document.get("scaling") or []), *(document.get("cold_plug") or [])]
        checks += scale_checks(results, limit, _merged_rows(scaling), document["ports"])
    return checks


def _merged_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one size merged (the scaling rows and the cold plug rows)."""
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        merged.setdefault(int(row["ports"]), {}).update(row)
    return [merged[size] for size in sorted(merged)]


def cold_plug_rows(
    ports: int, main: ScenarioResult | None, scaling: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One cold-plug row per size: the main run's, then the scaling sizes' (pure)."""
    rows = {ports: cold_plug_row(ports, main)}
    for row in scaling:
        if "cold_plug_seconds" in row and row["ports"] not in rows:
            keep = ("ports", "cold_plug", "plug_limit")
            rows[row["ports"]] = {key: value for key, value in row.items()
                                  if key.startswith(keep)}  # fmt: skip
    return [rows[size] for size in sorted(rows)]


async def run_world(
    args: argparse.Namespace,
    progress: Progress,
    document: dict[str, Any],
    results: dict[str, ScenarioResult],
) -> None:
    """The main world: every scenario but the cold plug, both baselines (with ``--only
    cold_boot``: the cold boot and the limit only)."""
    full = args.only is None
    world = World(args.ports, network_types=args.network_types, keep=args.keep)
    if args.keep:
        progress.note(f"work directory (kept): {world.workdir}")
    session = Session(world, progress, args.timeout, args.profile)
    progress.begin(f"setting up {args.ports} ports")
    legacy: LegacyResult | None = None
    one_port_limit = None
    limit = storm_limit = None
    try:
        await session.start()
        await session.watch.start()
        _describe_world(document, session)
        progress.finish("world ready")

        await _scenario(
            progress, "cold_boot", results, lambda: scenarios.cold_boot(session), session
        )
        progress.begin("baselines")
        limit = await _limit_of_current_dump(session)
        if full:
            legacy, legacy_ports = await _legacy(session, args.legacy_sample)
            one_port_limit = await _single_port_limit(session, legacy_ports)
        document["flows"] = sum(len(f) for f in (await session.expectation()).values())
        legacy_text = "" if legacy is None else f", legacy {legacy.seconds:.1f} s"
        progress.finish(f"limit {limit:.3f} s{legacy_text}")
        storm_limit = limit
        if full:
            await _scenario(progress, "agent_restart", results,
                            lambda: scenarios.agent_restart(session), session)  # fmt: skip
            await _scenario(
                progress, "ovs_restart", results, lambda: scenarios.ovs_restart(session), session
            )
            storm = await _scenario(progress, "reboot_storm", results,
                                    lambda: scenarios.reboot_storm(session), session)  # fmt: skip
            storm_limit = await _limit_of_current_dump(session) if storm else limit
            reboots = functools.partial(
                scenarios.single_reboots, session, args.reboots, args.reboot_budget
            )
            await _scenario(progress, "single_reboot", results, reboots, session)
            await _scenario(progress, "snapshot_restore", results,
                            lambda: scenarios.snapshot_restore(session), session)  # fmt: skip
    finally:
        await session.close()
    if limit is None:
        return
    _set_baselines(results, limit, storm_limit or limit, legacy, one_port_limit)
    baselines = document["baselines"]
    baselines["limit_seconds"] = round(limit, 4)
    baselines["limit_after_storm_seconds"] = round(storm_limit or limit, 4)
    if legacy is not None and one_port_limit is not None:
        baselines.update(
            limit_one_port_seconds=round(one_port_limit, 5),
            legacy_seconds=round(legacy.seconds, 2),
            legacy_per_port_mean_seconds=round(legacy.per_port_mean, 4),
            legacy_shared_flows_seconds=round(legacy.shared_seconds, 3),
            legacy_timed_ports=legacy.extrapolated_from,
        )


def _set_baselines(
    results: dict[str, ScenarioResult],
    limit: float,
    storm_limit: float,
    legacy: LegacyResult | None,
    one_port_limit: float | None,
) -> None:
    extrapolated = None
    if legacy is not None and legacy.extrapolated_from < legacy.ports:
        extrapolated = legacy.extrapolated_from
    for name, result in results.items():
        if "error" in result.details or name == "cold_plug":
            continue
        if name == "single_reboot":
            result.limit_seconds = one_port_limit
            result.legacy_seconds = None if legacy is None else legacy.per_port_mean
            result.details["legacy_note"] = (
                "neutron's per-port subprocess work only; its rpc_loop polling (up to 2 s) is extra"
            )
            continue
        if name != "agent_restart":
            result.limit_seconds = storm_limit if name == "reboot_storm" else limit
        else:
            result.details["legacy_flowmods"] = result.details.get("verified", {}).get("flows")
            result.details["legacy_note"] = (
                "neutron reinstalls every flow with a new cookie, then deletes the old ones"
            )
        if legacy is not None:
            result.legacy_seconds = legacy.seconds
            if extrapolated:
                result.details["legacy_extrapolated_from"] = extrapolated


def _describe_world(document: dict[str, Any] | None, session: Session) -> None:
    """The main world's shape in the document (the first world's, when only a cold plug runs)."""
    if document is None or "networks" in document:
        return
    document["security_groups"] = len(session.world.topology.security_groups)
    document["networks"] = len(session.world.topology.networks)
    overlay = session.overlay
    document["tunnel_ports"] = sorted(overlay.tunnel_ports()) if overlay is not None else []


async def run_cold_plug(
    args: argparse.Namespace,
    ports: int,
    progress: Progress,
    name: str,
    document: dict[str, Any] | None = None,
) -> tuple[ScenarioResult | None, PlugLimit | None]:
    """Cold boot with the agent running, on a world of its own (the agent idle on a switch with
    no VM port, then one transaction plugs ``ports``), and the plug limit for the same ports
    and flows, run once the world is gone (nothing else of the suite's running)."""
    results: dict[str, ScenarioResult] = {}
    world = World(ports, network_types=args.network_types, keep=args.keep)
    if args.keep:
        progress.note(f"{name}: work directory (kept): {world.workdir}")
    session = Session(world, progress, args.timeout, args.profile)
    setup: list[list[str]] = []
    plug: list[list[str]] = []
    dumps: dict[str, list[str]] = {}
    progress.begin(f"{name}: {ports} ports, agent idle on a switch with none")
    try:
        await session.start(plug=False)
        await session.watch.start()
        _describe_world(document, session)
        await scenarios.idle_agent(session)
        progress.finish("agent idle")
        await _scenario(progress, name, results, lambda: scenarios.cold_plug(session), session)
        if name in results and "error" not in results[name].details:
            dumps = {bridge: await session.verifier.dump(bridge) for bridge in world.bridges}
            if document is not None and "flows" not in document:
                document["flows"] = sum(len(lines) for lines in dumps.values())
            vlans = await session.local_vlans()
            plug = [vm.plug_args(session.ofports[vm.tap], vlans[vm.network_id])
                    for vm in world.vms]  # fmt: skip
            setup = await world.switch_copy(vm.tap for vm in world.vms)
    except Exception as exc:
        progress.note(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        results.setdefault(name, ScenarioResult(name, details={"error": f"{exc}"}))
    finally:
        await session.close()
    result = results.get(name)
    if result is None or not plug:
        return result, None
    runs = 3 if ports <= LIMIT_RUNS_UP_TO else 1
    progress.begin(f"{name}: plug limit ({runs} runs)")
    try:
        limit = await plug_limit(setup, plug, dumps, runs=runs)
    except Exception as exc:
        progress.note(f"{name}: the plug limit FAILED: {type(exc).__name__}: {exc}")
        result.details["limit_error"] = f"{type(exc).__name__}: {exc}"
        progress.finish("failed")
        return result, None
    set_plug_limit(result, limit.seconds, limit.vswitchd_cpu_seconds)
    result.details["limit_runs"] = limit.to_json()["runs"]
    progress.finish(f"limit {limit.seconds:.2f} s, vswitchd CPU {limit.vswitchd_cpu_seconds:.2f} s")
    return result, limit


async def run_scaling(
    args: argparse.Namespace,
    progress: Progress,
    main: dict[str, ScenarioResult],
    scenarios_by_size: dict[str, Any],
) -> list[dict[str, Any]]:
    """Cold boot and OVS restart, and the cold plug against its limit, at each size (the
    main run's figures at its own size); ``--only`` keeps what it names. The cold plug's
    whole result per size goes into ``scenarios_by_size``."""
    rows = []
    for ports in args.scaling:
        row: dict[str, Any] = {"ports": ports}
        if wants(args, "cold_boot"):
            row.update(await _scaled_world(args, progress, main, ports))
        if wants(args, "cold_plug"):
            plugged = main.get("cold_plug") if ports == args.ports else None
            if plugged is None:
                plugged, _ = await run_cold_plug(
                    args, ports, progress, f"scaling {ports}: cold plug"
                )
                if plugged is not None:  # every figure of the run, beside the row's
                    scenarios_by_size[str(ports)] = plugged.to_json()
            row.update(cold_plug_row(ports, plugged))
        rows.append(row)
    return rows


async def _scaled_world(
    args: argparse.Namespace, progress: Progress, main: dict[str, ScenarioResult], ports: int
) -> dict[str, Any]:
    progress.begin(f"scaling: {ports} ports")
    if ports == args.ports and "cold_boot" in main:
        cold, restart = main["cold_boot"], main.get("ovs_restart")
        row = _scaling_row(ports, cold, restart, cold.limit_seconds)
        row["flows"] = cold.details.get("verified", {}).get("flows")
        progress.finish("from the main run")
        return row
    results: dict[str, ScenarioResult] = {}
    session = Session(World(ports, network_types=args.network_types), progress, args.timeout)
    limit = None
    cold_name, restart_name = f"scaling {ports}: cold boot", f"scaling {ports}: OVS restart"
    try:
        await session.start()
        await session.watch.start()
        boot = functools.partial(scenarios.cold_boot, session)
        if await _scenario(progress, cold_name, results, boot, session):
            limit = await _limit_of_current_dump(session)
            if args.only is None:
                again = functools.partial(scenarios.ovs_restart, session)
                await _scenario(progress, restart_name, results, again, session)
    except Exception as exc:
        progress.note(f"scaling {ports}: FAILED: {exc}")
    finally:
        await session.close()
    scaled_cold = results.get(cold_name)
    row = _scaling_row(ports, scaled_cold, results.get(restart_name), limit)
    if scaled_cold is not None:
        row["flows"] = scaled_cold.details.get("verified", {}).get("flows")
    progress.finish("done")
    return row


def _scaling_row(
    ports: int,
    cold: ScenarioResult | None,
    restart: ScenarioResult | None,
    limit: float | None,
) -> dict[str, Any]:
    def ok(result: ScenarioResult | None) -> ScenarioResult | None:
        return None if result is None or "error" in result.details else result

    cold, restart = ok(cold), ok(restart)
    return {
        "ports": ports,
        "cold_boot_seconds": None if cold is None else cold.seconds,
        "ovs_restart_seconds": None if restart is None else restart.seconds,
        "limit_seconds": None if limit is None else round(limit, 4),
        "peak_rss_mb": None if cold is None else cold.peak_rss_mb,
        "cold_boot_cpu_seconds": None if cold is None else cold.cpu_seconds,
        "cold_boot_vswitchd_cpu_seconds": None
        if cold is None
        else cold.details.get("vswitchd_cpu_seconds"),
        "cold_boot_tag_wait_seconds": None
        if cold is None
        else cold.details.get("tag_wait_seconds"),
        "cold_boot_polling_vswitchd_cpu_at_most": None
        if cold is None
        else cold.details.get("suite_polling", {}).get("vswitchd_cpu_seconds_at_most"),
    }


def output_stem(args: argparse.Namespace) -> str:
    """results / results-quick / results-<only> unless ``--stem`` names it (pure)."""
    if args.stem:
        return str(args.stem)
    if args.only is not None:
        return "results-" + "-".join(args.only)
    return "results-quick" if args.quick else "results"


def write_outputs(document: dict[str, Any], out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    written.append(json_path)
    md_path = out / f"{stem}.md"
    md_path.write_text(render(document, all_checks(document)))
    written.append(md_path)
    samples = document.get("scenarios", {}).get("single_reboot", {}).get("samples_ms", {})
    plot = latency_plot(samples, document["ports"], out / f"{stem}-reboot-latency.png")
    if plot is not None:
        written.append(plot)
    plot = scaling_plot(document.get("scaling") or [], out / f"{stem}-scaling.png")
    if plot is not None:
        written.append(plot)
    return written


def _network_types(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in ("vlan", "vxlan")]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"vlan and/or vxlan, not {text!r}")
    return kinds


def _only(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in ONLY]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"one or more of {', '.join(ONLY)}, not {text!r}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    option = parser.add_argument
    option("--ports", type=int, default=1000, help="VM ports (default 1000)")
    option("--reboots", type=int, help="single VM reboots (default 500; 50 quick)")
    option(
        "--quick",
        action=argparse.BooleanOptionalAction,
        help="CI-sized run: results-quick.*, no scaling (default: when ports < 1000)",
    )
    option(
        "--only",
        type=_only,
        help=f"run only these scenarios ({', '.join(ONLY)}; comma-separated), at --ports and "
        "at each --scaling-sizes unless --no-scaling; writes results-<only>.* (see --stem)",
    )
    option(
        "--reboot-budget",
        type=float,
        default=300.0,
        help="seconds the single reboots may take in all (default 300; fewer reboots then)",
    )
    option(
        "--network-types",
        type=_network_types,
        default=("vlan", "vxlan"),
        help="networks alternate between these types (default vlan,vxlan: half the ports on "
        "vxlan, the agent with br-tun and a vxlan port per remote endpoint)",
    )
    option("--no-scaling", action="store_true", help="skip scenario 7 (scaling)")
    option(
        "--scaling-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=list(SCALING_SIZES),
        help="default " + ",".join(str(size) for size in SCALING_SIZES),
    )
    option(
        "--legacy-sample",
        type=int,
        default=25,
        help="ports timed for the legacy baseline, then scaled to all (default 25)",
    )
    option(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a scenario may take to converge (default 120)",
    )
    option("--profile", type=Path, help="run the agent under py-spy; stacks to this folder")
    option("--keep", action="store_true", help="keep the work directory (agent and OVS logs)")
    option("--out", type=Path, default=RESULTS, help="results folder")
    option(
        "--stem",
        help="output file names <stem>.json/.md/-*.png (default results, results-quick, or "
        "results-<only>): a partial run never overwrites results.json",
    )
    args = parser.parse_args(argv)
    if args.ports < 2:
        parser.error("--ports must be at least 2")
    if args.quick is None:
        args.quick = args.ports < 1000
    if args.reboots is None:
        args.reboots = 50 if args.quick else 500
    args.scaling = [] if (args.quick or args.no_scaling) else args.scaling_sizes
    return args


def room_for_long_commands(stack_bytes: int = 64 << 20) -> None:
    """One ovs-vsctl transaction plugging 5000 ports with their tags is ~2 MB of argv, the
    default limit (a quarter of the stack rlimit, which children inherit): raise the soft
    stack limit so that such commands can run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != resource.RLIM_INFINITY and soft < stack_bytes:
        wanted = stack_bytes if hard == resource.RLIM_INFINITY else min(stack_bytes, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_STACK, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    room_for_long_commands()
    document = uvloop.run(run_main(args))
    for path in write_outputs(document, args.out, output_stem(args)):
        print(f"wrote {path}", file=sys.stderr)
    print(render(document, all_checks(document)))
    failed = [n for n, d in document["scenarios"].items() if "error" in d]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
