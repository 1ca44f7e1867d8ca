"""The openvswitch driver as a pure function: flows, determinism, incremental changes."""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import pytest
from fw_scenarios import DB, WEB, check_incremental, make_port, members, rule, scenario

from aovs.dataplane.compose import firewall_owners
from aovs.firewall import FilteredPort, SecurityGroupState, load_driver, openvswitch
from aovs.firewall.conjunctions import ConjunctionIds
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import AllowedAddressPair, SecurityGroup
from aovs.openflow.flows import (
    CT,
    Conjunction,
    CTClear,
    Flow,
    Match,
    Output,
    PopVlan,
    Resubmit,
    SetField,
    ct_state,
    vid,
)
from aovs.owners import MEMBER, kind_of, member_owner, port_owner

EST = ct_state("+est-rel-rpl")
NEW = ct_state("+new-est")


def by_table(flows: frozenset[Flow], table: int) -> list[Flow]:
    return [f for f in flows if f.table == table]


def test_registered_under_its_neutron_name() -> None:
    assert isinstance(load_driver("openvswitch"), OVSFirewall)


def test_filtered_port_flows_follow_neutrons_pipeline() -> None:
    pair = AllowedAddressPair(ip_address="10.9.9.9", mac_address="fa:16:3e:aa:aa:aa")
    port = make_port(1, ("web",), vlan=5, pairs=(pair,))
    sgs = SecurityGroupState({"web": WEB})
    flows = OVSFirewall().port_flows(port, sgs)
    regs = [SetField("reg5", 2), SetField("reg6", 5)]

    assert Flow(60, 100, Match(in_port=2), [*regs, Resubmit(71)]) in flows
    for mac in ("fa:16:3e:00:00:01", "fa:16:3e:aa:aa:aa"):  # own MAC and the pair's
        assert Flow(60, 90, Match(vlan_vid=vid(5), eth_dst=mac),
                    [*regs, PopVlan(), Resubmit(81)]) in flows  # fmt: skip
    own = {"in_port": 2, "reg5": 2}
    assert Flow(71, 95, Match(eth_src="fa:16:3e:aa:aa:aa", eth_type=0x806, arp_spa="10.9.9.9",
                **own), [Resubmit(94)]) in flows  # fmt: skip
    assert Flow(71, 65, Match(eth_src="fa:16:3e:00:00:01", eth_type=0x800,
                ipv4_src="10.5.0.1", **own), [CT(zone_src="reg6", table=72)]) in flows  # fmt: skip
    assert Flow(71, 80, Match(eth_src="fa:16:3e:00:00:01", eth_type=0x800, ipv4_src="0.0.0.0",
                ip_proto=17, udp_src=68, udp_dst=67, **own), [Resubmit(73)]) in flows  # fmt: skip
    assert Flow(71, 70, Match(eth_type=0x800, ip_proto=17, udp_src=67, udp_dst=68, **own),
                [Resubmit(93)]) in flows  # fmt: skip
    assert Flow(71, 10, Match(**own), [CTClear(), Resubmit(93)]) in flows
    # ingress tcp/22 from anywhere: established passes, new is committed
    match = {"eth_type": 0x800, "reg5": 2, "ip_proto": 6, "tcp_dst": 22}
    assert Flow(82, 77, Match(ct_state=EST, **match), [Output(2, 0)]) in flows
    commit = CT(commit=True, zone_src="reg6")
    assert Flow(82, 77, Match(ct_state=NEW, **match), [commit, Output(2, 0), Resubmit(92)]) in flows
    # ingress tcp/8000-8999 from 192.168.0.0/16: masked blocks, peer prefix as source
    ranged = [f for f in by_table(flows, 82) if f.match.get("ipv4_src") is not None]
    assert {f.match.get("ipv4_src") for f in ranged} == {("192.168.0.0", "255.255.0.0")}
    assert len(ranged) == 2 * 6  # 8000-8999 = 6 masked matches, est + new
    # egress any IPv4: one accept pair at priority 74, on to table 73
    assert Flow(72, 74, Match(ct_state=NEW, eth_type=0x800, reg5=2), [Resubmit(73)]) in flows


