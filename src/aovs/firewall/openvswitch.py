"""The ``openvswitch`` firewall driver: neutron's conntrack-based security groups, as values.

Same tables, priorities, registers and conjunction scheme as neutron's
``openvswitch_firewall`` (so ``ovs-ofctl dump-flows`` reads the same to an operator), computed
as pure functions (see docs/firewall.md for the picture):

    60 TRANSIENT     in_port=P -> reg5=P, reg6=zone -> 71 (egress)
                     dl_vlan=zone,dl_dst=MAC -> reg5, reg6, strip vlan -> 81 (ingress)
    71 BASE_EGRESS   anti-spoofing: ARP/RARP/ND from the port's pairs, DHCP client, no DHCP
                     server or RA; IP from a (MAC, IP) pair -> ct(zone=reg6, table=72)
    72 RULES_EGRESS  est/rel accepted, invalid dropped, egress rules -> 73
    73 ACCEPT_OR_INGRESS  to a local port's MAC -> 81; else commit new -> 91 -> 94 -> 110
    81 BASE_INGRESS  ARP, ND, DHCP replies pass; IP -> ct(zone=reg6, table=82)
    82 RULES_INGRESS est/rel accepted, invalid dropped, ingress rules -> commit, output:P
    91-94            accepted egress / accepted ingress / dropped / switching (neutron: NORMAL;
                     aovs: br-int's tables 110-112, see aovs.pipelines.br_int)

Remote-group rules use conjunctions: per port, ``conjunction(id, 2/2)`` flows match the port and
the protocol; per (zone, direction, ethertype, member address) a ``conjunction(id, 1/2)`` flow
matches the member's address, so a member joining a group costs 2 flows (est + new), not one
per port. Conjunction ids are derived from stable keys (aovs.firewall.conjunctions).

A port whose security groups are stateless (aovs.firewall.stateless) gets the same tables
without conntrack: 71 and 81 pass IP straight to the rules, rule flows match no ct_state (one
flow per match instead of the est/new pair), nothing replies implicitly. Two flows keep its
stateful neighbours on this host working as they would with a remote one: table 73 commits
a stateful sender's new connection to it (as 73 does for any accepted egress), and table 94
sends IP to its MACs, which a stateful port's established replies reach without ingress
filtering, through its ingress rules.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from aovs.firewall.base import FilteredPort, SecurityGroupState
from aovs.firewall.conjunctions import ConjKey, ConjunctionIds
from aovs.firewall.port_addresses import PortAddresses, is_trusted
from aovs.firewall.port_ranges import disjoint_segments
from aovs.firewall.rule_matches import (
    CONJUNCTION_BASE_PRIORITY,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ETH_TYPE_RARP,
    ETH_TYPES,
    PORT_FIELDS,
    PROTO_ICMPV6,
    PROTO_UDP,
    UnsupportedRule,
    check_prefix,
    peer_field,
    priority_offset,
    protocol_matches,
    protocol_number,
)
from aovs.firewall.stateless import (
    is_stateless,
    is_stateless_conj_id,
    port_is_stateless,
    stateless_conj_id,
)
from aovs.model import SecurityGroupRule
from aovs.openflow.flows import (
    CT,
    Action,
    Conjunction,
    CTClear,
    Flow,
    GotoTable,
    Match,
    MatchValue,
    Output,
    PopVlan,
    Resubmit,
    SetField,
    ct_state,
    field_pair,
    interned_actions,
    vid,
)
from aovs.owners import Member, OwnerKey, member_of, member_owner, port_owner
from aovs.pipelines.tables import (
    ACCEPT_OR_INGRESS_TABLE,
    ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE,
    ACCEPTED_EGRESS_TRAFFIC_TABLE,
    ACCEPTED_INGRESS_TRAFFIC_TABLE,
    BASE_EGRESS_TABLE,
    BASE_INGRESS_TABLE,
    DROPPED_TRAFFIC_TABLE,
    LOCAL_VLAN_TABLE,
    REG_NET,
    REG_PORT,
    REG_REMOTE_GROUP,
    RULES_EGRESS_TABLE,
    RULES_INGRESS_TABLE,
    TRANSIENT_TABLE,
)

LOG = logging.getLogger(__name__)

FIREWALL_TABLES = (
    BASE_EGRESS_TABLE,
    RULES_EGRESS_TABLE,
    ACCEPT_OR_INGRESS_TABLE,
    BASE_INGRESS_TABLE,
    RULES_INGRESS_TABLE,
)

# conntrack states, as neutron's openvswitch_firewall/constants.py names them
NOT_TRACKED = ct_state("-trk")
TRACKED = ct_state("+trk")
INVALID = ct_state("+trk+inv")
NEW_NOT_ESTABLISHED = ct_state("+new-est")
NOT_ESTABLISHED = ct_state("-est")
ESTABLISHED = ct_state("+est")
ESTABLISHED_NOT_REPLY = ct_state("+est-rel-rpl")
ESTABLISHED_REPLY = ct_state("+est-rel+rpl")
RELATED = ct_state("-new-est+rel-inv")
ACCEPT_STATES = (ESTABLISHED_NOT_REPLY, NEW_NOT_ESTABLISHED)  # conj id +0 and +1
CT_MARK_NORMAL = 0
CT_MARK_INVALID = 1

# neutron.agent.firewall: ICMPv6 a VM may always send / always receive
ICMPV6_TYPE_MLD_QUERY = 130
ICMPV6_TYPE_RS = 133
ICMPV6_TYPE_RA = 134
ICMPV6_TYPE_NS = 135
ICMPV6_TYPE_NA = 136
ICMPV6_ALLOWED_EGRESS_TYPES = (ICMPV6_TYPE_MLD_QUERY, ICMPV6_TYPE_RS, ICMPV6_TYPE_NS)
ICMPV6_RESTRICTED_EGRESS_TYPES = (ICMPV6_TYPE_NA,)  # only for the port's own addresses
ICMPV6_ALLOWED_INGRESS_TYPES = (
    ICMPV6_TYPE_MLD_QUERY,
    ICMPV6_TYPE_NS,
    ICMPV6_TYPE_NA,
    ICMPV6_TYPE_RA,
)
DHCP_PORTS = {ETH_TYPE_IP: (68, 67), ETH_TYPE_IPV6: (546, 547)}  # (client, server)

# table 73 / 94 flows of a stateless port (priorities neutron does not use; see module docstring)
STATELESS_COMMIT_PRIORITY = 101  # above the p100 "to a local port" flow it refines
STATELESS_REDIRECT_PRIORITY = 100  # above NORMAL (1) and neutron's egress-direct flows (10, 12)

COMMIT = CT(commit=True, zone_src=REG_NET)
MARK_INVALID = CT(commit=True, zone_src=REG_NET, actions=(SetField("ct_mark", CT_MARK_INVALID),))


def _flow(table: int, priority: int, actions: Iterable[Action], **match: Any) -> Flow:
    return Flow(table, priority, Match(**match), actions)


def _to(table: int) -> Resubmit:
    return Resubmit(table)


def _track(table: int) -> CT:
    return CT(zone_src=REG_NET, table=table)


# -- table-wide flows ---------------------------------------------------------------------
def firewall_base_flows() -> frozenset[Flow]:
    flows = [_flow(table, 0, ()) for table in FIREWALL_TABLES]
    flows += [
        # neutron: NORMAL; aovs switches in OpenFlow (aovs.pipelines.br_int)
        _flow(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE, 1, [GotoTable(LOCAL_VLAN_TABLE)]),
        _flow(ACCEPTED_EGRESS_TRAFFIC_TABLE, 1, [_to(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)]),
        _flow(ACCEPTED_INGRESS_TRAFFIC_TABLE, 0, ()),
        _flow(DROPPED_TRAFFIC_TABLE, 0, ()),
        # a packet tracked in another zone (e.g. hairpinned) is tracked again in its own
        _flow(BASE_EGRESS_TABLE, 110, [CTClear(), _to(BASE_EGRESS_TABLE)], ct_state=TRACKED),
        _flow(RULES_EGRESS_TABLE, 50, [_to(DROPPED_TRAFFIC_TABLE)], ct_state=INVALID),
        _flow(RULES_INGRESS_TABLE, 50, [_to(DROPPED_TRAFFIC_TABLE)], ct_state=INVALID),
    ]
    return frozenset(flows)


# -- one port -----------------------------------------------------------------------------
# A port's ~65 flows are built from values normalised once: the port's own match pairs (its
# ofport, zone, MACs, addresses) and the constant ones below, combined by Match.of_pairs; its
# action lists are interned once per port, not once per flow. The rule flows come from
# templates compiled once per (group set, stateful): see CompiledRules.
Pair: TypeAlias = tuple[str, MatchValue]
_pair = field_pair

ETH_ARP = _pair("eth_type", ETH_TYPE_ARP)
ETH_RARP = _pair("eth_type", ETH_TYPE_RARP)
ETH_IP = _pair("eth_type", ETH_TYPE_IP)
ETH_IPV6 = _pair("eth_type", ETH_TYPE_IPV6)
ETH_PAIRS = {ETH_TYPE_IP: ETH_IP, ETH_TYPE_IPV6: ETH_IPV6}
IP_PROTO_UDP = _pair("ip_proto", PROTO_UDP)
IP_PROTO_ICMPV6 = _pair("ip_proto", PROTO_ICMPV6)
_CT_STATE_PAIRS = {
    state: _pair("ct_state", state)
    for state in (NOT_TRACKED, TRACKED, INVALID, NEW_NOT_ESTABLISHED, NOT_ESTABLISHED,
                  ESTABLISHED, ESTABLISHED_NOT_REPLY, ESTABLISHED_REPLY, RELATED)
}  # fmt: skip
CT_MARK_INVALID_PAIR = _pair("ct_mark", CT_MARK_INVALID)
CT_MARK_NORMAL_PAIR = _pair("ct_mark", CT_MARK_NORMAL)


def _ct(state: tuple[int, int]) -> Pair:
    return _CT_STATE_PAIRS[state]


def _icmpv6(icmp_type: int) -> Pair:
    return _pair("icmpv6_type", icmp_type)


def _udp(src: int, dst: int) -> tuple[Pair, Pair, Pair]:
    return IP_PROTO_UDP, _pair("udp_src", src), _pair("udp_dst", dst)


def _acts(*actions: Action) -> tuple[Action, ...]:
    return interned_actions(actions)


def _mk(table: int, priority: int, actions: tuple[Action, ...], *pairs: Pair) -> Flow:
    return Flow(table, priority, Match.of_pairs(pairs), actions)


TO_NORMAL = _acts(_to(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE))
TO_DROPPED = _acts(_to(DROPPED_TRAFFIC_TABLE))
TO_ACCEPT_OR_INGRESS = _acts(_to(ACCEPT_OR_INGRESS_TABLE))
TRACK_EGRESS = _acts(_track(RULES_EGRESS_TABLE))
TO_RULES_EGRESS = _acts(_to(RULES_EGRESS_TABLE))


class _PortFields:
    """One port's match pairs and action lists, normalised / interned once for all its flows."""

    __slots__ = ("in_port", "out", "reg_net", "reg_port", "regs", "to_port", "zone")

    def __init__(self, port: FilteredPort) -> None:
        self.zone = port.local_vlan
        self.in_port = _pair("in_port", port.ofport)
        self.reg_port = _pair(REG_PORT, port.ofport)
        self.reg_net = _pair(REG_NET, port.local_vlan)
        self.regs = (SetField(REG_PORT, port.ofport), SetField(REG_NET, port.local_vlan))
        self.to_port = _acts(SetField(REG_PORT, port.ofport), _to(BASE_INGRESS_TABLE))
        self.out = _acts(Output(port.ofport, 0))


