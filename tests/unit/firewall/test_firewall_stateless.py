"""Stateless security groups in the openvswitch driver: rules admit exactly what they say.

A stateful group admits the replies to connections the port opened; a stateless one must not
(that is the difference, and treating stateless as stateful is not fail-closed). The port's
traffic never goes through conntrack, its rule flows match no ct_state, and its base flows
(anti-spoofing, ARP, DHCP, ND) stay as they are.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import pytest
from fw_scenarios import DB, WEB, check_incremental, make_port, rule, scenario

from aovs.dataplane.compose import firewall_owners
from aovs.firewall import FilteredPort, SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.firewall.stateless import group_is_stateless, is_stateless
from aovs.model import AllowedAddressPair, SecurityGroup
from aovs.openflow.flows import (
    CT,
    Conjunction,
    CTClear,
    Flow,
    Match,
    Output,
    Resubmit,
    SetField,
    ct_state,
)
from aovs.owners import MEMBER, PORT, kind_of, member_owner, port_owner

NEW = ct_state("+new-est")
SSH = rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22)
OPEN = SecurityGroup(
    id="open",
    stateful=False,
    rules=(SSH, rule("egress", ethertype="IPv4"), rule("egress", ethertype="IPv6")),
)


def stateless(group: SecurityGroup) -> SecurityGroup:
    return group.model_copy(update={"stateful": False})


def _uses_conntrack(flow: Flow) -> bool:
    return any(isinstance(a, CT | CTClear) for a in flow.actions)


def _commits_for_a_sender(flow: Flow, port: FilteredPort) -> bool:
    """Table 73's commit of a stateful local sender's new connection to the stateless port."""
    return (
        flow.table == 73
        and flow.match.get("ct_state") == NEW
        and flow.match.get("reg6") == port.local_vlan
        and flow.match.get("eth_dst") is not None
        and flow.actions[1:] == (SetField("reg5", port.ofport), Resubmit(81))
        and flow.actions[0] == CT(commit=True, zone_src="reg6")
    )


def test_a_stateless_port_sends_none_of_its_traffic_to_conntrack() -> None:
    port = make_port(1, ("open",))
    flows = OVSFirewall().port_flows(port, SecurityGroupState({"open": OPEN}))
    # the only ct() actions: table 73 committing a stateful local sender's new connection to it
    # (one per MAC and IP version), so that the sender's conntrack admits the answers
    senders = {f for f in flows if _commits_for_a_sender(f, port)}
    assert len(senders) == 2
    assert not [f for f in flows - senders if _uses_conntrack(f)]
    assert not [f for f in flows if any(isinstance(a, CT) and a.table for a in f.actions)]
    # no flow of its own traffic reads conntrack state
    assert not [f for f in flows - senders if f.match.get("ct_state") is not None]
    assert not [f for f in flows if f.match.get("ct_mark") is not None]


def test_a_rule_admits_exactly_its_packets_without_ct_state() -> None:
    port = make_port(1, ("open",))
    flows = OVSFirewall().port_flows(port, SecurityGroupState({"open": OPEN}))
    ssh = Match(eth_type=0x800, reg5=2, ip_proto=6, tcp_dst=22)
    assert Flow(82, 77, ssh, [Output(2, 0)]) in flows
    assert [f for f in flows if f.match.get("tcp_dst") == 22] == [Flow(82, 77, ssh, [Output(2, 0)])]
    # egress any: one flow per ethertype on to table 73, where nothing is committed
    assert Flow(72, 74, Match(eth_type=0x800, reg5=2), [Resubmit(73)]) in flows
    assert Flow(72, 74, Match(eth_type=0x86DD, reg5=2), [Resubmit(73)]) in flows
    assert Flow(73, 80, Match(reg5=2), [Resubmit(94)]) in flows
    assert not [f for f in flows if f.table == 73 and f.match.get("reg5") == 2 and f.priority > 80]
    # IP goes from the anti-spoofing table and the ingress base table to the rules directly
    assert Flow(71, 65, Match(in_port=2, reg5=2, eth_src="fa:16:3e:00:00:01", eth_type=0x800,
                ipv4_src="10.5.0.1"), [Resubmit(72)]) in flows  # fmt: skip
    assert Flow(81, 90, Match(reg5=2, eth_type=0x800), [Resubmit(82)]) in flows
    assert Flow(81, 90, Match(reg5=2, eth_type=0x86DD), [Resubmit(82)]) in flows


def test_egress_is_not_answered_implicitly() -> None:
    """Stateful: 82 admits +est+rpl and related in the port's zone. Stateless: nothing in 82
    for the port but its rules (p70-77), and none of them looks at connection state."""
    sgs = SecurityGroupState({"open": OPEN, "open-stateful": OPEN.model_copy(
        update={"id": "open-stateful", "stateful": True})})  # fmt: skip
    driver = OVSFirewall()
    stateful = driver.port_flows(make_port(1, ("open-stateful",)), sgs)
    replies = {f.match.get("ct_state") for f in stateful if f.table == 82
               and f.priority == 50 and Output(2, 0) in f.actions}  # fmt: skip
    assert replies == {ct_state("+est-rel+rpl"), ct_state("-new-est+rel-inv")}

    flows = driver.port_flows(make_port(1, ("open",)), sgs)
    ingress_rules = [f for f in flows if f.table == 82]
    assert ingress_rules and all(70 <= f.priority <= 77 for f in ingress_rules)
    assert all(f.match.get("ct_state") is None for f in ingress_rules)
    assert {f.match.get("tcp_dst") for f in ingress_rules} == {22}
    # nothing else reaches the port unfiltered: 81 passes only ARP, ND, DHCP replies
    outputs = [f for f in flows if Output(2, 0) in f.actions and f.table == 81]
    assert {(f.match.get("eth_type"), f.match.get("icmpv6_type"), f.match.get("udp_dst"))
            for f in outputs} == {(0x806, None, None), (0x86DD, 130, None), (0x86DD, 134, None),
                                  (0x86DD, 135, None), (0x86DD, 136, None), (0x800, None, 68),
                                  (0x86DD, None, 546)}  # fmt: skip


def test_a_stateful_neighbours_replies_go_through_the_ports_ingress_rules() -> None:
    """A stateful port's +est+rpl egress leaves table 72 straight to 94 (NORMAL): for each of
    a stateless port's MACs, 94 sends IP through the stateless port's ingress (81, 82)."""
    pair = AllowedAddressPair(ip_address="10.9.9.9", mac_address="fa:16:3e:aa:aa:aa")
    port = make_port(1, ("open",), pairs=(pair,))
    flows = OVSFirewall().port_flows(port, SecurityGroupState({"open": OPEN}))
    redirects = {f for f in flows if f.table == 94}
    assert redirects == {
        Flow(94, 100, Match(reg6=5, eth_dst=mac, eth_type=eth_type),
             [SetField("reg5", 2), Resubmit(81)])
        for mac in ("fa:16:3e:00:00:01", "fa:16:3e:aa:aa:aa") for eth_type in (0x800, 0x86DD)
    }  # fmt: skip
    stateful = OVSFirewall().port_flows(port, SecurityGroupState({"open": OPEN.model_copy(
        update={"stateful": True})}))  # fmt: skip
    assert not [f for f in stateful if f.table == 94]


def test_base_flows_stay_as_for_a_stateful_port() -> None:
    """Anti-spoofing, ARP, DHCP and ND flows do not depend on statefulness; only the flows
    that hand IP to conntrack (and conntrack's own flows) differ."""
    pair = AllowedAddressPair(ip_address="10.9.9.9", mac_address="fa:16:3e:aa:aa:aa")
    port = make_port(1, ("g",), pairs=(pair,))
    group = SecurityGroup(id="g", rules=(SSH,))
    driver = OVSFirewall()
    full = driver.port_flows(port, SecurityGroupState({"g": group}))
    bare = driver.port_flows(port, SecurityGroupState({"g": stateless(group)}))

    def base(flows: frozenset[Flow]) -> set[Flow]:
        return {f for f in flows if f.table in (60, 71, 81) and f.priority not in (10, 65, 80, 90)}

    assert base(full) == base(bare) and len(base(bare)) > 20
    assert Flow(71, 10, Match(in_port=2, reg5=2), [Resubmit(93)]) in bare


def test_the_stateful_flag_of_a_rule_makes_its_group_stateless() -> None:
    group = SecurityGroup(id="g", rules=(SSH.model_copy(update={"stateful": False}),))
    assert group.stateful and group_is_stateless(group)
    assert is_stateless(("g",), SecurityGroupState({"g": group}))
    assert not is_stateless(("g", "unknown"), SecurityGroupState({"g": stateless(group).model_copy(
        update={"stateful": True, "rules": (SSH,)})}))  # fmt: skip


def test_a_port_mixing_both_kinds_is_stateless_and_said(caplog: pytest.LogCaptureFixture) -> None:
    """neutron-server refuses the mix; if one arrives anyway, no group admits replies."""
    sgs = SecurityGroupState({"open": OPEN, "web": WEB, "empty": SecurityGroup(id="empty")})
    driver = OVSFirewall()
    with caplog.at_level(logging.WARNING):
        flows = driver.port_flows(make_port(1, ("web", "open")), sgs)
    assert "port-1 has stateful security groups web and stateless ones open" in caplog.text
    assert not [f for f in flows if f.table in (72, 82) and f.match.get("ct_state") is not None]
    assert not [f for f in flows if f.table == 71 and _uses_conntrack(f)]
    # web's rules are there, stateless: icmp from anywhere, one flow
    icmp = [f for f in flows if f.table == 82 and f.match.get("ip_proto") == 1 and f.priority == 75]
    assert icmp == [Flow(82, 75, Match(eth_type=0x800, reg5=2, ip_proto=1), [Output(2, 0)])]
    # a group without rules cannot say it is stateless on the wire: not a mix, no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        driver.port_flows(make_port(1, ("empty", "open")), sgs)
    assert not caplog.text


def _conj_ids(flows: frozenset[Flow] | set[Flow], clause: int) -> set[int]:
    return {a.id for f in flows for a in f.actions if isinstance(a, Conjunction) and
            a.clause == clause}  # fmt: skip


def test_remote_group_rules_use_one_stateless_conjunction_per_rule() -> None:
    ports, sgs = scenario(n_ports=12, zones=(5,))
    sgs = SecurityGroupState({"web": stateless(WEB), "db": stateless(DB)}, sgs.members)
    driver = OVSFirewall()
    port = ports["port-5"]  # in db and web
    flows = driver.port_flows(port, sgs)
    clause2 = {f for f in flows if _conj_ids({f}, 2)}
    assert clause2 and all(f.match.get("ct_state") is None for f in clause2)
    ids = _conj_ids(clause2, 2)
    assert ids and all(conj_id % 2 == 1 for conj_id in ids)  # the odd slot of each pair
    accepts = {f for f in flows if f.match.get("conj_id") is not None}
    assert {f.match.get("conj_id") for f in accepts} == ids
    for f in accepts:
        assert f.match.get("ct_state") is None
        assert f.actions[0] == SetField("reg7", f.match.get("conj_id"))
        assert f.actions[1:] == ((Output(port.ofport, 0),) if f.table == 82 else (Resubmit(73),))
    # the member side: one flow per (address, priority), no ct_state, completing those ids
    shared = driver.shared_flows(ports, sgs)
    member_flows = {f for flows_ in shared.values() for f in flows_}
    assert member_flows and all(f.match.get("ct_state") is None for f in member_flows)
    assert ids <= _conj_ids(member_flows, 1)
    # a member joining costs one flow per (zone, direction, ethertype) referencing it
    owners = [o for o in shared if o[2:4] == ("ingress", "IPv4")]
    assert all(len(shared[o]) <= 4 for o in owners)


def test_stateful_and_stateless_ports_share_a_zones_member_flows() -> None:
    """Same zone, same remote group: member flows carry the stateful pairs (est/new) and the
    stateless ids (any state) side by side, and no two owners disagree on a flow key."""
    ports, sgs = scenario(n_ports=12, zones=(5,))
    web_sl = stateless(WEB).model_copy(update={"id": "web-sl"})
    mixed_sgs = SecurityGroupState({**sgs.groups, "web-sl": web_sl}, sgs.members)
    sl_port = make_port(40, ("web-sl",), vlan=5)
    ports = {**ports, "port-40": sl_port}
    driver = OVSFirewall()
    owned = firewall_owners(driver, ports, mixed_sgs)
    member_flows = {f for o, flows in owned.items() if kind_of(o) == MEMBER for f in flows}
    states = {f.match.get("ct_state") for f in member_flows}
    assert states == {None, ct_state("+est-rel-rpl"), NEW}
    stateless_ids = _conj_ids(owned[port_owner("port-40")], 2)
    assert stateless_ids and stateless_ids <= _conj_ids(
        {f for f in member_flows if f.match.get("ct_state") is None}, 1
    )
    keys: dict[tuple[int, int, Match], set[object]] = defaultdict(set)
    for flows in owned.values():
        for f in flows:
            keys[f.key].add(f.actions)
    assert all(len(actions) == 1 for actions in keys.values())


def test_trusted_ports_are_unaffected() -> None:
    sgs = SecurityGroupState({"open": OPEN})
    driver = OVSFirewall()
    assert driver.port_flows(make_port(1, ("open",), security=False), sgs) == driver.port_flows(
        make_port(1, ("open",), security=False), SecurityGroupState({})
    )


# -- incremental recomputation ---------------------------------------------------------------
def _with(sgs: SecurityGroupState, *groups: SecurityGroup) -> SecurityGroupState:
    return SecurityGroupState({**sgs.groups, **{g.id: g for g in groups}}, sgs.members)


def test_switching_a_group_stateless_and_back_equals_a_full_recompute() -> None:
    ports, sgs = scenario(n_ports=12, zones=(5, 6))
    web_ports = {port_owner(i) for i, p in ports.items() if "web" in p.details.security_groups}
    db_ports = {port_owner(i) for i, p in ports.items() if "db" in p.details.security_groups}
    flipped = _with(sgs, stateless(WEB))
    dirty, _ = check_incremental((ports, sgs), (ports, flipped))
    # every port using web (ports in web and db too: their db rules become stateless)
    assert {o for o in dirty if kind_of(o) == PORT} == web_ports
    assert {o for o in dirty if kind_of(o) == MEMBER}  # the conjunction ids moved
    check_incremental((ports, flipped), (ports, sgs))
    # both groups, one after the other, and a rule-level flag
    both = _with(flipped, stateless(DB))
    dirty, _ = check_incremental((ports, flipped), (ports, both))
    assert {o for o in dirty if kind_of(o) == PORT} == db_ports
    ssh_only = DB.model_copy(update={"rules": tuple(
        r.model_copy(update={"stateful": False}) for r in DB.rules)})  # fmt: skip
    check_incremental((ports, sgs), (ports, _with(sgs, ssh_only)))
    check_incremental((ports, both), (ports, sgs))


def test_ports_and_members_changing_around_stateless_groups() -> None:
    ports, sgs = scenario(n_ports=12, zones=(5, 6))
    sgs = _with(sgs, stateless(WEB))
    open_sgs = _with(sgs, OPEN)
    grown = SecurityGroupState(sgs.groups, {**sgs.members, "web": {
        **sgs.members["web"], "IPv4": sgs.members["web"]["IPv4"] | {"10.5.200.1"}}})  # fmt: skip
    changes = [
        # a stateless port arrives in a stateful port's zone, with the remote group in use
        ({**ports, "port-50": make_port(50, ("web",), vlan=5)}, sgs),
        # a db-only (stateful) port joins web: it becomes stateless
        ({**ports, "port-0": make_port(0, ("db", "web"), vlan=5)}, sgs),
        # a member joins the stateless group
        (ports, grown),
        # a new stateless group on a port
        ({**ports, "port-3": make_port(3, ("open", "web"), vlan=6)}, open_sgs),
    ]  # fmt: skip
    for after in changes:
        check_incremental((ports, sgs), after)
    dirty, _ = check_incremental((ports, sgs), (ports, grown))
    assert dirty == {member_owner(z, "ingress", "IPv4", "10.5.200.1") for z in (5, 6)}


def test_same_input_same_flows_whatever_the_order() -> None:
    ports, sgs = scenario(n_ports=10)
    sgs = SecurityGroupState({"web": stateless(WEB), "db": DB}, sgs.members)
    reference = firewall_owners(OVSFirewall(), ports, sgs)
    shuffled = SecurityGroupState(dict(reversed(list(sgs.groups.items()))), sgs.members)
    again = firewall_owners(OVSFirewall(), dict(reversed(list(ports.items()))), shuffled)
    assert again == reference