def test_port_security_disabled_and_network_ports_pass_everything() -> None:
    sgs = SecurityGroupState({"web": WEB})
    expected = {
        Flow(60, 100, Match(in_port=2), [SetField("reg5", 2), SetField("reg6", 5),
                                         Resubmit(73)]),
        Flow(73, 80, Match(reg5=2), [Resubmit(94)]),
    }  # fmt: skip
    driver = OVSFirewall()
    assert driver.port_flows(make_port(1, ("web",), security=False), sgs) == expected
    assert driver.port_flows(make_port(1, (), owner="network:dhcp"), sgs) == expected


def test_port_without_groups_gets_no_rule_flows() -> None:
    flows = OVSFirewall().port_flows(make_port(1, ()), SecurityGroupState({}))
    assert not [f for f in flows if f.table in (72, 82) and f.priority >= 70]
    assert by_table(flows, 71) and by_table(flows, 81)


def test_remote_group_rules_use_conjunctions_and_never_overlap() -> None:
    ports, sgs = scenario(n_ports=6)
    driver = OVSFirewall()
    port = ports["port-5"]  # in db and web
    flows = driver.port_flows(port, sgs)
    clause2 = [f for f in flows if any(isinstance(a, Conjunction) for a in f.actions)]
    assert clause2 and all(
        all(isinstance(a, Conjunction) and a.clause == 2 for a in f.actions) for f in clause2
    )
    # same table, priority, ct_state and port: tcp_dst matches must be disjoint
    groups: dict[tuple[object, ...], list[tuple[int, int]]] = defaultdict(list)
    for f in clause2:
        dst = f.match.get("tcp_dst")
        if dst is None:
            continue
        value, mask = dst if isinstance(dst, tuple) else (dst, 0xFFFF)
        groups[(f.table, f.priority, f.match.get("ct_state"))].append((int(value), int(mask)))
    for matches in groups.values():
        for p in range(4990, 5030):
            assert sum(p & m == v for v, m in matches) <= 1
    # ports 5005-5010 are in both web's (remote web) and db's (remote db) ranges: two ids
    both = [f for f in clause2 if f.match.get("tcp_dst") == (5008, 0xFFFE)]
    assert both and all(len(f.actions) == 2 for f in both)
    # every conjunction id used has its accept flow (conj_id match, reg7 load)
    ids = {a.id for f in clause2 for a in f.actions if isinstance(a, Conjunction)}
    accepts = {f.match.get("conj_id") for f in flows if f.match.get("conj_id") is not None}
    assert ids == accepts


def test_member_flows_are_one_set_per_member_not_per_port() -> None:
    ports, sgs = scenario(n_ports=60, zones=(5,))
    shared = OVSFirewall().shared_flows(ports, sgs)
    addresses = {a for by_type in sgs.members.values() for ips in by_type.values() for a in ips}
    # one owner per (zone, direction, ethertype, address) that some rule references
    assert {owner[4] for owner in shared} <= addresses
    for owner, flows in shared.items():
        assert kind_of(owner) == MEMBER and owner[1] == "5"
        assert all(f.match.get("reg6") == 5 for f in flows)
        assert all(isinstance(a, Conjunction) and a.clause == 1 for f in flows for a in f.actions)
        assert len(flows) <= 2 * 4  # est + new per priority level


def test_member_join_touches_a_constant_number_of_flows() -> None:
    """Joining a group changes 2 flows per (zone, direction, ethertype) referencing it,
    whether 10 or 120 ports use the rule."""
    changed_counts = []
    for n_ports in (10, 120):
        ports, sgs = scenario(n_ports=n_ports, zones=(5,))
        joined = {**sgs.members, "web": {**sgs.members["web"],
                  "IPv4": sgs.members["web"]["IPv4"] | {"10.5.200.1"}}}  # fmt: skip
        after = SecurityGroupState(sgs.groups, joined)
        dirty, changed = check_incremental((ports, sgs), (ports, after))
        assert dirty == {member_owner(5, "ingress", "IPv4", "10.5.200.1")}
        changed_counts.append(len(changed))
    assert changed_counts[0] == changed_counts[1] == 2


def test_member_leave_and_zone_separation() -> None:
    ports, sgs = scenario(n_ports=12, zones=(5, 6))
    gone = next(iter(sgs.members["web"]["IPv4"]))
    left = {**sgs.members, "web": {**sgs.members["web"],
            "IPv4": sgs.members["web"]["IPv4"] - {gone}}}  # fmt: skip
    dirty, changed = check_incremental((ports, sgs), (ports, SecurityGroupState(sgs.groups, left)))
    assert {o[1] for o in dirty} == {"5", "6"}  # the member flows exist once per zone
    assert all(o[4] == gone for o in dirty)
    assert changed and all(f.match.get("ipv4_src") == gone for f in changed)


