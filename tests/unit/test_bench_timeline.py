"""The suite's per-phase timeline, read from the agent's own JSON log lines (pure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.suite.agent_process import AgentLog, phase_timeline


def _line(ts: float, msg: str, **fields: object) -> str:
    return json.dumps({"ts": ts, "level": "INFO", "msg": msg, **fields})


def test_the_phases_of_a_cold_boot_from_the_agents_lines() -> None:
    log = AgentLog()
    log.feed("\n".join([
        _line(99.0, "bundle committed", flowmods=50_000, ms=900.0),  # an earlier scenario's
        _line(100.8, "status socket listening"),
        _line(101.1, "connected to broker guest@127.0.0.1:5672/v"),
        _line(101.5, "dataplane installed", ports=2, flowmods=10, ms=700.0),
        _line(102.0, "port wired", iface_id="a", ofport=1, phase="wired", ms=5.0),
        _line(103.2, "bundle committed", bridge="br-int", flowmods=24_104, ms=1003.2),
        _line(104.9, "port wired", iface_id="b", ofport=2, phase="wired", ms=5.0),
        _line(105.0, "bundle committed", bridge="br-int", flowmods=42_986, ms=1611.1),
    ]))  # fmt: skip
    timeline = phase_timeline(log, since=100.0)
    assert timeline["first_line_s"] == 0.8
    assert timeline["broker_connected_s"] == 1.1
    assert timeline["first_install_done_s"] == 1.5
    assert [b["flowmods"] for b in timeline["big_bundles"]] == [24_104, 42_986]
    assert timeline["big_bundles"][1] == {"done_s": 5.0, "flowmods": 42_986, "commit_ms": 1611.1}
    assert (timeline["first_port_wired_s"], timeline["last_port_wired_s"]) == (2.0, 4.9)
    assert timeline["ports_wired"] == 2


def test_a_running_agents_replay_after_an_ovs_restart() -> None:
    log = AgentLog()
    log.feed(_line(10.5, "OpenFlow reconnected: flows replayed from state, no RPC",
                   bridge="br-int", flows=66_000, ms=1200.0))  # fmt: skip
    assert phase_timeline(log, since=10.0)["replays"] == [
        {"bridge": "br-int", "done_s": 0.5, "ms": 1200.0}
    ]
    assert phase_timeline(log, since=11.0) == {}


def test_the_report_shows_each_scenarios_timeline() -> None:
    from benchmarks.suite.report import timeline_table
    from benchmarks.suite.results import ScenarioResult

    storm = ScenarioResult("reboot_storm", details={"agent_timeline": {
        "big_bundles": [{"done_s": 6.2, "flowmods": 132_000, "commit_ms": 2100.0}],
        "first_port_wired_s": 6.2, "last_port_wired_s": 6.2}})  # fmt: skip
    rows = timeline_table({"reboot_storm": storm, "cold_boot": ScenarioResult("cold_boot")})
    assert len(rows) == 3  # header, rule, the storm (the cold boot has no timeline)
    assert "132000 at 6.2 s (2,100 ms)" in rows[2]