def _register_loads(port: FilteredPort) -> list[Action]:
    return [SetField(REG_PORT, port.ofport), SetField(REG_NET, port.local_vlan)]


def trusted_port_flows(port: FilteredPort) -> Iterator[Flow]:
    """Port security off (or a network-owned port): neutron's "no security" pass-through."""
    yield _flow(
        TRANSIENT_TABLE,
        100,
        [*_register_loads(port), _to(ACCEPT_OR_INGRESS_TABLE)],
        in_port=port.ofport,
    )
    yield _flow(
        ACCEPT_OR_INGRESS_TABLE,
        80,
        [_to(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)],
        **{REG_PORT: port.ofport},
    )


def transient_flows(own: _PortFields, addresses: PortAddresses) -> Iterator[Flow]:
    yield _mk(TRANSIENT_TABLE, 100, _acts(*own.regs, _to(BASE_EGRESS_TABLE)), own.in_port)
    to_ingress = _acts(*own.regs, PopVlan(), _to(BASE_INGRESS_TABLE))
    vlan = _pair("vlan_vid", vid(own.zone))
    for mac in addresses.macs:
        yield _mk(TRANSIENT_TABLE, 90, to_ingress, vlan, _pair("eth_dst", mac))


def egress_base_flows(
    own: _PortFields, addresses: PortAddresses, stateful: bool = True
) -> Iterator[Flow]:
    """Table 71: what the VM may send at all (anti-spoofing), before any rule. The same for a
    stateless port, except that its IP goes to the rules without conntrack."""
    table = BASE_EGRESS_TABLE
    ports = (own.in_port, own.reg_port)
    to_rules = TRACK_EGRESS if stateful else TO_RULES_EGRESS
    for mac, ip in addresses.pairs_v4:
        src = _pair("eth_src", mac)
        yield _mk(table, 95, TO_NORMAL, src, ETH_ARP, _pair("arp_spa", ip), *ports)
        yield _mk(table, 95, TO_NORMAL, src, ETH_RARP, *ports)
        yield _mk(table, 65, to_rules, src, ETH_IP, _pair("ipv4_src", ip), *ports)
    for mac, ip in addresses.pairs_v6:
        src = _pair("eth_src", mac)
        ip_src = _pair("ipv6_src", ip)
        for icmp_type in ICMPV6_ALLOWED_EGRESS_TYPES:
            yield _mk(table, 95, TO_NORMAL, ETH_IPV6, IP_PROTO_ICMPV6, _icmpv6(icmp_type), src,
                      ip_src, *ports)  # fmt: skip
        for icmp_type in ICMPV6_RESTRICTED_EGRESS_TYPES:
            yield _mk(table, 95, TO_NORMAL, ETH_IPV6, IP_PROTO_ICMPV6, _icmpv6(icmp_type),
                      _pair("ipv6_nd_target", ip), *ports)  # fmt: skip
        yield _mk(table, 65, to_rules, src, ETH_IPV6, ip_src, *ports)
    # DHCP client traffic, also from 0.0.0.0 (DHCPDISCOVER)
    client_v4 = (*addresses.pairs_v4, (addresses.mac, "0.0.0.0"))
    for eth_type, pairs, src_field in (
        (ETH_TYPE_IP, client_v4, "ipv4_src"),
        (ETH_TYPE_IPV6, addresses.pairs_v6, "ipv6_src"),
    ):
        client, server = DHCP_PORTS[eth_type]
        eth = ETH_PAIRS[eth_type]
        for mac, ip in pairs:
            yield _mk(table, 80, TO_ACCEPT_OR_INGRESS, _pair("eth_src", mac), eth,
                      *_udp(client, server), _pair(src_field, ip), *ports)  # fmt: skip
        # no DHCP server on an instance
        yield _mk(table, 70, TO_DROPPED, eth, *_udp(server, client), *ports)
    # no router advertisements from an instance, and (aovs hardening: neutron lets these reach
    # the rules, where an "egress IPv6 any" rule accepts them) no neighbour advertisements for
    # addresses that are not the port's
    for icmp_type in (ICMPV6_TYPE_RA, *ICMPV6_RESTRICTED_EGRESS_TYPES):
        yield _mk(table, 70, TO_DROPPED, ETH_IPV6, IP_PROTO_ICMPV6, _icmpv6(icmp_type), *ports)
    # (71 p110 has already cleared any conntrack state: a stateless port needs no ct_clear)
    yield _mk(table, 10, CLEAR_AND_DROP if stateful else TO_DROPPED, *ports)