def test_rule_update_changes_only_the_affected_flows() -> None:
    ports, sgs = scenario(n_ports=12, zones=(5,))
    db_rules = (*DB.rules[:1], rule("egress", protocol="udp", port_range_min=53,
                                    port_range_max=54, remote_ip_prefix="10.0.0.0/8"))  # fmt: skip
    after = SecurityGroupState({**sgs.groups, "db": DB.model_copy(update={"rules": db_rules})},
                               sgs.members)  # fmt: skip
    dirty, changed = check_incremental((ports, sgs), (ports, after))
    db_ports = {port_owner(i) for i, p in ports.items() if "db" in p.details.security_groups}
    assert dirty == db_ports  # no member owner: conjunction ids did not move
    assert {f.match.get("reg5") for f in changed} == {ports[o[1]].ofport for o in db_ports}
    # udp/53 -> udp/53-54 (53 and 54: not one aligned block): only 54's est + new are new
    assert len(changed) == 2 * len(db_ports)
    assert all(f.table == 72 and f.match.get("udp_dst") == 54 for f in changed)


def test_incremental_changes_match_full_recompute() -> None:
    """owners_for_change + restricted recompute == full recompute, for varied changes."""
    ports, sgs = scenario(n_ports=12, zones=(5, 6))
    ssh_from_db = rule(
        "ingress", protocol="tcp", port_range_min=22, port_range_max=22, remote_group_id="db"
    )
    extra = SecurityGroup(id="ops", rules=(ssh_from_db,))
    changes = [
        # a port moves from web to db
        ({**ports, "port-1": make_port(1, ("db",), vlan=6)}, sgs),
        # a port leaves, a port in a new zone arrives
        ({**{k: v for k, v in ports.items() if k != "port-2"},
          "port-99": make_port(99, ("web",), vlan=7)}, sgs),
        # a new group referencing db is used by a port
        ({**ports, "port-3": make_port(3, ("ops", "web"), vlan=5)},
         SecurityGroupState({**sgs.groups, "ops": extra}, sgs.members)),
        # web's remote rules go away
        (ports, SecurityGroupState({**sgs.groups, "web": WEB.model_copy(
            update={"rules": tuple(r for r in WEB.rules if r.remote_group_id is None)})},
            sgs.members)),
        # IPv6 membership of web changes
        (ports, SecurityGroupState(sgs.groups, {**sgs.members, "web": {
            "IPv4": sgs.members["web"]["IPv4"], "IPv6": frozenset({"fd00::1234"})}})),
    ]  # fmt: skip
    for after in changes:
        check_incremental((ports, sgs), after)


def test_a_reboot_dirties_only_the_rebooted_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new ofport (or a reordered group list, or a trusted port coming and going) leaves
    every zone's remote usage as it was: only those ports' owners are dirty, found without
    computing any zone's usage (an O(ports) walk per reboot)."""
    ports, sgs = scenario(n_ports=12, zones=(5, 6))
    port, three = ports["port-4"], ports["port-3"]
    rebooted = {**ports, "port-4": FilteredPort(port.details, port.ofport + 100, port.local_vlan)}
    reordered = three.details.model_copy(
        update={"security_groups": tuple(reversed(three.details.security_groups))}
    )
    regrouped = {**ports, "port-3": FilteredPort(reordered, three.ofport, three.local_vlan)}
    trusted = {**ports, "port-50": make_port(50, ("web",), vlan=5, security=False)}
    arrived = {**ports, "port-51": make_port(51, ("db",), vlan=7)}
    cases = [(rebooted, {"port-4"}), (regrouped, {"port-3"}), (trusted, {"port-50"})]

    usage = openvswitch.remote_usage
    walks: list[object] = []
    with monkeypatch.context() as patch:
        patch.setattr(openvswitch, "remote_usage", lambda *a: walks.append(a) or usage(*a))
        for after, expected in cases:
            dirty = OVSFirewall().owners_for_change(ports, sgs, after, sgs)
            assert dirty == {port_owner(iface) for iface in expected}
        assert not walks
        # a filtered port arriving changes its zone's usage: the full computation runs
        OVSFirewall().owners_for_change(ports, sgs, arrived, sgs)
        assert walks

    for after, _ in [*cases, (arrived, set())]:
        check_incremental((ports, sgs), (after, sgs))  # restricted == full recompute
    _, changed = check_incremental((ports, sgs), (rebooted, sgs))
    assert changed and all({port.ofport, port.ofport + 100} & _ports_in(f) for f in changed)


