"""results.json -> results.md: the tables a reader takes in at a glance (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.suite.results import SCENARIOS, TITLES, ScenarioResult, TargetCheck

DASH = "-"


def number(value: float | None, digits: int = 3) -> str:
    """A figure with ``digits`` significant digits, or a dash when it was not measured."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def times(value: float | None) -> str:
    """A ratio as ``1.23x``; legacy ratios are small, so they keep two significant digits."""
    if value is None:
        return DASH
    return f"{value:.2g}x" if value < 0.1 else f"{value:.2f}x"


def _verdict(details: Mapping[str, Any]) -> str:
    if "error" in details:
        return f"FAILED: {details['error']}"
    check = details.get("verified")
    if not isinstance(check, Mapping):
        return DASH
    if check.get("ok"):
        traces = check.get("traces", {})
        return f"yes ({check.get('flows', '?')} flows, {traces.get('passed', 0)} traces)"
    return f"NO: {check.get('problem', 'see results.json')}"


def _headline(result: ScenarioResult) -> str:
    if "error" in result.details:
        return "failed"
    if result.name == "agent_restart":
        flowmods = result.details.get("flowmods")
        lost = result.details.get("lost_packets")
        injected = result.details.get("injected_packets")
        return (
            f"{number(result.seconds)} s to ready; {DASH if flowmods is None else flowmods} "
            f"FlowMods; {DASH if lost is None else lost}/{DASH if injected is None else injected}"
            " packets lost"
        )
    if result.name == "single_reboot":
        dist = result.details.get("ofport_to_flows", {})
        if not dist.get("count"):
            return DASH
        return (
            f"p50 {dist['p50_ms']:g} / p90 {dist['p90_ms']:g} / p99 {dist['p99_ms']:g} / "
            f"max {dist['max_ms']:g} ms"
        )
    return f"{number(result.seconds)} s"


def _tunnels(document: Mapping[str, Any]) -> str:
    if not document.get("vxlan"):
        return " (no br-tun)"
    ports = document.get("tunnel_ports") or []
    return f"; br-tun with {len(ports)} vxlan ports ({', '.join(ports)})"


def _bridges(document: Mapping[str, Any]) -> str:
    return "br-int, br-phys and br-tun" if document.get("vxlan") else "br-int and br-phys"


def scenario_table(results: Mapping[str, ScenarioResult]) -> list[str]:
    lines = [
        "| scenario | agent | limit | vs limit | legacy | vs legacy | agent CPU s | "
        "vswitchd CPU s | peak RSS MB | dataplane verified |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        result = results.get(name)
        if result is None:
            continue
        legacy = number(result.legacy_seconds)
        if result.legacy_seconds is not None and result.details.get("legacy_extrapolated_from"):
            legacy += " (extrap.)"
        unit = " s" if result.name == "single_reboot" else ""
        cells = [
            TITLES[name],
            _headline(result),
            DASH if result.limit_seconds is None else number(result.limit_seconds) + unit,
            times(result.vs_limit),
            legacy if legacy == DASH else legacy + unit,
            times(result.vs_legacy),
            number(result.cpu_seconds),
            number(result.details.get("vswitchd_cpu_seconds")),
            number(result.peak_rss_mb),
            _verdict(result.details),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def target_table(checks: Sequence[TargetCheck]) -> list[str]:
    lines = ["| scenario | what | target | measured | met |", "|---|---|---|---|---|"]
    for check in checks:
        met = {True: "yes", False: "**no**", None: DASH}[check.met]
        lines.append(
            f"| {check.scenario} | {check.what} | {check.target} | {check.measured} | {met} |"
        )
    return lines


def scaling_table(scaling: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| ports | flows | cold boot s | cold boot limit s | OVS restart s | OVS restart limit s "
        "| peak RSS MB | agent CPU s (cold boot) | vswitchd CPU s (cold boot) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in scaling:
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row.get("ports", DASH)),
                    str(row.get("flows", DASH)),
                    number(row.get("cold_boot_seconds")),
                    number(row.get("limit_seconds")),
                    number(row.get("ovs_restart_seconds")),
                    number(row.get("limit_seconds")),
                    number(row.get("peak_rss_mb")),
                    number(row.get("cold_boot_cpu_seconds")),
                    number(row.get("cold_boot_vswitchd_cpu_seconds")),
                ]
            )
            + " |"
        )
    return lines


