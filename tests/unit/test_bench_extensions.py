"""The extensions benchmark's pure parts: its schedule, the agent configuration it writes, what
it reads (Prometheus text, trace actions) and the comparisons it reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_extensions import (
    DSCP_MARK,
    IDLE,
    OFF,
    QOS,
    TRUNKS,
    agent_config,
    comparison,
    marks_dscp,
    metric_total,
    outputs,
    render,
    schedule,
    spread_of,
    summarise,
    topologies,
    trunk_plug_args,
    trunk_ports,
    within_noise,
)
from benchmarks.suite.agent_process import AgentSettings, config_toml

from aovs.config import load_config


def test_schedule_alternates_off_and_idle_then_the_loaded_runs() -> None:
    assert schedule(3) == [OFF, IDLE, OFF, IDLE, OFF, IDLE, QOS, TRUNKS]
    assert schedule(1, loaded_runs=2) == [OFF, IDLE, QOS, QOS, TRUNKS, TRUNKS]
    assert schedule(2, only=("idle", "qos")) == [IDLE, IDLE, QOS]
    with pytest.raises(ValueError, match="unknown variants"):
        schedule(1, only=("fast",))


def test_agent_config_adds_extensions_the_agent_accepts(tmp_path: Path) -> None:
    settings = AgentSettings(host="h", transport_url="rabbit://g:g@127.0.0.1:5672/v",
                             ovsdb_connection="unix:/tmp/db.sock",
                             state_path=tmp_path / "state")  # fmt: skip
    path = tmp_path / "agent.toml"
    path.write_text(agent_config(config_toml(settings), ("qos", "trunk"), "127.0.0.1:9999"))
    config = load_config(path)
    assert config.agent.extensions == ("qos", "trunk")
    assert config.agent.metrics_bind == "127.0.0.1:9999"
    assert config.securitygroup.firewall_driver == "openvswitch"  # the rest kept
    path.write_text(agent_config(config_toml(settings), (), None))
    assert load_config(path).agent.extensions == ()
    with pytest.raises(ValueError, match=r"no \[agent\] section"):
        agent_config("host = 'h'\n", ("qos",), None)


def test_metric_total_sums_every_label_set() -> None:
    text = "\n".join([
        "# HELP aovs_bundle_flowmods Flowmods per committed OpenFlow bundle.",
        'aovs_bundle_flowmods_bucket{bridge="br-int",le="10.0"} 3.0',
        'aovs_bundle_flowmods_sum{bridge="br-int"} 6610.0',
        'aovs_bundle_flowmods_sum{bridge="br-phys"} 12.0',
        "aovs_bundle_flowmods_sum_other 5.0",
        "aovs_extension_problem_ports 0.0",
    ])  # fmt: skip
    assert metric_total(text, "aovs_bundle_flowmods_sum") == 6622.0
    assert metric_total(text, "aovs_extension_problem_ports") == 0.0
    assert metric_total(text, "aovs_missing") == 0.0


def test_trunk_ports_and_plug_commands_use_neutrons_names() -> None:
    topology, qos_topology = topologies(100, trunks=3, subports=4)
    assert len(topology.ports) == 100 + 3 * 5 and len(topology.trunks) == 3
    vms = trunk_ports(topology, 100)
    assert [vm.index for vm in vms] == list(range(100, 115))
    trunk_id, trunk = next(iter(topology.trunks.items()))
    assert vms[0].tap == f"tpi-{trunk.port_id}"[:15] and vms[0].iface_id == trunk.port_id
    assert vms[1].tap == f"spi-{trunk.sub_ports[0].port_id}"[:15]
    # the QoS policy is on the VM ports only, the trunks are the same in both worlds
    assert all(p.qos_policy_id for p in qos_topology.ports[:100])
    assert not any(p.qos_policy_id for p in qos_topology.ports[100:])
    assert not any(p.qos_policy_id for p in topology.ports)
    assert qos_topology.trunks == topology.trunks
    bridge_cmd, port_cmd = trunk_plug_args(trunk_id, trunk.port_id, "fa:16:3f:00:00:00")
    assert bridge_cmd[2] == f"tbr-{trunk_id}"[:14] and "datapath_type=dummy" in bridge_cmd
    assert f"external-ids:iface-id={trunk.port_id}" in port_cmd
    assert port_cmd[2] == bridge_cmd[2]


def test_trace_readers() -> None:
    actions = "ct(commit,zone=5),recirc(0x1) ; set(ipv4(tos=0x68/0xfc)),push_vlan(vid=100,pcp=0),2"
    assert outputs(actions) == {2}
    assert outputs("60,pop_vlan,7 ; drop") == {60, 7}
    assert marks_dscp(actions, DSCP_MARK)
    assert not marks_dscp(actions, 10)
    assert not marks_dscp("push_vlan(vid=100,pcp=0),2", DSCP_MARK)


def run(variant: str, seconds: float, flows: int, **more: Any) -> dict[str, Any]:
    figures = {"variant": variant, "run": 1, "seconds": seconds, "cpu_seconds": seconds / 2,
               "peak_rss_mb": 70.0, "vswitchd_cpu_seconds": 0.1, "flows": flows,
               "flowmods": flows + 10, "policing_writes": 0, "interface_writes": 0,
               "port_writes": 0, "dataplane_verified": {"ok": True}, "verified": {}}  # fmt: skip
    return {**figures, **more}


def test_comparison_and_noise() -> None:
    off = [run("off", 5.0, 100), run("off", 6.0, 100), run("off", 5.5, 100)]
    idle = [run("idle", 5.8, 100), run("idle", 5.2, 100), run("idle", 5.4, 100)]
    table = comparison(idle, off, 1)
    assert table["seconds"]["median"] == 5.4 and table["seconds"]["base_median"] == 5.5
    assert table["seconds"]["difference"] == pytest.approx(-0.1)
    assert table["seconds"]["base_spread"] == 1.0 and table["seconds"]["spread"] == 0.6
    assert within_noise(table["seconds"]) is True
    assert within_noise(table["flows"]) is True  # 0 difference, 0 spread
    slower = comparison([run("idle", 8.0, 100)], off, 1)
    assert within_noise(slower["seconds"]) is False
    assert within_noise({"difference": None, "spread": 1.0}) is None
    per_port = comparison([run("qos", 7.5, 2100, policing_writes=1000)], idle, 1000)
    assert per_port["flows"]["per_unit"] == 2.0
    assert per_port["policing_writes"]["per_unit"] == 1.0
    assert per_port["seconds"]["per_unit"] == pytest.approx(0.0021)
    assert spread_of([]) == {"median": None, "min": None, "max": None, "spread": None, "runs": 0}


def test_summary_and_report_leave_out_failed_runs() -> None:
    plug = {"seconds": 20.0, "cpu_seconds": 10.0, "peak_rss_mb": 90.0, "flows_added": 31000,
            "flowmods": 32000, "interface_writes": 100, "interfaces_inserted": 1100,
            "port_writes": 0, "per_trunk": {"seconds": 0.2, "flowmods": 320.0}}  # fmt: skip
    runs = [run("off", 5.0, 100), run("idle", 5.1, 100),
            {"variant": "off", "run": 2, "error": "ScenarioFailed: boom"},
            run("qos", 6.0, 300), run("trunks", 5.0, 100, trunk_plug=plug)]  # fmt: skip
    summary = summarise(runs, 100)
    assert summary["unused"]["seconds"]["base_median"] == 5.0  # the failed run left out
    assert summary["qos_per_port"]["flows"]["per_unit"] == 2.0
    assert summary["trunk_plug"]["flowmods"]["median"] == 32000
    assert summary["per_trunk"] == plug["per_trunk"]
    document = {"ports": 100, "trunks": 100, "subports": 4, "git_commit": "abc",
                "machine": {"cpus": 2, "model": "m", "ovs": "3.1", "loadavg": "1 1 1"},
                "runs": runs, "summary": summary}  # fmt: skip
    text = render(json.loads(json.dumps(document)))
    assert "FAILED: ScenarioFailed: boom" in text
    assert "| flows | 300.000 | 100.000 | 2.000000 |" in text
    assert "| flowmods | 32000.000 | 320.00000 |" in text