def _ports_in(flow: Flow) -> set[int]:
    found = {flow.match.get("in_port"), flow.match.get("reg5")}
    found |= {a.port for a in flow.actions if isinstance(a, Output)}
    found |= {a.value for a in flow.actions if isinstance(a, SetField) and a.field == "reg5"}
    return {p for p in found if isinstance(p, int)}


def test_same_input_same_flows_whatever_the_order() -> None:
    ports, sgs = scenario(n_ports=20)
    reference = firewall_owners(OVSFirewall(), ports, sgs)
    rng = random.Random(7)
    for _ in range(3):
        items = list(ports.items())
        rng.shuffle(items)
        shuffled_ports = {
            k: FilteredPort(
                p.details.model_copy(
                    update={"security_groups": tuple(reversed(p.details.security_groups))}
                ),
                p.ofport,
                p.local_vlan,
            )
            for k, p in items
        }
        groups = {
            sg_id: g.model_copy(update={"rules": tuple(rng.sample(g.rules, len(g.rules)))})
            for sg_id, g in reversed(list(sgs.groups.items()))
        }
        member_sets = {k: dict(reversed(list(v.items()))) for k, v in sgs.members.items()}
        again = firewall_owners(
            OVSFirewall(), shuffled_ports, SecurityGroupState(groups, member_sets)
        )
        assert again == reference


def test_no_two_owners_disagree_on_a_flow_key() -> None:
    ports, sgs = scenario(n_ports=30, zones=(5, 6))
    actions_by_key: dict[tuple[int, int, Match], set[object]] = defaultdict(set)
    for flows in firewall_owners(OVSFirewall(), ports, sgs).values():
        for f in flows:
            actions_by_key[f.key].add(f.actions)
    assert all(len(actions) == 1 for actions in actions_by_key.values())


def test_conjunction_ids_depend_on_the_key_set_only(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [("sg-a", "sg-b", "ingress", "IPv4"), ("sg-b", "sg-a", "egress", "IPv6"),
            ("sg-c", "sg-c", "ingress", "IPv4")]  # fmt: skip
    first = ConjunctionIds.for_keys(keys)
    assert ConjunctionIds.for_keys(reversed(keys)) == first
    assert all(base % 8 == 0 and 8 <= base <= 2**32 - 8 for base in first.bases.values())
    assert first.conj_id(keys[0], 3) == first.bases[keys[0]] + 6
    # collisions: every key still gets its own block, chosen in key order
    monkeypatch.setattr("aovs.firewall.conjunctions.preferred_block", lambda key: 42)
    collided = ConjunctionIds.for_keys(keys)
    assert sorted(collided.bases.values()) == [42 * 8, 43 * 8, 44 * 8]
    assert collided.bases[min(keys)] == 42 * 8


def test_unsupported_rule_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = SecurityGroup(id="bad", rules=(
        rule("ingress", protocol="bogus"),
        rule("ingress", ethertype="IPv4", remote_ip_prefix="fd00::/64"),
        rule("ingress", protocol="tcp", port_range_min=80, port_range_max=80),
    ))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        flows = OVSFirewall().port_flows(make_port(1, ("bad",)), SecurityGroupState({"bad": bad}))
    rule_flows = [f for f in flows if f.table == 82 and f.priority >= 70]
    assert {f.match.get("tcp_dst") for f in rule_flows} == {80}
    assert "unknown protocol 'bogus'" in caplog.text
    assert "IPv4 rule with prefix fd00::/64" in caplog.text


def test_zero_prefix_members_fail_closed() -> None:
    ports = {"p": make_port(1, ("web",))}
    sgs = SecurityGroupState({"web": WEB}, members({"web": ["0.0.0.0/0", "10.5.0.7/32"]}))
    shared = OVSFirewall().shared_flows(ports, sgs)
    assert {o[4] for o in shared} == {"10.5.0.7"}