def cold_plug_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Cold boot with the agent running against the plug limit, one row per size."""
    lines = [
        "| ports | flows | cold boot s | limit s | vs limit | vswitchd CPU s | of which suite "
        "polling, at most | limit vswitchd CPU s | vswitchd CPU vs limit | tag wait s (apart) "
        "| agent CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda row: int(row.get("ports", 0))):
        error = row.get("cold_plug_error")
        if error:
            lines.append(f"| {row.get('ports', DASH)} | FAILED: {error} |" + " |" * 10)
            continue
        flows = row.get("cold_plug_flows")
        cells = [
            str(row.get("ports", DASH)),
            DASH if flows is None else str(flows),
            number(row.get("cold_plug_seconds")),
            number(row.get("plug_limit_seconds")),
            times(row.get("cold_plug_vs_limit")),
            number(row.get("cold_plug_vswitchd_cpu_seconds")),
            number(row.get("cold_plug_polling_vswitchd_cpu_at_most")),
            number(row.get("plug_limit_vswitchd_cpu_seconds")),
            times(row.get("cold_plug_vswitchd_cpu_vs_limit")),
            number(row.get("cold_plug_tag_wait_seconds")),
            number(row.get("cold_plug_agent_cpu_seconds")),
            number(row.get("cold_plug_peak_rss_mb")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _minus(total: float | None, *parts: float | None) -> float | None:
    if total is None or any(part is None for part in parts):
        return None
    return round(total - sum(part for part in parts if part is not None), 3)


def cpu_split_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where ovs-vswitchd's CPU went, cold boot beside the limit, phase by phase."""
    lines = [
        "| ports | plug command (no tags) | limit: transaction with tags | agent's flows "
        "| limit: bundles | after the flows (Port.tag writes) |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda row: int(row.get("ports", 0))):
        if row.get("cold_plug_error"):
            continue
        command = row.get("cold_plug_vswitchd_cpu_plug_command")
        after = row.get("cold_plug_vswitchd_cpu_after_flows")
        total = row.get("cold_plug_vswitchd_cpu_seconds")
        limit_vsctl = row.get("plug_limit_vsctl_vswitchd_cpu_seconds")
        limit_total = row.get("plug_limit_vswitchd_cpu_seconds")
        cells = [
            str(row.get("ports", DASH)),
            number(command),
            number(limit_vsctl),
            number(_minus(total, command, after)),
            number(_minus(limit_total, limit_vsctl)),
            number(after),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


COLD_PLUG_NOTE = (
    "Cold boot with the agent running: the agent idle on a switch with no VM port, ONE "
    "`ovs-vsctl` transaction plugs all N; the time runs from the command to every flow verified. "
    "ovs-vswitchd's CPU runs from the command until every port also carries its Port.tag (the "
    "agent may write them later, batched; each such write makes ovs-vswitchd reconfigure every "
    "port); that wait is the tag-wait column, not in the time. The suite's own OpenFlow polling "
    "(probes and flow counts, each a wakeup of ovs-vswitchd) is in that CPU; the column beside "
    "it bounds its share, from costs measured on the converged switch. Limit: on a fresh OVS "
    "with the same bridges and patch/tunnel ports, ONE `ovs-vsctl` transaction plugging the "
    "same N ports WITH their tags, then `ovs-ofctl --bundle add-flows` of the same flows; its "
    "wall time and ovs-vswitchd's CPU (median of the runs). Targets: time <= 1.5x, vswitchd "
    "CPU <= 1.2x."
)


TIMELINE_NOTE = (
    "Seconds from the scenario's start (the agent's spawn for the cold boot, snapshot restore "
    "and agent restart; the plug command, the kill or the replug transaction otherwise), from "
    "the wall-clock stamps of the agent's JSON lines: the first line comes after the "
    "interpreter, the imports and the configuration; a port is wired when the bundle with its "
    "flows committed; the agent logs bundles of 10k FlowMods and more."
)


def timeline_table(results: Mapping[str, ScenarioResult]) -> list[str]:
    """Each scenario's phases from the agent's own log lines (seconds from the scenario's
    start; for the cold boots and restarts, from the agent's spawn)."""
    rows = []
    for name in SCENARIOS:
        result = results.get(name)
        timeline = None if result is None else result.details.get("agent_timeline")
        if not timeline:
            continue
        bundles = "; ".join(
            f"{b.get('flowmods')} at {number(b.get('done_s'))} s ({number(b.get('commit_ms'))} ms)"
            for b in timeline.get("big_bundles", [])
        )
        replays = "; ".join(f"{r.get('bridge')} at {number(r.get('done_s'))} s"
                            for r in timeline.get("replays", []))  # fmt: skip
        rows.append(
            f"| {TITLES.get(name, name)} | {number(timeline.get('first_line_s'))} | "
            f"{number(timeline.get('broker_connected_s'))} | "
            f"{number(timeline.get('first_install_done_s'))} | "
            f"{number(timeline.get('first_port_wired_s'))} | "
            f"{number(timeline.get('last_port_wired_s'))} | {bundles or DASH} | "
            f"{replays or DASH} |"
        )
    if not rows:
        return []
    return [
        "| scenario | first log line s | broker connected s | first install done s | "
        "first port wired s | last port wired s | bundles of 10k+ FlowMods: done at (commit) | "
        "OpenFlow replays done |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def render(document: Mapping[str, Any], checks: Sequence[TargetCheck]) -> str:
    """The whole results.md."""
    results = {
        name: ScenarioResult.from_json(name, data)
        for name, data in document.get("scenarios", {}).items()
    }
    machine = document.get("machine", {})
    lines = [
        f"# aovs reboot benchmark: {document.get('ports')} ports",
        "",
        f"- run: {document.get('started', DASH)}, git {document.get('git_commit', DASH)}; "
        f"machine: {machine.get('cpus', DASH)} CPUs, {machine.get('model', DASH)}, "
        f"load average at start {machine.get('loadavg', DASH)}, "
        f"at end {machine.get('loadavg_end', DASH)}",
        f"- networks: {document.get('networks', DASH)}, alternating "
        f"{', '.join(document.get('network_types', []))}" + _tunnels(document),
        f"- flows: {document.get('flows', DASH)} on {_bridges(document)}; "
        f"{document.get('security_groups', DASH)} security groups",
        f"- agent CPU and peak RSS: {document.get('usage_source', '/proc')}; vswitchd CPU: "
        "/proc/<pid>/stat of ovs-vswitchd from the scenario's start to when the suite began "
        "verifying (for the cold boots: once every port also had its Port.tag)",
        "",
        *scenario_table(results),
        "",
        "Limit: `ovs-ofctl -O OpenFlow13 --bundle add-flows` of the final flow dump into an empty "
        "bridge. Legacy: neutron's way, per port an `ovs-vsctl set Port` (tag, other_config) and "
        "`ovs-ofctl --bundle add-flows` of its flows in chunks of 100, sequentially "
        "(extrap. = timed on a sample of ports, scaled to all).",
        "",
        "## Targets",
        "",
        *target_table(checks),
    ]
    timeline = timeline_table(results)
    if timeline:
        lines += ["", "## Where the time went, from the agent's own log lines", "",
                  *timeline, "", TIMELINE_NOTE]  # fmt: skip
    cold_plug = document.get("cold_plug") or []
    if cold_plug:
        lines += ["", "## Cold boot with the agent running, against the limit", "",
                  *cold_plug_table(cold_plug), "", COLD_PLUG_NOTE, "",
                  "ovs-vswitchd CPU seconds by phase:", "",
                  *cpu_split_table(cold_plug)]  # fmt: skip
    scaling = [row for row in document.get("scaling") or [] if "cold_boot_seconds" in row]
    if scaling:
        lines += ["", "## Scaling", "", *scaling_table(scaling)]
    notes = document.get("notes") or []
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"