CLEAR_AND_DROP = _acts(CTClear(), _to(DROPPED_TRAFFIC_TABLE))
COMMIT_NEW_EGRESS = _acts(COMMIT, _to(ACCEPTED_EGRESS_TRAFFIC_TABLE))


def accept_or_ingress_flows(
    own: _PortFields, addresses: PortAddresses, stateful: bool = True
) -> Iterator[Flow]:
    """Table 73: accepted egress to a local filtered port goes on to that port's ingress.

    A stateless port commits nothing of its own; but a stateful local sender's new connection
    to it is committed here (in the shared zone), as 73 commits the sender's connections to
    remote ports, so that the sender's conntrack admits the answers."""
    table = ACCEPT_OR_INGRESS_TABLE
    commit_to_port = own.to_port if stateful else _acts(COMMIT, *own.to_port)
    for mac in addresses.macs:
        dst = _pair("eth_dst", mac)
        yield _mk(table, 100, own.to_port, dst, own.reg_net)
        if not stateful:
            for eth in (ETH_IP, ETH_IPV6):
                yield _mk(table, STATELESS_COMMIT_PRIORITY, commit_to_port, dst, eth,
                          _ct(NEW_NOT_ESTABLISHED), own.reg_net)  # fmt: skip
    if stateful:  # commit new egress
        for eth in (ETH_IP, ETH_IPV6):
            yield _mk(table, 90, COMMIT_NEW_EGRESS, eth, _ct(NEW_NOT_ESTABLISHED), own.reg_port)
    yield _mk(table, 80, TO_NORMAL, own.reg_port)


