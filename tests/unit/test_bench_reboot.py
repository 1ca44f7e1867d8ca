"""The reboot benchmark's pure parts: percentiles, flow-monitor and trace parsing, neutron's
per-port flow rewrite, the unixctl stream, a series' figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_reboot import TARGETS, Series, _order, _with_verdicts, dumps, table, traces
from benchmarks.reboot_parse import (
    action_tokens,
    datapath_actions,
    datapath_ports,
    flow_key,
    json_messages,
    mentions_ofport,
    percentile,
    rewrite_port_flows,
    summarize,
    trace_delivers,
    trace_outputs,
)


def test_percentile_is_nearest_rank_on_sorted_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert percentile(values, 50) == 51.0  # round(0.5 * 99) = 50 -> the 51st smallest
    assert percentile(values, 99) == 99.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


MONITOR = [
    " event=ADDED table=60 cookie=0 priority=100,in_port=21 actions=set_field:0x15->reg5,"
    "set_field:0x1->reg6,resubmit(,71)",
    " event=DELETED reason=delete table=71 cookie=0 priority=95,arp,reg5=0x15,in_port=21 "
    "actions=resubmit(,94)",
    " event=ADDED table=111 cookie=0 priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:03 "
    "actions=pop_vlan,output:21",
    " event=ADDED table=73 cookie=0 priority=100,reg6=0x1,dl_dst=fa:16:3e:00:00:03 "
    "actions=load:0x15->NXM_NX_REG5[],resubmit(,81)",
]


@pytest.mark.parametrize("line", MONITOR)
def test_a_flow_names_an_ofport_in_every_form_ovs_prints(line: str) -> None:
    assert mentions_ofport(line, 21)


@pytest.mark.parametrize(
    "line",
    [
        "table=60, priority=100,in_port=210 actions=drop",  # a longer number
        "table=60, priority=100,in_port=2 actions=output:211",
        "table=71, priority=10,reg5=0x15a actions=drop",  # a longer hex number
        "table=71, priority=10,reg6=0x15 actions=drop",  # another register
        "table=82, priority=70,conj_id=21,ct_state=+new-est,ip actions=output:7",
        "table=60, priority=100,in_port=1 actions=set_field:0x15->reg6,resubmit(,71)",
        "ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x0):",
    ],
)
def test_other_numbers_are_not_the_ofport(line: str) -> None:
    assert not mentions_ofport(line, 21)


DUMP = [
    " cookie=0x4dbb, table=60, priority=100,in_port=21 actions=set_field:0x15->reg5,"
    "set_field:0x1->reg6,resubmit(,71)",
    " cookie=0x4dbb, table=71, priority=95,arp,reg5=0x15,in_port=21,dl_src=fa:16:3e:00:00:03"
    " actions=resubmit(,94)",
    " cookie=0x4dbb, table=111, priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:03 "
    "actions=pop_vlan,output:21",
    " cookie=0x4dbb, table=112, priority=1,reg3=0,reg6=0x1 actions=output:11,output:21,output:4",
    " cookie=0x4dbb, table=60, priority=100,in_port=4 actions=set_field:0x4->reg5,resubmit(,71)",
]


def test_neutron_rewrite_moves_only_the_ports_flows_deletes_first() -> None:
    out = rewrite_port_flows(DUMP, 21, 1021)
    assert out == [
        "delete_strict table=60, priority=100,in_port=21",
        "delete_strict table=71, priority=95,arp,reg5=0x15,in_port=21,dl_src=fa:16:3e:00:00:03",
        "table=60, priority=100,in_port=1021 actions=set_field:0x3fd->reg5,"
        "set_field:0x1->reg6,resubmit(,71)",
        "table=71, priority=95,arp,reg5=0x3fd,in_port=1021,dl_src=fa:16:3e:00:00:03 "
        "actions=resubmit(,94)",
        # same key, new actions: added over itself, no delete
        "table=111, priority=20,dl_vlan=1,dl_dst=fa:16:3e:00:00:03 actions=pop_vlan,output:1021",
        "table=112, priority=1,reg3=0,reg6=0x1 actions=output:11,output:1021,output:4",
    ]
    assert not any(mentions_ofport(line, 21) for line in out if not line.startswith("delete"))
    assert flow_key(DUMP[0]) == "table=60, priority=100,in_port=21"


def test_a_port_whose_ofport_is_a_prefix_of_another_keeps_the_other() -> None:
    out = rewrite_port_flows(DUMP, 2, 9)
    assert out == []  # in_port=21, output:21, 0x15: none of them is port 2


DPIF = """dummy@ovs-dummy: hit:0 missed:0
  br-int:
    br-int 65534/3: (dummy-internal)
    int-br-phys 1/none: (patch: peer=phy-br-phys)
    tap00003 21/23: (dummy)
  br-phys:
    br-phys-up 1/1: (dummy)
