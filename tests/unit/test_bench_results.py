"""The suite's pure parts: result schema, ratios, percentiles, targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.suite.results import (
    ScenarioResult,
    check_targets,
    distribution,
    percentile,
    plug_growth,
    populated_limit,
    ratio,
    scale_checks,
)


def test_ratio_is_none_without_a_usable_baseline() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0


@pytest.mark.parametrize("bad", [-1, 101])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], bad)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_distribution_reports_the_tail() -> None:
    dist = distribution([10.0] * 98 + [40.0, 90.0])
    assert dist["count"] == 100
    assert dist["p50_ms"] == 10.0
    assert dist["max_ms"] == 90.0
    assert 40.0 <= dist["p99_ms"] <= 90.0
    assert distribution([]) == {"count": 0}


def test_schema_round_trip_keeps_figures_and_details() -> None:
    result = ScenarioResult("cold_boot", 2.0, 1.0, 200.0, 1.5, 80.0, {"flows": 123})
    data = result.to_json()
    assert data["seconds"] == 2.0
    assert data["vs_limit"] == 2.0
    assert data["vs_legacy"] == 0.01
    assert data["flows"] == 123
    back = ScenarioResult.from_json("cold_boot", data)
    assert back == result


def test_unmeasured_figures_are_null_not_zero() -> None:
    data = ScenarioResult("ovs_restart").to_json()
    assert data["seconds"] is None
    assert data["vs_limit"] is None
    assert data["peak_rss_mb"] is None


def _by(checks: list, scenario: str, what: str):  # type: ignore[no-untyped-def]
    (check,) = [c for c in checks if c.scenario == scenario and c.what == what]
    return check


def test_targets_say_met_missed_and_by_how_much() -> None:
    checks = check_targets(
        {
            "cold_boot": ScenarioResult("cold_boot", seconds=4.5, limit_seconds=1.0,
                                        peak_rss_mb=100.0),
            "agent_restart": ScenarioResult("agent_restart", details={"flowmods": 0,
                                                                      "lost_packets": 3}),
            "single_reboot": ScenarioResult("single_reboot", peak_rss_mb=160.0,
                                            details={"ofport_to_flows": {"p99_ms": 20.0}}),
        }
    )  # fmt: skip
    wall = _by(checks, "cold_boot", "wall time")
    assert wall.met is False
    assert "1.5x the target" in wall.measured
    assert _by(checks, "cold_boot", "vs practical limit").met is False
    assert _by(checks, "cold_boot", "agent peak RSS").met is True
    assert _by(checks, "agent_restart", "FlowMods sent").met is True
    assert _by(checks, "agent_restart", "packets lost").met is False
    assert _by(checks, "single_reboot", "p99 ofport -> flows").met is True
    assert _by(checks, "single_reboot", "agent peak RSS").met is False


def test_a_target_that_was_not_measured_is_neither_met_nor_missed() -> None:
    checks = check_targets({"agent_restart": ScenarioResult("agent_restart")})
    assert {c.met for c in checks} == {None}
    assert all(c.measured == "not measured" for c in checks)


def test_plug_growth_is_the_ratio_of_the_sizes_vs_limit_figures() -> None:
    rows = [{"ports": 1000, "cold_plug_vs_limit": 1.5}, {"ports": 5000, "cold_plug_vs_limit": 0.9}]
    assert plug_growth(rows) == pytest.approx(0.6)
    assert plug_growth(rows[:1]) is None


def test_scale_targets_use_the_main_run_at_its_size_and_the_rows_elsewhere() -> None:
    results = {
        "cold_boot": ScenarioResult("cold_boot", seconds=2.2, limit_seconds=1.0,
                                    peak_rss_mb=140.0),
        "ovs_restart": ScenarioResult("ovs_restart", seconds=1.5, limit_seconds=1.0),
        "reboot_storm": ScenarioResult("reboot_storm", seconds=3.0, limit_seconds=3.0,
                                       peak_rss_mb=160.0),
    }  # fmt: skip
    rows = [
        {"ports": 3000, "cold_boot_seconds": 5.0, "limit_seconds": 3.0, "peak_rss_mb": 300.0},
        {"ports": 5000, "peak_rss_mb": 380.0, "cold_plug_peak_rss_mb": 410.0},
    ]
    checks = {c.scenario + " / " + c.what: c for c in scale_checks(results, 1.0, rows, 1000)}
    assert checks["issue 21: cold_boot at 1000 / vs practical limit"].met is False  # 2.2x
    assert checks["issue 21: cold_boot at 3000 / vs practical limit"].met is True  # 1.67x
    assert checks["issue 21: ovs_restart / vs practical limit"].met is False  # 1.5x
    # 3 s against the cold-boot limit of 1 s, not against its own 3 s limit
    assert checks["issue 21: reboot_storm / vs the cold-boot limit"].met is False
    # the storm's 160 MB at the main size counts, as the 410 MB cold plug does at 5000
    assert checks["issue 21: at 1000 ports / agent peak RSS (any scenario)"].met is False
    assert checks["issue 21: at 5000 ports / agent peak RSS (any scenario)"].met is False
    assert (
        checks["issue 21: cold_plug 1000 -> 5000 / per-port cost growth vs the limit's"].met is None
    )


def test_the_populated_bridge_limit_is_the_plug_limit_without_its_transaction() -> None:
    assert populated_limit({"plug_limit_seconds": 26.1, "plug_limit_vsctl_seconds": 8.7}) == (
        pytest.approx(17.4)
    )
    assert populated_limit({"plug_limit_seconds": 26.1}) is None
    rows = [{"ports": 3000, "cold_boot_seconds": 28.3, "limit_seconds": 2.27,
             "ovs_restart_seconds": 18.0, "plug_limit_seconds": 26.1,
             "plug_limit_vsctl_seconds": 8.7}]  # fmt: skip
    checks = {c.scenario + " / " + c.what: c for c in scale_checks({}, None, rows, 1000)}
    assert checks["issue 21: cold_boot at 3000 / vs practical limit"].met is False  # 12.5x
    assert checks["issue 21: cold_boot at 3000 / vs ofctl into the populated bridge"].met is True
    assert checks["issue 21: ovs_restart at 3000 / vs ofctl into the populated bridge"].met is True
