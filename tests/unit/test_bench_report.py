"""results.md rendering: every scenario on one row, dashes for what was not measured."""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.suite.report import number, render, scenario_table, times
from benchmarks.suite.results import ScenarioResult, check_targets


def test_numbers_keep_three_significant_digits() -> None:
    assert number(None) == "-"
    assert number(0.0) == "0"
    assert number(1.23456) == "1.23"
    assert number(0.0012345) == "0.00123"
    assert number(12345.6) == "12,346"


def test_ratios() -> None:
    assert times(None) == "-"
    assert times(1.234) == "1.23x"
    assert times(0.0123) == "0.012x"


def test_scenario_rows_in_order_with_ratios_and_verdicts() -> None:
    results = {
        "ovs_restart": ScenarioResult(
            "ovs_restart", 0.9, 0.6, 90.0, 0.8, 70.0,
            {"verified": {"ok": True, "flows": 30000, "traces": {"passed": 24}}},
        ),
        "cold_boot": ScenarioResult(
            "cold_boot", 2.0, 1.0, 300.0, 1.9, 90.0,
            {"legacy_extrapolated_from": 25,
             "verified": {"ok": False, "problem": "br-int: 3 flows missing"}},
        ),
    }  # fmt: skip
    lines = scenario_table(results)
    assert lines[2].startswith("| 1. cold boot")
    assert lines[3].startswith("| 3. OVS restart")
    assert "2.00x" in lines[2] and "300 (extrap.)" in lines[2]
    assert "NO: br-int: 3 flows missing" in lines[2]
    assert "1.50x" in lines[3] and "yes (30000 flows, 24 traces)" in lines[3]


def test_agent_restart_and_single_reboot_headlines() -> None:
    results = {
        "agent_restart": ScenarioResult(
            "agent_restart", 1.2, details={"flowmods": 0, "lost_packets": 0,
                                           "injected_packets": 80}),
        "single_reboot": ScenarioResult(
            "single_reboot", 0.02, details={"ofport_to_flows": {
                "count": 500, "p50_ms": 5.0, "p90_ms": 9.0, "p99_ms": 20.0, "max_ms": 31.0}}),
    }  # fmt: skip
    text = "\n".join(scenario_table(results))
    assert "0 FlowMods; 0/80 packets lost" in text
    assert "p50 5 / p90 9 / p99 20 / max 31 ms" in text


def test_render_states_the_vxlan_tunnel_ports_and_the_switch_cpu() -> None:
    document = {
        "ports": 100,
        "vxlan": True,
        "network_types": ["vlan", "vxlan"],
        "networks": 2,
        "tunnel_ports": ["vxlan-c0000201", "vxlan-c0000202"],
        "scenarios": {"cold_boot": ScenarioResult(
            "cold_boot", 2.0, 1.0, details={"vswitchd_cpu_seconds": 0.75}).to_json()},
    }  # fmt: skip
    text = render(document, [])
    assert "alternating vlan, vxlan; br-tun with 2 vxlan ports (vxlan-c0000201" in text
    assert "on br-int, br-phys and br-tun" in text
    assert "| 0.75 |" in text


def test_render_states_vlan_only_and_lists_targets() -> None:
    document = {
        "ports": 100,
        "vxlan": False,
        "network_types": ["vlan"],
        "scenarios": {"cold_boot": ScenarioResult("cold_boot", 4.0, 1.0).to_json()},
        "scaling": [{"ports": 100, "flows": 3000, "cold_boot_seconds": 1.0}],
        "notes": ["a note"],
    }
    checks = check_targets({"cold_boot": ScenarioResult("cold_boot", 4.0, 1.0)})
    text = render(document, checks)
    assert text.startswith("# aovs reboot benchmark: 100 ports")
    assert "(no br-tun)" in text
    assert "| cold_boot | wall time | <= 3 s | 4 s (1.3x the target) | **no** |" in text
    assert "## Scaling" in text and "| 100 | 3000 | 1 |" in text
    assert "- a note" in text


def test_a_failed_scenario_says_so_in_its_row() -> None:
    results = {"reboot_storm": ScenarioResult("reboot_storm", details={"error": "flows late"})}
    (row,) = scenario_table(results)[2:]
    assert "| failed |" in row and "FAILED: flows late" in row
