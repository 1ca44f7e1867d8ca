"""``python -m benchmarks.suite --ports 1000``: run every scenario and both baselines.

``make bench`` (1000 ports, 500 single reboots, scaling at 100/300/1000/3000 ports) writes
benchmarks/results/results.{json,md} and PNGs; ``make bench-quick`` (100 ports, fewer
reboots, no scaling) writes results-quick.{json,md} and its PNGs, so a CI run never overwrites
the full one. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
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
from benchmarks.baselines import LegacyPort, LegacyResult, legacy_way, practical_limit
from benchmarks.suite import scenarios
from benchmarks.suite.expected import local_vlans, owned_flows
from benchmarks.suite.plots import latency_plot, scaling_plot
from benchmarks.suite.progress import Progress
from benchmarks.suite.report import render
from benchmarks.suite.results import ScenarioResult, check_targets
from benchmarks.suite.session import Session
from benchmarks.suite.usage import USAGE_SOURCE, CpuSample, cpu_between
from benchmarks.suite.world import INTEGRATION_BRIDGE, PHYSNET, World

RESULTS = Path(__file__).resolve().parent.parent / "results"
SCALING_SIZES = (100, 300, 1000, 3000)
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
        session.switch_mark = None
    try:
        result = await run()
        if session is not None:
            _switch_cpu(result, switch_before, session.switch_mark or session.switch_cpu())
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


async def _limit_of_current_dump(session: Session) -> float:
    dumps = {b: await session.verifier.dump(b) for b in session.world.bridges}
    return await practical_limit(session.reference, dumps)


async def _legacy(session: Session, sample: int) -> tuple[LegacyResult, list[LegacyPort]]:
    """neutron's per-port way for the ports as the cold boot left them (their tags)."""
    tags = await session.world.port_tags()
    vlans = local_vlans(session.vms(), tags)
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


async def run_main(args: argparse.Namespace) -> dict[str, Any]:
    steps = 8 + 3 * len(args.scaling)  # setup, cold boot, baselines, 5 more; 3 per size
    progress = Progress(steps)
    document: dict[str, Any] = {
        "ports": args.ports,
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "git_commit": git_commit(),
        "usage_source": USAGE_SOURCE,
        "vxlan": "vxlan" in args.network_types,
        "network_types": list(args.network_types),
        "physical_network": PHYSNET,
        "notes": [] if "vxlan" in args.network_types else [VLAN_ONLY_NOTE],
    }
    results: dict[str, ScenarioResult] = {}
    world = World(args.ports, network_types=args.network_types, keep=args.keep)
    if args.keep:
        progress.note(f"work directory (kept): {world.workdir}")
    session = Session(world, progress, args.timeout, args.profile)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        document["notes"].append(f"PROFILED with py-spy (stacks in {args.profile}): "
                                 "CPU and RSS figures are not the agent's alone")  # fmt: skip
    progress.begin(f"setting up {args.ports} ports")
    try:
        await session.start()
        await session.watch.start()
        document["security_groups"] = len(world.topology.security_groups)
        document["networks"] = len(world.topology.networks)
        document["tunnel_ports"] = sorted(session.overlay.tunnel_ports()) if session.overlay else []
        progress.finish("world ready")

        await _scenario(
            progress, "cold_boot", results, lambda: scenarios.cold_boot(session), session
        )
        progress.begin("baselines")
        limit = await _limit_of_current_dump(session)
        legacy, legacy_ports = await _legacy(session, args.legacy_sample)
        one_port_limit = await _single_port_limit(session, legacy_ports)
        document["flows"] = sum(len(f) for f in (await session.expectation()).values())
        progress.finish(f"limit {limit:.3f} s, legacy {legacy.seconds:.1f} s")

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

    extrapolated = legacy.extrapolated_from if legacy.extrapolated_from < legacy.ports else None
    for name, result in results.items():
        if "error" in result.details:
            continue
        if name == "single_reboot":
            result.limit_seconds = one_port_limit
            result.legacy_seconds = legacy.per_port_mean
            result.details["legacy_note"] = (
                "neutron's per-port subprocess work only; its rpc_loop polling (up to 2 s) is extra"
            )
            continue
        if name != "agent_restart":
            result.limit_seconds = storm_limit if name == "reboot_storm" else limit
        else:
            result.details["legacy_flowmods"] = document["flows"]
            result.details["legacy_note"] = (
                "neutron reinstalls every flow with a new cookie, then deletes the old ones"
            )
        result.legacy_seconds = legacy.seconds
        if extrapolated:
            result.details["legacy_extrapolated_from"] = extrapolated
    document["baselines"] = {
        "limit_seconds": round(limit, 4),
        "limit_after_storm_seconds": round(storm_limit, 4),
        "limit_one_port_seconds": round(one_port_limit, 5),
        "legacy_seconds": round(legacy.seconds, 2),
        "legacy_per_port_mean_seconds": round(legacy.per_port_mean, 4),
        "legacy_shared_flows_seconds": round(legacy.shared_seconds, 3),
        "legacy_timed_ports": legacy.extrapolated_from,
    }

    document["machine"]["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    document["scenarios"] = {name: results[name].to_json() for name in results}
    if args.scaling:
        document["scaling"] = await run_scaling(args, progress, results)
    document["targets"] = [
        {"scenario": c.scenario, "what": c.what, "target": c.target, "measured": c.measured,
         "met": c.met} for c in check_targets(results)
    ]  # fmt: skip
    return document


async def run_scaling(
    args: argparse.Namespace, progress: Progress, main: dict[str, ScenarioResult]
) -> list[dict[str, Any]]:
    """Cold boot and OVS restart at each size (the main run's figures at its own size)."""
    rows = []
    for ports in args.scaling:
        progress.begin(f"scaling: {ports} ports")
        if ports == args.ports and "cold_boot" in main and "ovs_restart" in main:
            cold, restart = main["cold_boot"], main["ovs_restart"]
            row = _scaling_row(ports, cold, restart, cold.limit_seconds)
            row["flows"] = cold.details.get("verified", {}).get("flows")
            rows.append(row)
            progress.finish("from the main run")
            continue
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
        rows.append(row)
        progress.finish("done")
    return rows


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
    }


def write_outputs(document: dict[str, Any], out: Path, quick: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = "results-quick" if quick else "results"
    written = []
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    written.append(json_path)
    checks = check_targets(
        {n: ScenarioResult.from_json(n, d) for n, d in document.get("scenarios", {}).items()}
    )
    md_path = out / f"{stem}.md"
    md_path.write_text(render(document, checks))
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
        help="default 100,300,1000,3000",
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
    args = parser.parse_args(argv)
    if args.ports < 2:
        parser.error("--ports must be at least 2")
    if args.quick is None:
        args.quick = args.ports < 1000
    if args.reboots is None:
        args.reboots = 50 if args.quick else 500
    args.scaling = [] if (args.quick or args.no_scaling) else args.scaling_sizes
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    document = uvloop.run(run_main(args))
    for path in write_outputs(document, args.out, args.quick):
        print(f"wrote {path}", file=sys.stderr)
    results = {n: ScenarioResult.from_json(n, d) for n, d in document["scenarios"].items()}
    print(render(document, check_targets(results)))
    failed = [n for n, d in document["scenarios"].items() if "error" in d]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
