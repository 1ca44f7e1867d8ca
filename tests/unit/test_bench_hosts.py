"""The pure parts of the many-hypervisor bench: its world, convergence sums, message accounting."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from benchmarks.bench_hosts import parse_args, render_md
from benchmarks.hosts_plan import (
    REFERENCE_MEMBER_IP,
    SHARED_GROUP,
    MessageCounts,
    Repetition,
    build_world,
    busy_jiffies,
    cpu_delta,
    fanout_queue_counts,
    mean_cpu,
    member_ip,
    message_delta,
    percentile,
    publish_kind,
    summarize,
)

SG_FANOUT = "q-agent-notifier-security_group-update_fanout"


def test_world_spreads_ports_over_hosts_and_shared_networks() -> None:
    cloud, vms = build_world(hosts=3, ports=10, networks=4)
    assert len(vms) == 30
    assert {vm.host_index for vm in vms} == {0, 1, 2}
    # every host has ports on every network; vlan and vxlan alternate
    kinds = sorted(net.network_type for net in cloud.networks.values())
    assert kinds == ["vlan", "vlan", "vxlan", "vxlan"]
    by_id = {port.port_id: port for port in cloud.ports}
    for host in range(3):
        nets = {by_id[vm.port_id].network_id for vm in vms if vm.host_index == host}
        assert nets == set(cloud.networks)
    # unique addresses, MACs and tap names (<= 15 characters: an interface name)
    addresses = [ip.ip_address for port in cloud.ports for ip in port.fixed_ips]
    assert len(addresses) == len(set(addresses))
    assert len({vm.mac for vm in vms}) == len({vm.tap for vm in vms}) == 30
    assert all(len(vm.tap) <= 15 for vm in vms)
    # bound to their host, all in the group whose ingress rule names the group itself
    assert by_id[vms[-1].port_id].binding_host == "hv03"
    assert all(port.security_groups == (SHARED_GROUP,) for port in cloud.ports)
    rules = cloud.security_groups[SHARED_GROUP].rules
    assert any(rule.remote_group_id == SHARED_GROUP for rule in rules)
    # the reference member exists and is no VM
    assert REFERENCE_MEMBER_IP in addresses
    assert REFERENCE_MEMBER_IP not in {by_id[vm.port_id].fixed_ips[0].ip_address for vm in vms}


def test_world_refuses_sizes_its_addressing_cannot_hold() -> None:
    with pytest.raises(ValueError):
        build_world(hosts=3, ports=300, networks=4)


def test_member_addresses_never_merge_with_another_member() -> None:
    """A member address merged into a CIDR with a neighbour would make no nw_src=<ip> flow."""
    cloud, _ = build_world(hosts=20, ports=50, networks=4)
    members = [ipaddress.ip_address(member_ip(rep)) for rep in range(6)]
    others = [ipaddress.ip_address(ip.ip_address) for port in cloud.ports for ip in port.fixed_ips]
    for address in members:
        for other in others + [m for m in members if m != address]:
            assert int(address) >> 1 != int(other) >> 1  # never in one /31
    assert all(str(address).startswith("10.0.250.") for address in members)


def test_repetition_convergence_is_the_last_host_and_spread_first_to_last() -> None:
    rep = Repetition("rule_add", 100.0, {"hv01": 100.2, "hv02": 100.9, "hv03": 100.5})
    assert rep.complete
    assert rep.seconds == pytest.approx(0.9)
    assert rep.spread == pytest.approx(0.7)
    assert rep.per_host()["hv03"] == pytest.approx(0.5)


def test_a_host_not_converged_makes_the_repetition_incomplete_and_misses_the_target() -> None:
    done = Repetition("member_add", 0.0, {"hv01": 0.3, "hv02": 0.4})
    missing = Repetition("member_add", 0.0, {"hv01": 0.1, "hv02": None})
    assert missing.seconds is None and missing.spread is None
    summary = summarize([done, missing], target_seconds=2.0)
    assert summary["incomplete"] == 1
    assert summary["met"] is False
    assert summary["max_s"] == pytest.approx(0.4)


def test_summary_meets_the_target_only_when_every_max_is_within_it() -> None:
    fast = [Repetition("x", 0.0, {"a": t}) for t in (0.5, 1.0, 1.5)]
    assert summarize(fast, 2.0)["met"] is True
    assert summarize(fast, 2.0)["p50_s"] == pytest.approx(1.0)
    slow = [*fast, Repetition("x", 0.0, {"a": 2.5})]
    assert summarize(slow, 2.0)["met"] is False
    assert summarize([], 2.0)["met"] is False


def test_percentile_is_nearest_rank() -> None:
    assert percentile([4, 1, 3, 2], 0.5) == 2
    assert percentile([1, 2, 3], 0.5) == 2
    assert percentile([7], 0.99) == 7
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_message_delta_counts_fanout_once_per_bound_queue_and_leaves_out_state_reports() -> None:
    before = MessageCounts(Counter({"report_state": 5, "update_device_list": 2}),
                           Counter({"reply": 7}))  # fmt: skip
    after = MessageCounts(
        Counter({"report_state": 6, "update_device_list": 3,
                 "security_group_info_for_devices": 20,
                 "get_devices_details_list_and_failed_devices": 1}),
        Counter({"reply": 7 + 23, f"fanout:{SG_FANOUT}": 1}),
    )  # fmt: skip
    delta = message_delta(before, after, {SG_FANOUT: 20})
    # agents: 22 calls (the state report left out); server: 1 fanout + 22 replies
    assert delta["published"] == 22 + 1 + 22
    # each call and reply delivered once, the fanout to 20 queues
    assert delta["delivered"] == 22 + 22 + 20
    assert delta["excluded"] == {"report_state": 1}
    assert delta["fanout_delivered"] == 20
    assert delta["server_published"] == {f"fanout:{SG_FANOUT}": 1, "reply": 22}


def test_message_delta_names_a_fanout_exchange_it_has_no_binding_count_for() -> None:
    after = MessageCounts(Counter(), Counter({"fanout:mystery_fanout": 1}))
    delta = message_delta(MessageCounts(), after, {})
    assert delta["fanout_exchanges_without_binding_count"] == ["mystery_fanout"]
    assert delta["delivered"] == 0


def test_fanout_queue_counts_from_list_bindings() -> None:
    text = (
        "source_name\tdestination_name\n"
        "\tq-plugin\n"
        f"{SG_FANOUT}\t{SG_FANOUT[:-7]}_fanout_aaa\n"
        f"{SG_FANOUT}\t{SG_FANOUT[:-7]}_fanout_bbb\n"
        "neutron\tq-plugin\n"
    )
    assert fanout_queue_counts(text) == {SG_FANOUT: 2}


def test_busy_jiffies_leaves_idle_and_iowait_out() -> None:
    stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    busy, total = busy_jiffies(stat)
    assert total == 100 + 5 + 50 + 800 + 40 + 3 + 2 + 0
    assert busy == total - 840
    with pytest.raises(ValueError):
        busy_jiffies("intr 1 2 3\n")


def test_default_stem_is_the_targets_size_only_at_20_by_50() -> None:
    assert parse_args([]).stem == "hosts"
    assert parse_args(["--hosts", "3", "--ports", "10"]).stem == "hosts-3x10"


def test_publish_kind_tells_replies_fanouts_and_casts_apart() -> None:
    assert publish_kind("", "reply_abc") == "reply"
    assert publish_kind(SG_FANOUT, "") == f"fanout:{SG_FANOUT}"
    assert publish_kind("neutron", "q-agent-notifier.hv01") == "cast:q-agent-notifier.hv01"


def test_report_names_the_targets_and_the_message_source() -> None:
    summary = {"p50_s": 0.1, "max_s": 0.2, "max_spread_s": 0.05, "incomplete": 0,
               "repetitions": 2, "met": True}  # fmt: skip
    doc = {
        "hosts": 2, "ports_per_host": 3, "command": "python -m benchmarks.bench_hosts",
        "started": "now", "commit": "abc", "machine": {"cpus": 2, "model": "m", "loadavg": "0"},
        "boot_seconds": 1.0, "tunnels": {}, "message_source": "counted in the simulator",
        "rule_change": {"summary": summary},
        "membership_change": {"summary": {**summary, "met": False}},
        "messages": {"member_add": {"published": [13], "delivered": [15]}},
    }  # fmt: skip
    text = render_md(doc)
    assert "| rule add/remove | 0.1 | 0.2 | 0.05 | 0/2 | yes |" in text
    assert "| membership add/remove | 0.1 | 0.2 | 0.05 | 0/2 | no |" in text
    assert "| member_add | [13] | [15] |" in text
    assert "counted in the simulator" in text


def test_cpu_delta_per_group_never_negative_and_mean_over_changes() -> None:
    before = {"agents": 10.0, "ovs": 2.0, "broker": 5.0}
    after = {"agents": 12.5, "ovs": 1.0, "broker": 5.25}  # an OVS daemon went away: 0
    delta = cpu_delta(before, after)
    assert delta == {"agents": 2.5, "ovs": 0.0, "broker": 0.25}
    assert mean_cpu([delta, {"agents": 1.5, "ovs": 1.0, "broker": 0.75}]) == {
        "agents": 2.0, "ovs": 0.5, "broker": 0.5
    }  # fmt: skip
    assert mean_cpu([]) == {}
