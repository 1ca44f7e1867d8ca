"""One security-group rule -> the OpenFlow match fields it stands for (neutron's rules.py).

A rule becomes one match per masked port block (tcp/udp/sctp), or one match with the ICMP
type/code, or one match on the protocol alone. The priority offset orders rules by how specific
they are (any protocol < ICMP any type < ICMP type < ports / type+code), four levels for
conjunction (remote group) rules and four more above them for plain ones.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aovs.firewall.port_ranges import port_rule_masking
from aovs.model import SecurityGroupRule

ETH_TYPE_IP = 0x0800
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_ARP = 0x0806
ETH_TYPE_RARP = 0x8035
ETH_TYPES = {"IPv4": ETH_TYPE_IP, "IPv6": ETH_TYPE_IPV6}

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
PORT_FIELDS = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_SCTP: "sctp"}
ICMP_PROTOCOLS = {PROTO_ICMP: "icmpv4", PROTO_ICMPV6: "icmpv6"}

# neutron-lib's IP_PROTOCOL_MAP (names neutron-server accepts)
IP_PROTOCOLS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "icmpv6": 58, "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46,
    "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}  # fmt: skip
ANY_PROTOCOL_NAMES = frozenset({"any", ""})
ANY_PREFIXES = frozenset({"0.0.0.0/0", "::/0"})

CONJUNCTION_BASE_PRIORITY = 70  # 70..73: remote-group (conjunction) rules
PLAIN_RULE_OFFSET = 4  # 74..77: rules matching a prefix or any peer


class UnsupportedRule(ValueError):
    """A rule aovs cannot express; it is skipped (fail closed) and logged with its content."""


def protocol_number(rule: SecurityGroupRule) -> int | None:
    """The IP protocol number of a rule, None for any (IPv6 "icmp" means ICMPv6, as neutron)."""
    name = (rule.protocol or "").strip().lower()
    if name in ANY_PROTOCOL_NAMES:
        return None
    if name.isdigit():
        number = int(name)
        if not 0 <= number <= 255:
            raise UnsupportedRule(f"protocol number {number} out of 0..255")
    elif name in IP_PROTOCOLS:
        number = IP_PROTOCOLS[name]
    else:
        raise UnsupportedRule(f"unknown protocol {rule.protocol!r}")
    if rule.ethertype == "IPv6" and number == PROTO_ICMP:
        return PROTO_ICMPV6
    return number


def priority_offset(rule: SecurityGroupRule, protocol: int | None, conjunction: bool) -> int:
    """neutron's flow_priority_offset: more specific rules win over less specific ones."""
    base = 0 if conjunction else PLAIN_RULE_OFFSET
    if protocol is None:
        return base
    if protocol in ICMP_PROTOCOLS:
        if rule.port_range_min is None:
            return base + 1
        if rule.port_range_max is None:
            return base + 2
    return base + 3


def peer_field(ethertype: str, direction: str) -> str:
    """The field holding the peer's address: the source of ingress, the destination of egress."""
    family = "ipv4" if ethertype == "IPv4" else "ipv6"
    return f"{family}_src" if direction == "ingress" else f"{family}_dst"


def check_prefix(rule: SecurityGroupRule) -> str | None:
    """The rule's peer prefix as a match value, None for any peer."""
    prefix = rule.remote_ip_prefix
    if prefix is None or prefix in ANY_PREFIXES:
        return None
    version = ipaddress.ip_network(prefix).version
    if (version == 4) != (rule.ethertype == "IPv4"):
        raise UnsupportedRule(f"{rule.ethertype} rule with prefix {prefix}")
    return prefix


def protocol_matches(
    rule: SecurityGroupRule,
    protocol: int | None,
    port_range: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """The protocol part of the rule's matches. ``port_range`` overrides the rule's own (the
    conjunction builder passes merged segments); None with a port protocol means the rule's."""
    if protocol is None:
        return [{}]
    base: dict[str, Any] = {"ip_proto": protocol}
    if protocol in ICMP_PROTOCOLS:
        prefix = ICMP_PROTOCOLS[protocol]
        if rule.port_range_min is None:
            return [base]
        base[f"{prefix}_type"] = rule.port_range_min
        if rule.port_range_max is not None:
            base[f"{prefix}_code"] = rule.port_range_max
        return [base]
    if protocol not in PORT_FIELDS:
        return [base]
    if port_range is None:
        low, high = rule.port_range_min, rule.port_range_max
        if low is None and high is None:
            return [base]
        port_range = (low if low is not None else high or 0, high if high is not None else low or 0)
    low, high = port_range
    if low > high:
        raise UnsupportedRule(f"port range {low}-{high} is empty")
    if (low, high) in ((0, 65535), (1, 65535)):
        return [base]
    field = f"{PORT_FIELDS[protocol]}_dst"
    return [{**base, field: masked} for masked in port_rule_masking(low, high)]
