"""Realistic neutron-like flow sets (br-int with the openvswitch firewall), for benchmarks/tests.

``port_flows(index)`` is what one VM port costs on br-int: 30 flows over neutron's tables
0/24/25/60/71/72/73/81/82/94, with registers, conntrack, conjunctions and NORMAL-free outputs.
``neutron_like_flows(ports)`` is ``ports`` of them. ``variant`` changes a port's security-group
rules (one match changes, one action changes), as a rule update would.
"""

from __future__ import annotations

import ipaddress

from aovs.openflow.flows import (
    CT,
    Action,
    Conjunction,
    Flow,
    GotoTable,
    Match,
    Output,
    RegLoad,
    Resubmit,
    SetField,
    ct_state,
    vid,
)
from aovs.pipelines import tables as t

IP = 0x0800
IPV6 = 0x86DD
ARP = 0x0806
TCP, UDP, ICMPV6 = 6, 17, 58
FIRST_OFPORT = 10


def port_flows(index: int, variant: int = 0) -> list[Flow]:
    """The 30 flows of VM port ``index`` (ofport ``FIRST_OFPORT + index``)."""
    ofport = FIRST_OFPORT + index
    vlan = 1 + index % 4000
    mac = f"fa:16:3e:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
    ip = str(ipaddress.IPv4Address(0x0A000000 + index + 2))
    ip6 = str(ipaddress.IPv6Address((0xFD00 << 112) + index + 2))
    lla = str(ipaddress.IPv6Address((0xFE80 << 112) + index + 2))
    remote = str(ipaddress.IPv4Address(0xC0A80000 + (index * 7) % 65000))
    conj = 1000 + 4 * index
    port = Match(reg5=ofport)
    to_vm = Output(ofport, 0)
    zone = CT(zone_src="reg6", table=t.RULES_EGRESS_TABLE)
    zone_in = CT(zone_src="reg6", table=t.RULES_INGRESS_TABLE)
    commit = CT(commit=True, zone_src="reg6", actions=(SetField("ct_mark", 0),))
    tcp_allowed = 22 + variant

    def f(table: int, prio: int, actions: list[Action], **match: object) -> Flow:
        return Flow(table, prio, Match(**match), actions)

    def r(table: int, prio: int, actions: list[Action], **match: object) -> Flow:
        return Flow(table, prio, Match(**dict(port.fields), **match), actions)

    return [
        # table 0: classify by in_port, tag with the local VLAN register
        f(t.LOCAL_SWITCHING, 10, [GotoTable(t.ARP_SPOOF_TABLE)], in_port=ofport, eth_type=ARP),
        f(t.LOCAL_SWITCHING, 10, [GotoTable(t.ARP_SPOOF_TABLE)], in_port=ofport,
          eth_type=IPV6, ip_proto=ICMPV6, icmpv6_type=136),
        f(t.LOCAL_SWITCHING, 9, [GotoTable(t.MAC_SPOOF_TABLE)], in_port=ofport),
        # table 24/25: anti-spoofing
        f(t.ARP_SPOOF_TABLE, 2, [GotoTable(t.MAC_SPOOF_TABLE)], in_port=ofport, eth_type=ARP,
          arp_spa=ip),
        f(t.ARP_SPOOF_TABLE, 2, [GotoTable(t.MAC_SPOOF_TABLE)], in_port=ofport, eth_type=IPV6,
          ip_proto=ICMPV6, icmpv6_type=136, ipv6_nd_target=lla),
        f(t.MAC_SPOOF_TABLE, 2, [GotoTable(t.TRANSIENT_TABLE)], in_port=ofport, eth_src=mac),
        # table 60: registers for the firewall
        f(t.TRANSIENT_TABLE, 100, [SetField("reg5", ofport), SetField("reg6", vlan),
          GotoTable(t.BASE_EGRESS_TABLE)], in_port=ofport),
        f(t.TRANSIENT_TABLE, 90, [SetField("reg5", ofport), SetField("reg6", vlan),
          GotoTable(t.BASE_INGRESS_TABLE)], vlan_vid=vid(vlan), eth_dst=mac),
        # table 71: egress base
        r(t.BASE_EGRESS_TABLE, 95, [Resubmit(t.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)],
          eth_type=ARP, eth_src=mac, arp_spa=ip),
        r(t.BASE_EGRESS_TABLE, 65, [zone], eth_type=IP, eth_src=mac, ipv4_src=ip,
          ct_state=ct_state("-trk")),
        r(t.BASE_EGRESS_TABLE, 65, [zone], eth_type=IPV6, eth_src=mac, ipv6_src=ip6,
          ct_state=ct_state("-trk")),
        r(t.BASE_EGRESS_TABLE, 80, [Resubmit(t.ACCEPT_OR_INGRESS_TABLE)], eth_type=IP,
          ip_proto=UDP, udp_src=68, udp_dst=67),
        r(t.BASE_EGRESS_TABLE, 80, [Resubmit(t.ACCEPT_OR_INGRESS_TABLE)], eth_type=IPV6,
          ip_proto=UDP, udp_src=546, udp_dst=547),
        r(t.BASE_EGRESS_TABLE, 70, [], eth_type=IP, ip_proto=UDP, udp_src=67, udp_dst=68),
        r(t.BASE_EGRESS_TABLE, 10, []),
        # table 72: egress rules
        r(t.RULES_EGRESS_TABLE, 77, [Resubmit(t.ACCEPT_OR_INGRESS_TABLE)], eth_type=IP,
          ct_state=ct_state("+est-rel-rpl")),
        r(t.RULES_EGRESS_TABLE, 70, [commit, Resubmit(t.ACCEPT_OR_INGRESS_TABLE)],
          eth_type=IP, ip_proto=TCP, tcp_dst=tcp_allowed, ct_state=ct_state("+new-est")),
        r(t.RULES_EGRESS_TABLE, 71, [Conjunction(conj, 1, 2)], eth_type=IP,
          ipv4_dst=(remote, "255.255.255.0"), ct_state=ct_state("+new-est")),
        r(t.RULES_EGRESS_TABLE, 71, [Conjunction(conj, 2, 2)], eth_type=IP, ip_proto=TCP,
          tcp_dst=(0x1000, 0xF000), ct_state=ct_state("+new-est")),
        f(t.RULES_EGRESS_TABLE, 71, [RegLoad("reg7", conj, 0, 32), commit,
          Resubmit(t.ACCEPT_OR_INGRESS_TABLE)], conj_id=conj, eth_type=IP),
        r(t.RULES_EGRESS_TABLE, 50, [], ct_mark=1, ct_state=ct_state("+est")),
        # table 73: accept or ingress
        r(t.ACCEPT_OR_INGRESS_TABLE, 100, [Resubmit(t.BASE_INGRESS_TABLE)], eth_dst=mac,
          vlan_vid=vid(vlan)),
        r(t.ACCEPT_OR_INGRESS_TABLE, 90, [Resubmit(t.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)]),
        # table 81: ingress base
        r(t.BASE_INGRESS_TABLE, 90, [zone_in], eth_type=IP, ct_state=ct_state("-trk")),
        r(t.BASE_INGRESS_TABLE, 90, [zone_in], eth_type=IPV6, ct_state=ct_state("-trk")),
        r(t.BASE_INGRESS_TABLE, 100, [to_vm], eth_type=ARP),
        # table 82: ingress rules
        r(t.RULES_INGRESS_TABLE, 77, [to_vm], eth_type=IP, ct_state=ct_state("+est-rel-rpl")),
        r(t.RULES_INGRESS_TABLE, 71, [Conjunction(conj + 2, 1, 2)], eth_type=IP,
          ipv4_src=(remote, "255.255.0.0"), ct_state=ct_state("+new-est")),
        f(t.RULES_INGRESS_TABLE, 71, [CT(commit=True, zone_src="reg6",
          actions=(SetField("ct_mark", variant % 2),)), to_vm], conj_id=conj + 2, eth_type=IP),
        # table 94: accepted egress, to a local port
        f(t.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE, 12, [to_vm], reg6=vlan, eth_dst=mac),
    ]  # fmt: skip


def neutron_like_flows(ports: int, flows_per_port: int = 30) -> list[Flow]:
    """``ports`` ports' flows (``flows_per_port`` <= 30 of each)."""
    flows: list[Flow] = []
    for index in range(ports):
        flows.extend(port_flows(index)[:flows_per_port])
    return flows
