"""The suite's result schema, the ratios it reports and the targets it checks (pure).

``results.json`` is ``{"ports": N, "machine": {...}, "scenarios": {NAME: {"seconds": ..,
"limit_seconds": .., "legacy_seconds": .., "cpu_seconds": .., "peak_rss_mb": .., ...}}, ...}``.
A figure that was not measured is ``null``, never a guess; an extrapolated baseline says so
(``legacy_extrapolated_from`` ports). ``cold_plug`` (cold boot with the agent running) carries
``vswitchd_cpu_seconds``, ``limit_vswitchd_cpu_seconds`` and ``vswitchd_cpu_vs_limit`` against
the plug limit (``baselines.plug_limit``); ``cold_plug_row`` flattens them per size.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = (
    "cold_boot",
    "cold_plug",
    "snapshot_restore",
    "ovs_restart",
    "agent_restart",
    "reboot_storm",
    "single_reboot",
)
TITLES = {
    "cold_boot": "1. cold boot (RPC answers)",
    "cold_plug": "1b. cold boot, agent running (one ovs-vsctl plugs all)",
    "snapshot_restore": "2. host reboot, server down (snapshot)",
    "ovs_restart": "3. OVS restart (after OpenFlow answers)",
    "agent_restart": "4. agent restart",
    "reboot_storm": "5. VM reboot storm (all ports)",
    "single_reboot": "6. single VM reboot (p99)",
}


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is not positive."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/max/mean of latencies in milliseconds."""
    if not samples_ms:
        return {"count": 0}
    return {
        "count": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p90_ms": round(percentile(samples_ms, 90), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "max_ms": round(max(samples_ms), 2),
        "mean_ms": round(statistics.fmean(samples_ms), 2),
    }


@dataclass
class ScenarioResult:
    """One scenario's figures. ``seconds`` is the headline wall time (see README per scenario)."""

    name: str
    seconds: float | None = None
    limit_seconds: float | None = None
    legacy_seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def vs_limit(self) -> float | None:
        return ratio(self.seconds, self.limit_seconds)

    @property
    def vs_legacy(self) -> float | None:
        return ratio(self.seconds, self.legacy_seconds)

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int = 4) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "seconds": rounded(self.seconds),
            "limit_seconds": rounded(self.limit_seconds),
            "legacy_seconds": rounded(self.legacy_seconds, 2),
            "vs_limit": rounded(self.vs_limit, 2),
            "vs_legacy": rounded(self.vs_legacy, 5),
            "cpu_seconds": rounded(self.cpu_seconds, 3),
            "peak_rss_mb": rounded(self.peak_rss_mb, 1),
            **self.details,
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> ScenarioResult:
        known = {"seconds", "limit_seconds", "legacy_seconds", "cpu_seconds", "peak_rss_mb"}
        derived = {"vs_limit", "vs_legacy"}
        return cls(
            name=name,
            **{key: data.get(key) for key in known},
            details={k: v for k, v in data.items() if k not in known | derived},
        )


# ---- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """One target against what was measured: ``met`` None when it could not be measured."""

    scenario: str
    what: str
    target: str
    measured: str
    met: bool | None


LIMIT_FACTOR = 1.5
VSWITCHD_CPU_FACTOR = 1.2  # issue 19: a cold boot's ovs-vswitchd CPU against the limit run's
PEAK_RSS_MB = 150.0
SECONDS_TARGETS = {
    "cold_boot": 3.0,
    "snapshot_restore": 1.5,
    "ovs_restart": 1.5,
    "reboot_storm": 2.0,
}
SINGLE_REBOOT_P99_MS = 50.0


def _upto(scenario: str, what: str, value: float | None, bound: float, unit: str) -> TargetCheck:
    if value is None:
        return TargetCheck(scenario, what, f"<= {bound:g} {unit}", "not measured", None)
    over = value / bound
    note = "" if value <= bound else f" ({over:.1f}x the target)"
    return TargetCheck(scenario, what, f"<= {bound:g} {unit}", f"{value:.3g} {unit}{note}",
                       value <= bound)  # fmt: skip