def stateless_redirect_flows(own: _PortFields, addresses: PortAddresses) -> Iterator[Flow]:
    """Table 94, stateless port: IP to its MACs goes through its ingress rules. A stateful
    port's established replies and related packets leave table 72 straight to 94 (NORMAL):
    its conntrack answers for both ends in neutron's shared zone, but it cannot answer for a
    stateless port, whose rules alone decide what it receives."""
    for mac in addresses.macs:
        dst = _pair("eth_dst", mac)
        for eth in (ETH_IP, ETH_IPV6):
            yield _mk(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE, STATELESS_REDIRECT_PRIORITY,
                      own.to_port, dst, eth, own.reg_net)  # fmt: skip


TRACK_INGRESS = _acts(_track(RULES_INGRESS_TABLE))
TO_RULES_INGRESS = _acts(_to(RULES_INGRESS_TABLE))
MARK_INVALID_ACTS = _acts(MARK_INVALID)


def ingress_base_flows(own: _PortFields, stateful: bool = True) -> Iterator[Flow]:
    """Table 81: what always reaches the VM (ARP, ND, DHCP replies); IP goes to conntrack, or
    for a stateless port straight to the rules (whatever state a local sender gave it)."""
    table = BASE_INGRESS_TABLE
    reg = own.reg_port
    out = own.out
    yield _mk(table, 100, out, ETH_ARP, reg)
    for icmp_type in ICMPV6_ALLOWED_INGRESS_TYPES:
        yield _mk(table, 100, out, ETH_IPV6, IP_PROTO_ICMPV6, _icmpv6(icmp_type), reg)
    for eth_type, (client, server) in DHCP_PORTS.items():
        eth = ETH_PAIRS[eth_type]
        yield _mk(table, 95, out, eth, *_udp(server, client), reg)
        if stateful:
            yield _mk(table, 90, TRACK_INGRESS, eth, _ct(NOT_TRACKED), reg)
        else:
            yield _mk(table, 90, TO_RULES_INGRESS, eth, reg)
    if stateful:
        yield _mk(table, 80, TO_RULES_INGRESS, _ct(TRACKED), reg)


def tracked_flows(own: _PortFields, table: int, accept: tuple[Action, ...]) -> Iterator[Flow]:
    """Tables 72/82 below the rules: replies and related pass, the rest of non-new traffic
    (and connections whose rule was removed, ct_mark=1) is dropped."""
    reg = own.reg_port
    yield _mk(table, 50, TO_DROPPED, CT_MARK_INVALID_PAIR, reg)
    zone = _pair("ct_zone", own.zone)
    for state in (ESTABLISHED_REPLY, RELATED):
        yield _mk(table, 50, accept, _ct(state), CT_MARK_NORMAL_PAIR, zone, reg)
    yield _mk(table, 40, TO_DROPPED, _ct(NOT_ESTABLISHED), reg)
    for eth in (ETH_IP, ETH_IPV6):
        yield _mk(table, 40, MARK_INVALID_ACTS, eth, _ct(ESTABLISHED), reg)


def _rules_table(direction: str) -> int:
    return RULES_INGRESS_TABLE if direction == "ingress" else RULES_EGRESS_TABLE


def _port_rules(
    sg_ids: Iterable[str], sgs: SecurityGroupState
) -> Iterator[tuple[str, SecurityGroupRule]]:
    for sg_id in sorted(set(sg_ids)):
        group = sgs.groups.get(sg_id)
        if group is not None:
            for rule in group.rules:
                yield sg_id, rule


def _checked_protocol(sg_id: str, rule: SecurityGroupRule) -> tuple[bool, int | None]:
    try:
        protocol = protocol_number(rule)
        check_prefix(rule)
    except (UnsupportedRule, ValueError) as exc:
        LOG.warning("security group %s: skipping rule %s: %s", sg_id, rule.model_dump(), exc)
        return False, None
    return True, protocol


# What a rule flow appends from the port's own actions (its ofport): nothing, or an accepting
# rule's (established, new) actions in one direction (see _accept_actions).
NO_ACCEPT, EGRESS_EST, EGRESS_NEW, INGRESS_EST, INGRESS_NEW = range(5)


