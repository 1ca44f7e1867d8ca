"""The suite harness's pure parts: /proc parsing, the agent's log, its config, OVS output."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.baselines import chunks, extrapolate
from benchmarks.suite.agent_process import AgentLog, AgentSettings, config_toml
from benchmarks.suite.dataplane import _verdict_ok, compare, dump_lines
from benchmarks.suite.progress import bar
from benchmarks.suite.usage import cpu_seconds_from_stat, kib_field
from benchmarks.suite.world import vsctl_table

STAT = "4242 (aovs agent) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 100"


def test_cpu_seconds_are_utime_plus_stime_even_with_spaces_in_the_name() -> None:
    assert cpu_seconds_from_stat(STAT, ticks=100) == pytest.approx(3.0)
    tricky = STAT.replace("(aovs agent)", "(a) b)")
    assert cpu_seconds_from_stat(tricky, ticks=100) == pytest.approx(3.0)


def test_status_fields_in_mib() -> None:
    status = "Name:\taovs\nVmHWM:\t  153600 kB\nVmRSS:\t   10240 kB\n"
    assert kib_field(status, "VmHWM") == 150.0
    with pytest.raises(ValueError, match="VmSwap"):
        kib_field(status, "VmSwap")


def test_agent_log_keeps_installs_transitions_and_errors() -> None:
    log = AgentLog()
    lines = [
        {"ts": 1.0, "level": "INFO", "msg": "dataplane installed", "flowmods": 0, "ms": 12.5},
        {"ts": 2.0, "level": "INFO", "msg": "port plugged", "iface_id": "p1", "ofport": 7,
         "phase": "wired", "ms": 3.25},
        {"ts": 3.0, "level": "ERROR", "msg": "plan execution failed", "error": "boom"},
    ]  # fmt: skip
    log.feed("\n".join(json.dumps(line) for line in lines) + "\nnot json\n[1, 2]\n")
    assert log.installed[0]["flowmods"] == 0
    (transition,) = log.transitions
    assert (transition.iface_id, transition.ofport, transition.ms) == ("p1", 7, 3.25)
    assert transition.event == "plugged"
    assert log.errors == ["plan execution failed boom"]
    assert log.other_lines == 3  # the error line, "not json" and the list


def test_agent_config_is_valid_toml_with_neutron_option_names() -> None:
    settings = AgentSettings(
        host="h", transport_url='rabbit://g:g@127.0.0.1:5672/v"x',
        ovsdb_connection="unix:/tmp/db.sock", state_path=Path("/tmp/state"),
    )  # fmt: skip
    data = tomllib.loads(config_toml(settings))
    assert data["transport_url"] == 'rabbit://g:g@127.0.0.1:5672/v"x'
    assert data["ovs"]["bridge_mappings"] == ["physnet1:br-phys"]
    assert data["ovs"]["datapath_type"] == "dummy"
    assert data["agent"]["log_format"] == "json"
    assert data["securitygroup"]["firewall_driver"] == "openvswitch"
    assert "tunnel_types" not in data["agent"]


def test_vsctl_json_tables_become_plain_values() -> None:
    text = json.dumps(
        {
            "headings": ["name", "ofport", "tag", "external_ids"],
            "data": [
                ["tap1", 5, ["set", []], ["map", [["iface-id", "p1"]]]],
                ["tap2", ["set", []], 7, ["map", []]],
            ],
        }
    )
    rows = vsctl_table(text)
    assert rows[0] == {"name": "tap1", "ofport": 5, "tag": None,
                       "external_ids": {"iface-id": "p1"}}  # fmt: skip
    assert rows[1]["ofport"] is None and rows[1]["tag"] == 7


def test_dump_comparison_names_missing_and_extra_flows() -> None:
    dump = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n b=2 actions=drop\n a=1 actions=drop\n"
    assert dump_lines(dump) == ["a=1 actions=drop", "b=2 actions=drop"]
    same = compare(["a", "b"], ["b", "a"])
    assert same.ok and same.flows == 2
    diff = compare(["a", "b"], ["a", "c"])
    assert not diff.ok
    assert diff.missing == ("b",) and diff.extra == ("c",)


def test_trace_verdicts() -> None:
    uplink, vm = 3, 9
    assert _verdict_ok("drop", "drop", 100, uplink, vm)
    assert not _verdict_ok("9", "drop", 100, uplink, vm)
    flooded = "push_vlan(vid=100,pcp=0),3,pop_vlan,9"
    assert _verdict_ok(flooded, "uplink", 100, uplink, vm)
    assert not _verdict_ok(flooded, "uplink", 101, uplink, vm)
    assert _verdict_ok("9", "vm", 100, uplink, vm)
    assert not _verdict_ok("9,3", "vm", 100, uplink, vm)


def test_legacy_extrapolation_and_chunks() -> None:
    assert extrapolate([0.2, 0.4], 1000, 1.0) == pytest.approx(301.0)
    with pytest.raises(ValueError):
        extrapolate([], 10, 0.0)
    assert [len(c) for c in chunks([str(i) for i in range(250)])] == [100, 100, 50]


def test_progress_bar() -> None:
    assert bar(0, 4, width=8) == "[--------]"
    assert bar(2, 4, width=8) == "[####----]"
    assert bar(9, 4, width=8) == "[########]"
    assert bar(1, 0, width=4) == "[----]"