def _zero(scenario: str, what: str, value: Any) -> TargetCheck:
    if not isinstance(value, int):
        return TargetCheck(scenario, what, "0", "not measured", None)
    return TargetCheck(scenario, what, "0", str(value), value == 0)


def check_targets(results: Mapping[str, ScenarioResult]) -> list[TargetCheck]:
    """Every target of the brief that applies to what was run, in scenario order."""
    checks: list[TargetCheck] = []
    for name in SCENARIOS:
        result = results.get(name)
        if result is None:
            continue
        if name in SECONDS_TARGETS:
            checks.append(_upto(name, "wall time", result.seconds, SECONDS_TARGETS[name], "s"))
        if name == "agent_restart":
            checks.append(_zero(name, "FlowMods sent", result.details.get("flowmods")))
            checks.append(_zero(name, "packets lost", result.details.get("lost_packets")))
        if name == "single_reboot":
            p99 = result.details.get("ofport_to_flows", {}).get("p99_ms")
            checks.append(_upto(name, "p99 ofport -> flows", p99, SINGLE_REBOOT_P99_MS, "ms"))
        if result.vs_limit is not None:
            checks.append(_upto(name, "vs practical limit", result.vs_limit, LIMIT_FACTOR, "x"))
        if name == "cold_plug":
            cpu = vswitchd_cpu_vs_limit(result)
            checks.append(_upto(name, "vswitchd CPU vs the limit's", cpu, VSWITCHD_CPU_FACTOR,
                                "x"))  # fmt: skip
        checks.append(_upto(name, "agent peak RSS", result.peak_rss_mb, PEAK_RSS_MB, "MB"))
    return checks


# ---- issue 21 (scale): ratios to the same run's limits, at every size measured ---------------

SCALE_COLD_BOOT_FACTOR = 2.0  # cold boot from the agent's start, RPC included, at 1000 and 3000
SCALE_COLD_BOOT_SIZES = (1000, 3000)
SCALE_OVS_RESTART_FACTOR = 1.2
SCALE_STORM_FACTOR = 2.0  # against the COLD-BOOT limit (the storm's own limit is beside it)
SCALE_PLUG_GROWTH_FACTOR = 1.3  # cost-per-port growth 1000 -> 5000, over the limit's growth
SCALE_RSS_MB = {1000: 150.0, 5000: 400.0}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _by_size(rows: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(row["ports"]): row for row in rows if isinstance(row.get("ports"), int)}


def populated_limit(row: Mapping[str, Any]) -> float | None:
    """ovs-ofctl's ``--bundle add-flows`` of the flows into the bridges holding the ports: the
    cold plug limit's time less its ovs-vsctl transaction (None: not measured)."""
    total, vsctl = (
        _number(row.get("plug_limit_seconds")),
        _number(row.get("plug_limit_vsctl_seconds")),
    )
    if total is None or vsctl is None or total <= vsctl:
        return None
    return total - vsctl


def plug_growth(
    rows: Sequence[Mapping[str, Any]], small: int = 1000, big: int = 5000
) -> float | None:
    """How much faster the cold plug's cost per port grows from ``small`` to ``big`` ports
    than the limit's: (t_big / t_small) / (limit_big / limit_small), which is the ratio of the
    two sizes' vs-limit figures (None: a size is missing)."""
    sizes = _by_size(rows)
    if small not in sizes or big not in sizes:
        return None
    return ratio(_number(sizes[big].get("cold_plug_vs_limit")),
                 _number(sizes[small].get("cold_plug_vs_limit")))  # fmt: skip