def _accept_slots(direction: str, stateful: bool) -> list[tuple[int, Pair | None, int]]:
    """(conjunction id step, ct_state pair, accept slot) of an accepting rule: est and new for
    a stateful port; one flow matching any state (no conntrack) for a stateless one."""
    est, new = (INGRESS_EST, INGRESS_NEW) if direction == "ingress" else (EGRESS_EST, EGRESS_NEW)
    if stateful:
        return [(0, _ct(ESTABLISHED_NOT_REPLY), est), (1, _ct(NEW_NOT_ESTABLISHED), new)]
    return [(0, None, est)]


PORTLESS_ACCEPTS = {
    NO_ACCEPT: (),
    EGRESS_EST: TO_ACCEPT_OR_INGRESS,
    EGRESS_NEW: TO_ACCEPT_OR_INGRESS,
}


def _accept_actions(own: _PortFields) -> tuple[tuple[Action, ...], ...]:
    """The port's accept actions by slot; new ingress is committed."""
    return ((), TO_ACCEPT_OR_INGRESS, TO_ACCEPT_OR_INGRESS, own.out,
            _acts(COMMIT, *own.out, _to(ACCEPTED_INGRESS_TRAFFIC_TABLE)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class RuleFlowTemplate:
    """A rule flow less the port: its match pairs without the port's reg5, and its actions as
    ``head`` (the same on every port) followed by the port's accept actions of slot
    ``accept``."""

    table: int
    priority: int
    pairs: tuple[Pair, ...]
    head: tuple[Action, ...]
    accept: int


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """The rule flows of every port in one set of groups (stateful or not), less the port:
    computed once, not once per port (1000 ports share 10 groups here). ``actions`` lists the
    distinct (head, accept slot) pairs; ``flows`` holds (table, priority, the match pairs that
    sort before the port's reg5, those after it, index in ``actions``)."""

    actions: tuple[tuple[tuple[Action, ...], int], ...]
    flows: tuple[tuple[int, int, tuple[Pair, ...], tuple[Pair, ...], int], ...]
    # the actions of slots whose accept actions are the same on every port (egress), or None
    shared: tuple[tuple[Action, ...] | None, ...]

    @classmethod
    def of(cls, templates: Iterable[RuleFlowTemplate]) -> CompiledRules:
        slots: dict[tuple[tuple[Action, ...], int], int] = {}
        flows = []
        for template in templates:
            if any(name == REG_PORT for name, _ in template.pairs):
                raise ValueError(f"a rule template matches the port's {REG_PORT}: {template}")
            slot = slots.setdefault((template.head, template.accept), len(slots))
            pairs = sorted(template.pairs)
            before = tuple(pair for pair in pairs if pair[0] < REG_PORT)
            after = tuple(pair for pair in pairs if pair[0] > REG_PORT)
            flows.append((template.table, template.priority, before, after, slot))
        shared = tuple(
            _acts(*head, *PORTLESS_ACCEPTS[accept]) if accept in PORTLESS_ACCEPTS else None
            for head, accept in slots
        )
        return cls(tuple(slots), tuple(flows), shared)

    def port_flows(self, own: _PortFields) -> Iterator[Flow]:
        accepts = _accept_actions(own)
        actions = []
        for (head, accept), fixed in zip(self.actions, self.shared, strict=True):
            if fixed is None:  # the port's accept actions, after the head if any
                fixed = _acts(*head, *accepts[accept]) if head else accepts[accept]
            actions.append(fixed)
        reg = own.reg_port
        of_sorted = Match.of_sorted_pairs
        for table, priority, before, after, slot in self.flows:
            yield Flow(table, priority, of_sorted((*before, reg, *after)), actions[slot])


def _match_pairs(fields: Mapping[str, Any]) -> list[Pair]:
    return [_pair(name, value) for name, value in fields.items() if value is not None]


def plain_rule_templates(
    rules: Iterable[tuple[SecurityGroupRule, int | None]], stateful: bool = True
) -> Iterator[RuleFlowTemplate]:
    """Rules without a remote group: one accept pair (est, new) per match, priority 74-77;
    stateless: one flow per match, on no ct_state, admitting exactly what the rule says."""
    for rule, protocol in rules:
        table = _rules_table(rule.direction)
        base = [_pair("eth_type", ETH_TYPES[rule.ethertype])]
        prefix = check_prefix(rule)
        if prefix is not None:
            base.append(_pair(peer_field(rule.ethertype, rule.direction), prefix))
        priority = CONJUNCTION_BASE_PRIORITY + priority_offset(rule, protocol, conjunction=False)
        variants = _accept_slots(rule.direction, stateful)
        for proto_match in protocol_matches(rule, protocol):
            pairs = (*base, *_match_pairs(proto_match))
            for _, state, accept in variants:
                with_state = pairs if state is None else (state, *pairs)
                yield RuleFlowTemplate(table, priority, with_state, (), accept)


def _rule_conj_id(conj_ids: ConjunctionIds, key: ConjKey, offset: int, stateful: bool) -> int:
    conj_id = conj_ids.conj_id(key, offset)
    return conj_id if stateful else stateless_conj_id(conj_id)


def conjunction_templates(
    remote_rules: Iterable[tuple[str, SecurityGroupRule, int | None]],
    conj_ids: ConjunctionIds,
    stateful: bool = True,
) -> Iterator[RuleFlowTemplate]:
    """The port's side of remote-group rules: ``conjunction(id, 2/2)`` flows matching the
    port and protocol (ranges merged so same-priority flows never overlap), and one accept flow
    per conjunction id that records the id in reg7 (neutron logs it from there). A stateless
    port uses one id per rule (its odd slot) and matches no ct_state."""
    by_kind: dict[tuple[str, str, int | None], list[tuple[SecurityGroupRule, int]]] = defaultdict(
        list
    )
    for sg_id, rule, protocol in remote_rules:
        assert rule.remote_id is not None
        key: ConjKey = (sg_id, rule.remote_id, rule.direction, rule.ethertype)
        offset = priority_offset(rule, protocol, conjunction=True)
        by_kind[(rule.direction, rule.ethertype, protocol)].append(
            (rule, _rule_conj_id(conj_ids, key, offset, stateful))
        )
    for (direction, ethertype, protocol), rule_ids in sorted(
        by_kind.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or -1)
    ):
        table = _rules_table(direction)
        eth = _pair("eth_type", ETH_TYPES[ethertype])
        clauses: dict[tuple[int, frozenset[tuple[str, Any]]], set[int]] = defaultdict(set)
        if protocol in PORT_FIELDS:
            ranges = []
            for rule, conj_id in rule_ids:
                low = rule.port_range_min if rule.port_range_min is not None else 0
                high = rule.port_range_max if rule.port_range_max is not None else 65535
                if rule.port_range_min is not None and rule.port_range_max is None:
                    high = low
                ranges.append((low, high, conj_id))
            for low, high, segment_ids in disjoint_segments(ranges):
                template = rule_ids[0][0]
                for match in protocol_matches(template, protocol, (low, high)):
                    priority = CONJUNCTION_BASE_PRIORITY + 3
                    clauses[(priority, frozenset(match.items()))].update(segment_ids)
        else:
            for rule, conj_id in rule_ids:
                priority = CONJUNCTION_BASE_PRIORITY + priority_offset(rule, protocol, True)
                for match in protocol_matches(rule, protocol):
                    clauses[(priority, frozenset(match.items()))].add(conj_id)
        variants = _accept_slots(direction, stateful)
        for (priority, match_items), ids in clauses.items():
            pairs = (eth, *_match_pairs(dict(match_items)))
            for step, state, _ in variants:
                head = _acts(*[Conjunction(conj_id + step, 2, 2) for conj_id in sorted(ids)])
                with_state = pairs if state is None else (state, *pairs)
                yield RuleFlowTemplate(table, priority, with_state, head, NO_ACCEPT)
        for conj_id in sorted({conj_id for _, conj_id in rule_ids}):
            priority = CONJUNCTION_BASE_PRIORITY + conj_id % 8 // 2
            for step, state, accept in variants:
                pairs = (_pair("conj_id", conj_id + step), eth)
                with_state = pairs if state is None else (state, *pairs)
                head = (SetField(REG_REMOTE_GROUP, conj_id + step),)
                yield RuleFlowTemplate(table, priority, with_state, head, accept)


def _split_rules(
    sg_ids: Iterable[str], sgs: SecurityGroupState
) -> tuple[
    list[tuple[SecurityGroupRule, int | None]], list[tuple[str, SecurityGroupRule, int | None]]
]:
    plain: list[tuple[SecurityGroupRule, int | None]] = []
    remote: list[tuple[str, SecurityGroupRule, int | None]] = []
    for sg_id, rule in _port_rules(sg_ids, sgs):
        ok, protocol = _checked_protocol(sg_id, rule)
        if not ok:
            continue
        if rule.remote_id is not None:
            remote.append((sg_id, rule, protocol))
        else:
            plain.append((rule, protocol))
    return plain, remote


def compile_rules(
    sg_ids: Iterable[str], sgs: SecurityGroupState, conj_ids: ConjunctionIds, stateful: bool
) -> CompiledRules:
    """The rule flow templates of a port in groups ``sg_ids``."""
    plain, remote = _split_rules(sg_ids, sgs)
    templates = [*plain_rule_templates(plain, stateful),
                 *conjunction_templates(remote, conj_ids, stateful)]  # fmt: skip
    return CompiledRules.of(templates)


def filtered_port_flows(
    port: FilteredPort,
    sgs: SecurityGroupState,
    conj_ids: ConjunctionIds,
    compiled: Callable[[tuple[str, ...], bool], CompiledRules] | None = None,
) -> frozenset[Flow]:
    """A filtered port's flows. ``compiled`` returns the rule templates of a (sorted group
    ids, stateful) pair, memoised by the caller; without it they are compiled for this port."""
    addresses = PortAddresses.of(port.details)
    sg_ids = tuple(sorted(set(port.details.security_groups)))
    stateful = not port_is_stateless(port.details.device, sg_ids, sgs)
    own = _PortFields(port)
    flows: list[Flow] = []
    flows += transient_flows(own, addresses)
    flows += egress_base_flows(own, addresses, stateful)
    flows += accept_or_ingress_flows(own, addresses, stateful)
    flows += ingress_base_flows(own, stateful)
    if stateful:
        flows += tracked_flows(own, RULES_EGRESS_TABLE, TO_NORMAL)
        flows += tracked_flows(own, RULES_INGRESS_TABLE, own.out)
    else:
        flows += stateless_redirect_flows(own, addresses)
    rules = (
        compiled(sg_ids, stateful)
        if compiled is not None
        else compile_rules(sg_ids, sgs, conj_ids, stateful)
    )
    flows += rules.port_flows(own)
    return frozenset(flows)


# -- shared: remote group members -----------------------------------------------------------
def conjunction_keys(sgs: SecurityGroupState) -> Iterator[ConjKey]:
    for sg_id, group in sgs.groups.items():
        for rule in group.rules:
            if rule.remote_id is not None:
                yield (sg_id, rule.remote_id, rule.direction, rule.ethertype)


@functools.lru_cache(maxsize=65536)
def normal_address(address: str) -> str | None:
    """A member address as a match value would print it; None for a /0 (see member_flows)."""
    net = ipaddress.ip_network(address, strict=False)
    if net.prefixlen == 0:
        return None
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


# zone -> (direction, ethertype) -> remote group -> conjunction ids (offset included)
RemoteUsage = dict[int, dict[tuple[str, str], dict[str, frozenset[int]]]]


def remote_usage(
    ports: Mapping[str, FilteredPort], sgs: SecurityGroupState, conj_ids: ConjunctionIds
) -> RemoteUsage:
    """Which conjunction ids each zone's filtered ports use for each remote group (a stateless
    port's: odd ids, see aovs.firewall.stateless.stateless_conj_id)."""
    combos = {
        (port.local_vlan, tuple(sorted(set(port.details.security_groups))))
        for port in ports.values()
        if not is_trusted(port.details)
    }
    usage: dict[int, dict[tuple[str, str], dict[str, set[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(set))
    )
    for zone, sg_ids in combos:
        stateful = not is_stateless(sg_ids, sgs)
        for sg_id in sg_ids:
            group = sgs.groups.get(sg_id)
            for rule in group.rules if group is not None else ():
                if rule.remote_id is None:
                    continue
                ok, protocol = _checked_protocol(sg_id, rule)
                if not ok:
                    continue
                key: ConjKey = (sg_id, rule.remote_id, rule.direction, rule.ethertype)
                offset = priority_offset(rule, protocol, conjunction=True)
                usage[zone][(rule.direction, rule.ethertype)][rule.remote_id].add(
                    _rule_conj_id(conj_ids, key, offset, stateful)
                )
    return {
        zone: {kind: {r: frozenset(ids) for r, ids in remotes.items()}
               for kind, remotes in kinds.items()}
        for zone, kinds in usage.items()
    }  # fmt: skip


def _changed_ports(
    before: Mapping[str, FilteredPort], after: Mapping[str, FilteredPort]
) -> list[str]:
    changed = [iface for iface, port in after.items() if before.get(iface) != port]
    changed += [iface for iface in before if iface not in after]
    return changed


def _usage_view(port: FilteredPort | None) -> tuple[int, frozenset[str]] | None:
    """What of a port ``remote_usage`` reads: equal views, equal usage."""
    if port is None or is_trusted(port.details):
        return None
    return port.local_vlan, frozenset(port.details.security_groups)


def member_flows(
    zone: int, direction: str, ethertype: str, address: str, conj_ids: Iterable[int]
) -> frozenset[Flow]:
    """``conjunction(id, 1/2)`` flows of one member address in one zone, for every id (remote
    group rule) it completes, one flow per priority level and ct state.

    A member known only as a /0 (an allowed address pair of 0.0.0.0/0) is skipped: neutron
    narrows it by the member's MAC, which the member lists do not carry, and matching any source
    would open the rule to everyone in the zone. Failing closed is the safe side.

    Stateless ports' ids (odd) get one flow per priority level matching any ct_state. It may
    overlap the est/new flows of the same level: OVS allows the flows making up conjunctions to
    overlap, and a packet completes no stateless and stateful conjunction together (the port
    side matches one port, which is either kind).
    """
    by_priority: dict[int, list[int]] = defaultdict(list)
    for conj_id in sorted(set(conj_ids)):
        by_priority[CONJUNCTION_BASE_PRIORITY + conj_id % 8 // 2].append(conj_id)
    match = {
        "eth_type": ETH_TYPES[ethertype],
        REG_NET: zone,
        peer_field(ethertype, direction): address,
    }
    flows = []
    for priority, ids in by_priority.items():
        paired = [conj_id for conj_id in ids if not is_stateless_conj_id(conj_id)]
        single = [conj_id for conj_id in ids if is_stateless_conj_id(conj_id)]
        if paired:
            for step, state in enumerate(ACCEPT_STATES):
                flows.append(
                    _flow(
                        _rules_table(direction),
                        priority,
                        [Conjunction(conj_id + step, 1, 2) for conj_id in paired],
                        ct_state=state,
                        **match,
                    )
                )
        if single:
            flows.append(
                _flow(
                    _rules_table(direction),
                    priority,
                    [Conjunction(conj_id, 1, 2) for conj_id in single],
                    **match,
                )
            )
    return frozenset(flows)


def _zone_address_ids(
    usage: RemoteUsage, sgs: SecurityGroupState
) -> Iterator[tuple[OwnerKey, int, str, str, str, set[int]]]:
    for zone, kinds in usage.items():
        for (direction, ethertype), remotes in kinds.items():
            by_address: dict[str, set[int]] = defaultdict(set)
            for remote, remote_ids in remotes.items():
                for raw in sgs.member_addresses(remote, ethertype):
                    address = normal_address(raw)
                    if address is not None:
                        by_address[address].update(remote_ids)
            for address, ids in by_address.items():
                owner = member_owner(zone, direction, ethertype, address)
                yield owner, zone, direction, ethertype, address, ids


def _ids_for_owner(member: Member, usage: RemoteUsage, sgs: SecurityGroupState) -> set[int]:
    zone, direction, ethertype, address = member
    ids: set[int] = set()
    remotes = usage.get(zone, {}).get((direction, ethertype), {})
    for remote, remote_ids in remotes.items():
        members = sgs.member_addresses(remote, ethertype)
        if address in members or any(normal_address(m) == address for m in members):
            ids.update(remote_ids)
    return ids


def _member_owners_of(
    zone: int, kind: tuple[str, str], addresses: Iterable[str]
) -> Iterator[OwnerKey]:
    for raw in addresses:
        address = normal_address(raw)
        if address is not None:
            yield member_owner(zone, kind[0], kind[1], address)


class OVSFirewall:
    """neutron's ``openvswitch`` firewall driver (conntrack, conjunctions), pure."""

    name: ClassVar[str] = "openvswitch"

    def __init__(self) -> None:
        # memo of the last conjunction-id map: the agent passes the same (immutable) state for
        # every port of one change; recomputing it per port would cost O(ports * rules).
        self._memo: tuple[object, ConjunctionIds] | None = None
        # rule flow templates by (sorted group ids, stateful), for the groups (and so the
        # conjunction ids) of ``_compiled_for``
        self._compiled_for: object = None
        self._compiled: dict[tuple[tuple[str, ...], bool], CompiledRules] = {}

    def conjunction_ids(self, sgs: SecurityGroupState) -> ConjunctionIds:
        if self._memo is None or self._memo[0] is not sgs.groups:
            self._memo = (sgs.groups, ConjunctionIds.for_keys(conjunction_keys(sgs)))
        return self._memo[1]

    def base_flows(self) -> frozenset[Flow]:
        return firewall_base_flows()

    def port_flows(self, port: FilteredPort, sgs: SecurityGroupState) -> frozenset[Flow]:
        if is_trusted(port.details):
            return frozenset(trusted_port_flows(port))
        conj_ids = self.conjunction_ids(sgs)
        if self._compiled_for is not sgs.groups:
            self._compiled_for = sgs.groups
            self._compiled = {}
        compiled = self._compiled

        def rules(sg_ids: tuple[str, ...], stateful: bool) -> CompiledRules:
            found = compiled.get((sg_ids, stateful))
            if found is None:
                found = compiled[(sg_ids, stateful)] = compile_rules(
                    sg_ids, sgs, conj_ids, stateful
                )
            return found

        return filtered_port_flows(port, sgs, conj_ids, rules)

    def shared_flows(
        self,
        ports: Mapping[str, FilteredPort],
        sgs: SecurityGroupState,
        owners: Collection[OwnerKey] | None = None,
    ) -> Mapping[OwnerKey, frozenset[Flow]]:
        usage = remote_usage(ports, sgs, self.conjunction_ids(sgs))
        if owners is None:
            return {
                owner: member_flows(zone, direction, ethertype, address, ids)
                for owner, zone, direction, ethertype, address, ids in _zone_address_ids(usage, sgs)
            }
        result: dict[OwnerKey, frozenset[Flow]] = {}
        for owner in owners:
            member = member_of(owner)
            if member is None:
                raise ValueError(f"{owner!r} is not an openvswitch firewall shared owner")
            ids = _ids_for_owner(member, usage, sgs)
            result[owner] = member_flows(*member, ids) if ids else frozenset()
        return result

    def owners_for_change(
        self,
        ports_before: Mapping[str, FilteredPort],
        sgs_before: SecurityGroupState,
        ports_after: Mapping[str, FilteredPort],
        sgs_after: SecurityGroupState,
    ) -> frozenset[OwnerKey]:
        if sgs_before is sgs_after or sgs_before == sgs_after:
            changed = _changed_ports(ports_before, ports_after)
            if all(
                _usage_view(ports_before.get(iface)) == _usage_view(ports_after.get(iface))
                for iface in changed
            ):
                # the same groups and the same remote usage: only the changed ports' own
                # flows can differ (a VM reboot's new ofport), found without walking them all
                return frozenset(port_owner(iface) for iface in changed)
        dirty: set[OwnerKey] = set()
        ids_before = ConjunctionIds.for_keys(conjunction_keys(sgs_before))
        ids_after = self.conjunction_ids(sgs_after)
        changed_groups = {
            sg_id
            for sg_id in sgs_before.groups.keys() | sgs_after.groups.keys()
            if sgs_before.groups.get(sg_id) != sgs_after.groups.get(sg_id)
        }
        changed_groups.update(
            key[0]
            for key in ids_before.bases.keys() | ids_after.bases.keys()
            if ids_before.bases.get(key) != ids_after.bases.get(key)
        )
        for iface in ports_before.keys() | ports_after.keys():
            after = ports_after.get(iface)
            if ports_before.get(iface) != after or (
                after is not None and changed_groups & set(after.details.security_groups)
            ):
                dirty.add(port_owner(iface))
        usage_before = remote_usage(ports_before, sgs_before, ids_before)
        usage_after = remote_usage(ports_after, sgs_after, ids_after)
        for zone in usage_before.keys() | usage_after.keys():
            kinds_before = usage_before.get(zone, {})
            kinds_after = usage_after.get(zone, {})
            for kind in kinds_before.keys() | kinds_after.keys():
                remotes_before = kinds_before.get(kind, {})
                remotes_after = kinds_after.get(kind, {})
                ethertype = kind[1]
                for remote in remotes_before.keys() | remotes_after.keys():
                    old = sgs_before.member_addresses(remote, ethertype)
                    new = sgs_after.member_addresses(remote, ethertype)
                    if remotes_before.get(remote) != remotes_after.get(remote):
                        touched = old | new  # every member's conjunction ids changed
                    else:
                        touched = old ^ new  # only joins and leaves
                    dirty.update(_member_owners_of(zone, kind, touched))
        return frozenset(dirty)