"""

TRACE = """Flow: tcp,in_port=1,dl_vlan=101
bridge("br-phys")
Datapath actions: 2,pop_vlan,ct(zone=1),recirc(0x3)

===============================================================================
recirc(0x3) - resume conntrack with ct_state=new|trk
===============================================================================
Datapath actions: ct(commit,zone=1),23
"""


def test_dpif_show_maps_names_to_datapath_ports_and_skips_patch_ports() -> None:
    assert datapath_ports(DPIF) == {"br-int": 3, "tap00003": 23, "br-phys-up": 1}


def test_trace_verdict_reads_the_last_datapath_actions() -> None:
    assert datapath_actions(TRACE) == "ct(commit,zone=1),23"
    assert trace_outputs(TRACE) == {23}
    assert trace_delivers(TRACE, 23)
    assert not trace_delivers(TRACE, 2)  # flooded by br-phys before the recirculation only
    assert not trace_delivers(TRACE, None)  # the port is not in the datapath
    assert not trace_delivers("no actions at all", 23)
    tagged = (
        "Datapath actions: ct(zone=1),recirc(0x1)\nDatapath actions: push_vlan(vid=101,pcp=0),1"
    )
    assert trace_delivers(tagged, 1, push_vlan=101)
    assert not trace_delivers(tagged, 1, push_vlan=102)
    assert action_tokens("set(tunnel(tun_id=0x1,dst=1.1.1.1)),5,drop") == [
        "set(tunnel(tun_id=0x1,dst=1.1.1.1))", "5", "drop"]  # fmt: skip


def test_unixctl_stream_yields_whole_messages_and_keeps_the_rest() -> None:
    messages, rest = json_messages(b'{"id":1,"result":"a"} {"id":2,"res')
    assert messages == [{"id": 1, "result": "a"}]
    more, rest = json_messages(rest + b'ult":"b}"}\n')
    assert more == [{"id": 2, "result": "b}"}] and rest == b""
    cut = '{"result":"é"}'.encode()[:-3]  # a read that ends inside a character
    assert json_messages(cut) == ([], cut)


def sample(t_cmd: float, ofport: float, forward: float | None, rounds: int = 1) -> dict:  # type: ignore[type-arg]
    ok = forward is not None
    return {"ok": ok, "t_cmd": t_cmd, "t_ofport": ofport, "t_flow": forward,
            "t_forward": forward, "rounds": rounds}  # fmt: skip


def test_series_figures_span_only_what_was_seen() -> None:
    samples = [sample(0.0, 0.1, 0.12), sample(1.0, 1.2, 1.3, rounds=3), sample(2.0, 2.1, None)]
    out = summarize("x", samples)
    assert out["x_reboots"] == 3 and out["x_failures"] == 1 and out["x_trace_retried"] == 1
    assert out["x_ofport_to_forwarding_p50_ms"] == pytest.approx(20.0)
    assert out["x_ofport_to_forwarding_p99_ms"] == pytest.approx(100.0)
    assert out["x_cmd_to_forwarding_max_ms"] == pytest.approx(300.0)
    nova = summarize("n", [{"ok": True, "t_cmd": 0.0, "t_ofport": 0.05}])
    assert nova["n_cmd_to_ofport_p50_ms"] == pytest.approx(50.0)
    assert "n_ofport_to_forwarding_p50_ms" not in nova and "n_trace_retried" not in nova


def test_cpu_ratio_is_beyond_the_del_port_over_the_add_port_alone() -> None:
    good = {"reboot_ofport_to_forwarding_p50_ms": 10.0, "reboot_ofport_to_forwarding_p99_ms": 40.0,
            "reboot_vswitchd_cpu_per_reboot_ms": 250.0, "reboot_failures": 0,
            # nova's reboots among the agent's: the target's baseline
            "reboot_nova_interleaved_del_port_cpu_ms": 120.0,
            "reboot_nova_interleaved_add_port_cpu_ms": 125.0,
            # nova's own series, the agent stopped, some minutes later
            "baseline_nova_del_port_cpu_ms": 150.0, "baseline_nova_add_port_cpu_ms": 160.0,
            "baseline_neutron_design_vswitchd_cpu_per_reboot_ms": 470.0}  # fmt: skip
    verdict = _with_verdicts(dict(good))
    assert verdict["vswitchd_cpu_ratio"] == pytest.approx(130.0 / 125.0)
    assert verdict["vswitchd_cpu_ratio_whole_reboot"] == pytest.approx(250.0 / 245.0)
    assert verdict["vswitchd_cpu_ratio_vs_separate_baseline"] == pytest.approx(100.0 / 160.0)
    assert verdict["baseline_neutron_design_vswitchd_cpu_ratio"] == pytest.approx(2.0)
    assert verdict["targets_met"] == {"reboot_p50_ms": True, "reboot_p99_ms": True,
                                      "vswitchd_cpu_ratio": True}  # fmt: skip
    slow = _with_verdicts({**good, "reboot_vswitchd_cpu_per_reboot_ms": 300.0})
    assert slow["vswitchd_cpu_ratio"] == pytest.approx(1.44)
    assert slow["targets_met"]["vswitchd_cpu_ratio"] is False
    unmeasured = _with_verdicts({k: v for k, v in good.items() if "interleaved" not in k})
    assert "vswitchd_cpu_ratio" not in unmeasured
    assert unmeasured["targets_met"]["vswitchd_cpu_ratio"] is False
    assert "targets met" in table({**verdict, "targets": TARGETS})


def test_targets_hold_only_with_every_reboot_forwarding() -> None:
    p50, p99 = "reboot_ofport_to_forwarding_p50_ms", "reboot_ofport_to_forwarding_p99_ms"
    failed = _with_verdicts({p50: 1.0, p99: 2.0, "reboot_failures": 1})
    assert failed["targets_met"] == {"reboot_p50_ms": False, "reboot_p99_ms": False,
                                     "vswitchd_cpu_ratio": False}  # fmt: skip
    late = _with_verdicts({p50: 20.0, p99: 51.0, "reboot_failures": 0})
    assert late["targets_met"]["reboot_p50_ms"] is True
    assert late["targets_met"]["reboot_p99_ms"] is False


def test_reboot_order_uses_every_port_once_per_pass() -> None:
    import random

    order = _order(range(10), 25, random.Random(1))
    assert len(order) == 25
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))


def test_traces_put_the_new_ofport_where_the_stopwatch_fills_it_in() -> None:
    checks = traces(3, 4)
    assert [t["port"] for t in checks] == ["tap00004", "br-phys-up", "tap00003"]
    assert all("{ofport}" in t["flow"] for t in checks[:2])
    assert checks[1]["push_vlan"] == 101


def test_results_json_keeps_sample_lists_on_one_line() -> None:
    results = {"samples_ms": {"reboot": {"x": [1.5, 20.0, -3.1e-05]}}, "ports": 3, "none": []}
    text = dumps(results)
    assert '"x": [1.5, 20.0, -3.1e-05]' in text
    assert json.loads(text) == results


def test_series_cpu_figures_skip_disturbed_reboots_and_subtract_the_traces() -> None:
    nova = Series("n")
    ok = {"ok": True, "t_ofport": 0.2}
    nova.record(0.0, ok, del_port_cpu=0.10, add_port_cpu=0.12, clean=True)
    nova.record(0.0, ok, del_port_cpu=0.14, add_port_cpu=0.16, clean=True)
    nova.record(0.0, ok, del_port_cpu=0.30, add_port_cpu=0.40, clean=False)  # a tag write near
    out = nova.figures()
    assert out["n_del_port_cpu_ms"] == pytest.approx(120.0)
    assert out["n_add_port_cpu_ms"] == pytest.approx(140.0)
    assert out["n_disturbed"] == 1 and out["n_reboots"] == 3
    neutron = Series("x")
    neutron.record(0.0, {**ok, "rounds": 1, "t_forward": 0.3}, cpu=0.5)
    neutron.record(0.0, {**ok, "rounds": 3, "t_forward": 0.4}, cpu=0.7)
    neutron.round_cpu_s = 0.01
    out = neutron.figures()
    assert out["x_vswitchd_cpu_per_reboot_raw_ms"] == pytest.approx(600.0)
    assert out["x_vswitchd_cpu_per_reboot_ms"] == pytest.approx(600.0 - 2 * 10.0)
    assert out["x_trace_retried"] == 1