def scale_checks(
    results: Mapping[str, ScenarioResult],
    cold_boot_limit: float | None,
    scaling: Sequence[Mapping[str, Any]],
    ports: int,
) -> list[TargetCheck]:
    """Issue 21's targets: each a ratio to a baseline of the same run; the main world's
    figures stand for its size (``ports``), the scaling rows for the others."""
    name = "issue 21"
    sizes = dict(_by_size(scaling))
    cold = results.get("cold_boot")
    if cold is not None and cold.seconds is not None and cold.limit_seconds:
        sizes[ports] = {**sizes.get(ports, {}), "ports": ports, "cold_boot_seconds":
                        cold.seconds, "limit_seconds": cold.limit_seconds,
                        "peak_rss_mb": cold.peak_rss_mb}  # fmt: skip
    checks = []
    for size in SCALE_COLD_BOOT_SIZES:
        row = sizes.get(size, {})
        vs = ratio(_number(row.get("cold_boot_seconds")), _number(row.get("limit_seconds")))
        checks.append(_upto(f"{name}: cold_boot at {size}", "vs practical limit", vs,
                            SCALE_COLD_BOOT_FACTOR, "x"))  # fmt: skip
    restart = results.get("ovs_restart")
    checks.append(_upto(f"{name}: ovs_restart", "vs practical limit",
                        None if restart is None else restart.vs_limit,
                        SCALE_OVS_RESTART_FACTOR, "x"))  # fmt: skip
    storm = results.get("reboot_storm")
    checks.append(_upto(f"{name}: reboot_storm", "vs the cold-boot limit",
                        ratio(None if storm is None else storm.seconds, cold_boot_limit),
                        SCALE_STORM_FACTOR, "x"))  # fmt: skip
    checks.append(_upto(f"{name}: cold_plug 1000 -> 5000", "per-port cost growth vs the limit's",
                        plug_growth(scaling), SCALE_PLUG_GROWTH_FACTOR, "x"))  # fmt: skip
    # the same ratios against ovs-ofctl's bundle of the same flows into the bridges WITH the
    # ports (the cold plug limit's bundle, its ovs-vsctl transaction apart): what ovs-vswitchd
    # itself needs on a host with its ports, which the empty-bridge limit above is not
    for size in sorted(sizes):
        row = sizes[size]
        populated = populated_limit(row)
        if populated is None:
            continue
        checks.append(_upto(f"{name}: cold_boot at {size}", "vs ofctl into the populated bridge",
                            ratio(_number(row.get("cold_boot_seconds")), populated),
                            SCALE_COLD_BOOT_FACTOR, "x"))  # fmt: skip
        restart = results.get("ovs_restart") if size == ports else None
        restart_s = (
            restart.seconds if restart is not None else _number(row.get("ovs_restart_seconds"))
        )
        what = "vs ofctl into the populated bridge"
        checks.append(_upto(f"{name}: ovs_restart at {size}", what, ratio(restart_s, populated),
                            SCALE_OVS_RESTART_FACTOR, "x"))  # fmt: skip
    for size, bound in SCALE_RSS_MB.items():
        row = sizes.get(size, {})
        peaks = [_number(row.get(k)) for k in ("peak_rss_mb", "cold_plug_peak_rss_mb")]
        if size == ports:
            peaks += [r.peak_rss_mb for r in results.values()]
        known = [p for p in peaks if p is not None]
        checks.append(_upto(f"{name}: at {size} ports", "agent peak RSS (any scenario)",
                            max(known) if known else None, bound, "MB"))  # fmt: skip
    return checks


# ---- cold boot with the agent running against the plug limit -------------------------------


def set_plug_limit(result: ScenarioResult, seconds: float, vswitchd_cpu_seconds: float) -> None:
    """The plug limit's wall time and ovs-vswitchd CPU as ``result``'s baseline."""
    result.limit_seconds = seconds
    result.details["limit_vswitchd_cpu_seconds"] = round(vswitchd_cpu_seconds, 3)
    cpu = vswitchd_cpu_vs_limit(result)
    result.details["vswitchd_cpu_vs_limit"] = None if cpu is None else round(cpu, 3)


