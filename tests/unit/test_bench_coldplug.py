"""Cold boot with the agent running against the plug limit: the suite's pure parts (ratios,
rows, report, the limit's commands, local VLANs read from the switch's flows)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.baselines import PlugLimit, PlugLimitRun, aggregate_flow_count
from benchmarks.suite.__main__ import cold_plug_rows, output_stem, parse_args
from benchmarks.suite.dataplane import (
    COUNT_INTERVAL,
    POLL_INTERVAL,
    FlowWatch,
    Probe,
    cold_boot_intervals,
)
from benchmarks.suite.expected import ExpectationError, local_vlans, port_zones, vlan_sources
from benchmarks.suite.report import cold_plug_table, cpu_split_table, render
from benchmarks.suite.results import (
    ScenarioResult,
    check_targets,
    cold_plug_row,
    set_plug_limit,
    size_checks,
    vswitchd_cpu_vs_limit,
)
from benchmarks.suite.scenarios import polling_estimate
from benchmarks.suite.usage import CpuSample, quiet_since, settled
from benchmarks.suite.world import VmPort, bridge_args, port_copy_args, transaction

from aovs.sandbox import OVSSandbox


def plugged(seconds: float = 3.0, cpu: float | None = 7.5) -> ScenarioResult:
    details: dict[str, Any] = {
        "tag_wait_seconds": 4.2,
        "verified": {"ok": True, "flows": 52000},
        "suite_polling": {"vswitchd_cpu_seconds_at_most": 0.2},
    }
    if cpu is not None:
        details["vswitchd_cpu_seconds"] = cpu
    return ScenarioResult("cold_plug", seconds, cpu_seconds=2.5, peak_rss_mb=150.04,
                          details=details)  # fmt: skip


# ---- ratios and targets ---------------------------------------------------------------------


def test_the_plug_limit_sets_the_baseline_and_the_cpu_ratio() -> None:
    result = plugged()
    set_plug_limit(result, seconds=1.5, vswitchd_cpu_seconds=6.0)
    assert result.limit_seconds == 1.5
    assert result.vs_limit == pytest.approx(2.0)
    assert result.details["limit_vswitchd_cpu_seconds"] == 6.0
    assert result.details["vswitchd_cpu_vs_limit"] == pytest.approx(1.25)
    assert vswitchd_cpu_vs_limit(result) == pytest.approx(1.25)


def test_no_cpu_ratio_without_both_cpu_figures() -> None:
    unmeasured = plugged(cpu=None)
    set_plug_limit(unmeasured, seconds=1.0, vswitchd_cpu_seconds=6.0)
    assert unmeasured.details["vswitchd_cpu_vs_limit"] is None
    zero_limit = plugged()
    set_plug_limit(zero_limit, seconds=1.0, vswitchd_cpu_seconds=0.0)
    assert vswitchd_cpu_vs_limit(zero_limit) is None


@pytest.mark.parametrize(("cpu", "met"), [(7.1, True), (7.3, False)])
def test_the_vswitchd_cpu_target_is_1_2_times_the_limit(cpu: float, met: bool) -> None:
    result = plugged(cpu=cpu)
    set_plug_limit(result, seconds=2.0, vswitchd_cpu_seconds=6.0)
    (check,) = [c for c in check_targets({"cold_plug": result}) if "vswitchd" in c.what]
    assert check.met is met
    assert check.target == "<= 1.2 x"
    # the wall time is checked against the limit too (1.5x), and the agent's peak RSS
    whats = {c.what for c in check_targets({"cold_plug": result})}
    assert {"vs practical limit", "agent peak RSS"} <= whats


def test_the_cpu_target_is_not_measured_without_a_limit() -> None:
    (check,) = [c for c in check_targets({"cold_plug": plugged()}) if "vswitchd" in c.what]
    assert check.met is None


# ---- rows -----------------------------------------------------------------------------------


def test_a_row_holds_both_cpu_figures_their_ratio_and_the_tag_wait() -> None:
    result = plugged()
    set_plug_limit(result, seconds=1.5, vswitchd_cpu_seconds=6.0)
    row = cold_plug_row(1000, result)
    assert row["ports"] == 1000
    assert row["cold_plug_seconds"] == 3.0
    assert row["plug_limit_seconds"] == 1.5
    assert row["cold_plug_vs_limit"] == 2.0
    assert row["cold_plug_vswitchd_cpu_seconds"] == 7.5
    assert row["plug_limit_vswitchd_cpu_seconds"] == 6.0
    assert row["cold_plug_vswitchd_cpu_vs_limit"] == 1.25
    assert row["cold_plug_tag_wait_seconds"] == 4.2
    assert row["cold_plug_polling_vswitchd_cpu_at_most"] == 0.2
    assert row["cold_plug_peak_rss_mb"] == 150.0
    assert row["cold_plug_flows"] == 52000
    assert row["cold_plug_error"] is None


def test_a_failed_or_missing_run_is_a_row_of_nulls_with_its_error() -> None:
    failed = cold_plug_row(5000, ScenarioResult("cold_plug", details={"error": "timeout"}))
    assert failed["cold_plug_error"] == "timeout"
    assert failed["cold_plug_seconds"] is None
    assert failed["cold_plug_vswitchd_cpu_vs_limit"] is None
    missing = cold_plug_row(3000, None)
    assert missing["cold_plug_error"] is None
    assert all(v is None for k, v in missing.items() if k != "ports")


def test_rows_per_size_from_the_main_run_and_the_scaling_sizes() -> None:
    main = plugged()
    set_plug_limit(main, 1.5, 6.0)
    scaling = [
        {"ports": 1000, "cold_boot_seconds": 9.0, **cold_plug_row(1000, main)},
        {"ports": 5000, "cold_boot_seconds": 99.0, **cold_plug_row(5000, plugged(30.0, 80.0))},
        {"ports": 3000, "cold_boot_seconds": 50.0},  # the cold plug was not run
    ]
    rows = cold_plug_rows(1000, main, scaling)
    assert [row["ports"] for row in rows] == [1000, 5000]
    assert rows[1]["cold_plug_seconds"] == 30.0
    assert "cold_boot_seconds" not in rows[1]


# ---- report ---------------------------------------------------------------------------------


def test_the_report_table_has_a_row_per_size_in_order() -> None:
    small = plugged()
    set_plug_limit(small, 1.5, 6.0)
    rows = [cold_plug_row(3000, ScenarioResult("cold_plug", details={"error": "boom"})),
            cold_plug_row(1000, small)]  # fmt: skip
    lines = cold_plug_table(rows)
    assert lines[2].startswith("| 1000 | 52000 | 3 | 1.5 | 2.00x | 7.5 | 0.2 | 6 | 1.25x | 4.2 |")
    assert lines[3].startswith("| 3000 | FAILED: boom |")
    assert lines[3].count("|") == lines[2].count("|")


def test_render_shows_the_cold_plug_section_and_its_target() -> None:
    result = plugged()
    set_plug_limit(result, 1.5, 6.0)
    data = result.to_json()
    document = {"ports": 1000, "scenarios": {"cold_plug": data},
                "cold_plug": [cold_plug_row(1000, result)], "vxlan": False}  # fmt: skip
    results = {"cold_plug": ScenarioResult.from_json("cold_plug", data)}
    text = render(document, check_targets(results))
    assert "## Cold boot with the agent running, against the limit" in text
    assert "| 1b. cold boot, agent running" in text
    assert (
        "| cold_plug | vswitchd CPU vs the limit's | <= 1.2 x | 1.25 x (1.0x the target) | **no** |"
        in text
    )
    assert "## Scaling" not in text


# ---- command line ---------------------------------------------------------------------------


def test_only_runs_one_scenario_into_its_own_files() -> None:
    args = parse_args(["--only", "cold_plug", "--ports", "1000", "--scaling-sizes", "1000,3000"])
    assert args.only == ("cold_plug",)
    assert args.scaling == [1000, 3000]
    assert output_stem(args) == "results-cold_plug"
    named = parse_args(["--only", "cold_plug", "--stem", "coldboot-cpu"])
    assert output_stem(named) == "coldboot-cpu"
    assert output_stem(parse_args(["--ports", "100"])) == "results-quick"
    assert output_stem(parse_args([])) == "results"
    assert parse_args([]).only is None


def test_only_rejects_unknown_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--only", "cold_plug,reboot_storm"])
    assert "cold_boot, cold_plug" in capsys.readouterr().err


# ---- the limit's commands -------------------------------------------------------------------


def test_the_limit_plugs_each_port_with_its_tag_and_ofport() -> None:
    vm = VmPort(3, "port-3", "tapport-3", "fa:16:3e:00:00:03", "net-1")
    args = vm.plug_args(ofport_request=14, tag=5)
    assert args[:4] == ["add-port", "br-int", "tapport-3", "tag=5"]
    assert "external_ids:iface-id=port-3" in args and args[-1] == "ofport_request=14"
    assert "tag=5" not in vm.plug_args()  # libvirt's own never sets a tag


def test_a_copied_port_keeps_type_options_and_ofport() -> None:
    row = {"name": "vxlan-c0000201", "type": "vxlan", "ofport": 6,
           "options": {"remote_ip": "192.0.2.1", "key": "flow"}}  # fmt: skip
    assert port_copy_args("br-tun", row) == [
        "add-port", "br-tun", "vxlan-c0000201", "--", "set", "Interface", "vxlan-c0000201",
        "type=vxlan", "options:key=flow", "options:remote_ip=192.0.2.1", "ofport_request=6",
    ]  # fmt: skip
    plain = port_copy_args("br-phys", {"name": "br-phys-up", "type": "", "ofport": None})
    assert plain == ["add-port", "br-phys", "br-phys-up", "--", "set", "Interface", "br-phys-up"]
    setup = transaction([bridge_args("br-int"), port_copy_args("br-int", row)])
    assert setup[:3] == ["--may-exist", "add-br", "br-int"]
    assert setup.count("--") == 3


def test_flow_count_of_dump_aggregate() -> None:
    text = "OFPST_AGGREGATE reply (OF1.3) (xid=0x2): packet_count=0 byte_count=0 flow_count=52\n"
    assert aggregate_flow_count(text) == 52
    with pytest.raises(ValueError):
        aggregate_flow_count("nothing here")


def test_the_limit_is_the_median_of_its_runs_figure_by_figure() -> None:
    runs = tuple(PlugLimitRun(seconds, 0.1, seconds - 0.1, cpu, cpu / 2, 0.01)
                 for seconds, cpu in ((1.0, 9.0), (3.0, 5.0), (2.0, 7.0)))  # fmt: skip
    limit = PlugLimit(ports=1000, flows=52000, runs=runs)
    assert limit.seconds == 2.0
    assert limit.vswitchd_cpu_seconds == 7.0
    data = limit.to_json()
    assert data["seconds"] == 2.0 and data["vswitchd_cpu_seconds"] == 7.0
    assert len(data["runs"]) == 3  # type: ignore[arg-type]


# ---- local VLANs before the agent wrote Port.tag -------------------------------------------

TABLE_60 = [
    "cookie=0x1, table=60, priority=100,in_port=10 actions=set_field:0xa->reg5,"
    "set_field:0x3->reg6,goto_table:71",
    "cookie=0x1, table=60, priority=100,in_port=11 actions=set_field:0xb->reg5,"
    "set_field:0x4->reg6,goto_table:73",
    "cookie=0x1, table=60, priority=90,dl_vlan=3,dl_dst=fa:16:3e:00:00:01 "
    "actions=set_field:0xa->reg5,set_field:0x3->reg6,pop_vlan,goto_table:81",
    "cookie=0x1, table=60, priority=3 actions=goto_table:110",
]


def test_port_zones_are_read_from_the_firewalls_table_60() -> None:
    assert port_zones(TABLE_60) == {10: 3, 11: 4}


def test_a_tag_wins_and_an_untagged_port_takes_its_flows_zone() -> None:
    vms = [VmPort(0, "p0", "tap0", "fa:16:3e:00:00:01", "net-a"),
           VmPort(1, "p1", "tap1", "fa:16:3e:00:00:02", "net-b"),
           VmPort(2, "p2", "tap2", "fa:16:3e:00:00:03", "net-a")]  # fmt: skip
    ofports = {"tap0": 10, "tap1": 11, "tap2": 12}
    zones = port_zones(TABLE_60) | {12: 3}
    sources = vlan_sources(vms, {"tap0": None, "tap1": 4095, "tap2": 3}, zones, ofports)
    assert sources == {"tap0": 3, "tap1": 4, "tap2": 3}
    assert local_vlans(vms, sources) == {"net-a": 3, "net-b": 4}
    # a port neither tagged nor wired has no local VLAN: the dataplane is not correct yet
    unwired = vlan_sources(vms, {}, {10: 3, 11: 4}, ofports)
    assert unwired["tap2"] is None
    with pytest.raises(ExpectationError):
        local_vlans(vms, unwired)


# ---- the suite's own polling ----------------------------------------------------------------


def test_cold_boot_polling_coarsens_with_the_ports_within_bounds() -> None:
    assert cold_boot_intervals(100) == (POLL_INTERVAL, COUNT_INTERVAL)
    assert cold_boot_intervals(1000) == pytest.approx((0.01, 0.1))
    assert cold_boot_intervals(5000) == pytest.approx((0.05, 0.5))
    assert cold_boot_intervals(20000)[0] == 0.05


def test_the_polling_estimate_bounds_its_share_of_vswitchd_cpu() -> None:
    figures = polling_estimate((300, 4), (0.01, 0.1), (0.0002, 0.03))
    assert figures["probe_requests"] == 300 and figures["count_rounds"] == 4
    assert figures["vswitchd_cpu_per_probe_ms"] == 0.2
    assert figures["vswitchd_cpu_seconds_at_most"] == pytest.approx(0.18)
    unmeasured = polling_estimate((300, 4), (0.01, 0.1), None)
    assert unmeasured["vswitchd_cpu_seconds_at_most"] is None


async def test_a_poll_asks_the_probe_that_failed_last_first(tmp_path: Path) -> None:
    watch = FlowWatch(OVSSandbox(tmp_path), [])
    wired = {1, 2}
    asked: list[int] = []

    async def count(bridge: str, table: int = 0, **match: Any) -> int | None:
        if "in_port" not in match:
            return 5
        asked.append(match["in_port"])
        return 1 if match["in_port"] in wired else 0

    watch.count = count  # type: ignore[method-assign]
    probes = [Probe("br-int", 60, ofport, 1) for ofport in (1, 2, 3, 4)]
    assert not await watch.matches({"br-int": 5}, probes, count_interval=0.0)
    assert asked == [1, 2, 3]
    asked.clear()
    assert not await watch.matches({"br-int": 5}, probes, count_interval=0.0)
    assert asked == [3]  # one request while port 3 is not wired
    wired.update({3, 4})
    asked.clear()
    assert await watch.matches({"br-int": 5}, probes, count_interval=0.0)
    assert sorted(asked) == [1, 2, 3, 4]  # all of them, in the poll that matches
    assert watch.probe_requests == 3 + 1 + 4 and watch.count_rounds == 1


def test_the_cpu_split_sets_each_phase_beside_the_limits() -> None:
    result = plugged(cpu=7.5)
    result.details.update(vswitchd_cpu_plug_command_seconds=1.0,
                          vswitchd_cpu_after_flows_seconds=2.0,
                          limit_runs=[{"vsctl_vswitchd_cpu_seconds": 1.5},
                                      {"vsctl_vswitchd_cpu_seconds": 0.5},
                                      {"vsctl_vswitchd_cpu_seconds": 1.0}])  # fmt: skip
    set_plug_limit(result, 1.5, 6.0)
    row = cold_plug_row(1000, result)
    assert row["plug_limit_vsctl_vswitchd_cpu_seconds"] == 1.0
    (line,) = cpu_split_table([row])[2:]
    # command 1, limit's transaction 1, flows 7.5 - 1 - 2, limit's bundles 6 - 1, after 2
    assert line == "| 1000 | 1 | 1 | 4.5 | 5 | 2 |"


# ---- when ovs-vswitchd is done with the last write --------------------------------------------


def test_quiet_starts_where_a_run_of_quiet_intervals_begins() -> None:
    busy_then_quiet = [CpuSample(7, value) for value in (1.0, 1.1, 1.2, 1.21, 1.21, 1.22, 1.22)]
    assert quiet_since(busy_then_quiet, threshold=0.015, run=3) == CpuSample(7, 1.2)
    assert quiet_since(busy_then_quiet[:5], threshold=0.015, run=3) is None  # not long enough
    interrupted = [CpuSample(7, value) for value in (1.0, 1.0, 1.0, 1.2, 1.2, 1.2, 1.2)]
    assert quiet_since(interrupted, threshold=0.015, run=3) == CpuSample(7, 1.2)
    restarted = [CpuSample(7, 1.0), CpuSample(7, 1.0), CpuSample(9, 0.1), CpuSample(9, 0.1)]
    assert quiet_since(restarted, threshold=0.015, run=2) is None


async def test_settled_returns_the_start_of_the_quiet() -> None:
    values = iter([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])

    def sample() -> CpuSample:
        return CpuSample(3, next(values))

    assert await settled(sample, within=5.0, interval=0.0) == CpuSample(3, 1.0)


def test_each_other_size_has_its_own_targets() -> None:
    rows: list[dict[str, Any]] = [
        {"ports": 5000, "cold_plug_vs_limit": 1.4, "cold_plug_vswitchd_cpu_vs_limit": 1.3},
        {"ports": 1000, "cold_plug_vs_limit": 2.0, "cold_plug_vswitchd_cpu_vs_limit": 1.1},
        {"ports": 3000, "cold_plug_vs_limit": None, "cold_plug_vswitchd_cpu_vs_limit": None},
    ]
    checks = size_checks(rows, skip=1000)
    assert [(c.scenario, c.what, c.met) for c in checks] == [
        ("cold_plug at 3000", "vs practical limit", None),
        ("cold_plug at 3000", "vswitchd CPU vs the limit's", None),
        ("cold_plug at 5000", "vs practical limit", True),
        ("cold_plug at 5000", "vswitchd CPU vs the limit's", False),
    ]