def vswitchd_cpu_vs_limit(result: ScenarioResult) -> float | None:
    """ovs-vswitchd's CPU in the scenario over its CPU in the limit run (None: not measured)."""

    def seconds(key: str) -> float | None:
        value = result.details.get(key)
        return float(value) if isinstance(value, int | float) else None

    return ratio(seconds("vswitchd_cpu_seconds"), seconds("limit_vswitchd_cpu_seconds"))


def size_checks(rows: Sequence[Mapping[str, Any]], skip: int | None = None) -> list[TargetCheck]:
    """The cold plug's targets at each size of ``rows`` (``cold_plug_row`` form) but ``skip``
    (the main run's, checked with its scenario): wall time and ovs-vswitchd CPU vs the limit."""
    checks = []
    for row in sorted(rows, key=lambda row: int(row.get("ports", 0))):
        if row.get("ports") == skip:
            continue
        name = f"cold_plug at {row.get('ports')}"
        checks.append(_upto(name, "vs practical limit", row.get("cold_plug_vs_limit"),
                            LIMIT_FACTOR, "x"))  # fmt: skip
        checks.append(_upto(name, "vswitchd CPU vs the limit's",
                            row.get("cold_plug_vswitchd_cpu_vs_limit"), VSWITCHD_CPU_FACTOR,
                            "x"))  # fmt: skip
    return checks


def _median_of(runs: Any, key: str) -> float | None:
    """The median of ``key`` over the limit's runs (None: none has it)."""
    if not isinstance(runs, list):
        return None
    values = [run[key] for run in runs if isinstance(run, Mapping) and run.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def cold_plug_row(ports: int, result: ScenarioResult | None) -> dict[str, Any]:
    """One size's cold boot with the agent running, against its limit, flat (the JSON's
    ``cold_plug`` rows and the scaling rows' ``cold_plug_*`` keys); nulls when it failed."""
    failed = result is None or "error" in result.details
    good = ScenarioResult("cold_plug") if result is None or failed else result

    def figure(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "ports": ports,
        "cold_plug_seconds": figure(good.seconds, 4),
        "plug_limit_seconds": figure(good.limit_seconds, 4),
        "cold_plug_vs_limit": figure(good.vs_limit),
        "cold_plug_vswitchd_cpu_seconds": good.details.get("vswitchd_cpu_seconds"),
        "plug_limit_vswitchd_cpu_seconds": good.details.get("limit_vswitchd_cpu_seconds"),
        "cold_plug_vswitchd_cpu_vs_limit": figure(vswitchd_cpu_vs_limit(good)),
        "cold_plug_tag_wait_seconds": good.details.get("tag_wait_seconds"),
        "cold_plug_polling_vswitchd_cpu_at_most": good.details.get("suite_polling", {}).get(
            "vswitchd_cpu_seconds_at_most"
        ),
        # where ovs-vswitchd's CPU went: the plug command, the flows, after them (the tags)
        "cold_plug_vswitchd_cpu_plug_command": good.details.get(
            "vswitchd_cpu_plug_command_seconds"
        ),
        "cold_plug_vswitchd_cpu_after_flows": good.details.get("vswitchd_cpu_after_flows_seconds"),
        "plug_limit_vsctl_seconds": _median_of(good.details.get("limit_runs"), "vsctl_seconds"),
        "plug_limit_vsctl_vswitchd_cpu_seconds": _median_of(
            good.details.get("limit_runs"), "vsctl_vswitchd_cpu_seconds"
        ),
        "cold_plug_agent_cpu_seconds": figure(good.cpu_seconds),
        "cold_plug_peak_rss_mb": figure(good.peak_rss_mb, 1),
        "cold_plug_flows": good.details.get("verified", {}).get("flows"),
        "cold_plug_error": None if result is None else result.details.get("error"),
    }
