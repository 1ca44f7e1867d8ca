"""br-tun, as neutron's native ``br_tun.py`` programs it (same tables, priorities and matches).

From br-int (``patch-int``, table 0 -> 2): broadcast ARP goes to the ARP responder (21) when it
is enabled, other multicast/broadcast to the flood table (22), unicast to table 20, which holds
l2population's (or learned) remote MACs and sends the rest to 22. Tables 20 and 22 pop the local
VLAN, set the network's tunnel id (VNI / GRE key) and output to tunnel ports.

From a tunnel port (table 0 -> 3 for gre, 4 for vxlan): the tunnel id becomes the local VLAN,
then table 10 learns the sender's MAC into table 20 (so replies go back down the tunnel they
came from) and outputs to ``patch-int``.

Every function is pure and returns the flows of ONE owner; the agent composes them
(:mod:`aovs.agent.tunnels`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aovs.model import NetworkSegment
from aovs.openflow.flows import (
    OFPP_IN_PORT,
    Action,
    Flow,
    GotoTable,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Match,
    Output,
    PopVlan,
    PushVlan,
    RegMove,
    SetField,
    vid,
)
from aovs.pipelines import tables

ETH_TYPE_ARP = 0x0806
ARP_REPLY = 2
BROADCAST = "ff:ff:ff:ff:ff:ff"
MULTICAST_BIT = "01:00:00:00:00:00"
UNICAST = ("00:00:00:00:00:00", MULTICAST_BIT)
MULTICAST = (MULTICAST_BIT, MULTICAST_BIT)
LEARNED_HARD_TIMEOUT = 300  # neutron: remote MACs learned from tunnels expire after 5 min
UNICAST_PRIORITY = 2  # l2population's entries beat learned ones (priority 1)
MAX_TUNNEL_ID = {"vxlan": (1 << 24) - 1, "gre": (1 << 32) - 1, "geneve": (1 << 24) - 1}


def tunnel_table(network_type: str) -> int:
    table = tables.TUN_TABLE.get(network_type)
    if table is None:
        raise ValueError(f"{network_type!r} is not a tunnel network type")
    return table


def base_flows(patch_int_ofport: int, arp_responder: bool) -> frozenset[Flow]:
    """What br-tun needs before any network: the table skeleton and the learning flow."""
    flows = {
        Flow(tables.LOCAL_SWITCHING, 1, Match(in_port=patch_int_ofport),
             (GotoTable(tables.PATCH_LV_TO_TUN),)),
        Flow(tables.LOCAL_SWITCHING, 0),
        Flow(tables.PATCH_LV_TO_TUN, 0, Match(eth_dst=UNICAST), (GotoTable(tables.UC_TO_TUN),)),
        Flow(tables.PATCH_LV_TO_TUN, 0, Match(eth_dst=MULTICAST),
             (GotoTable(tables.FLOOD_TO_TUN),)),
        *(Flow(table, 0) for table in sorted(set(tables.TUN_TABLE.values()))),
        Flow(tables.LEARN_FROM_TUN, 1, actions=(_learn_remote_mac(), Output(patch_int_ofport, 0))),
        Flow(tables.UC_TO_TUN, 0, actions=(GotoTable(tables.FLOOD_TO_TUN),)),
        Flow(tables.FLOOD_TO_TUN, 0),
    }  # fmt: skip
    if arp_responder:
        flows.add(
            Flow(tables.PATCH_LV_TO_TUN, 1, Match(eth_dst=BROADCAST, eth_type=ETH_TYPE_ARP),
                 (GotoTable(tables.ARP_RESPONDER),))
        )  # fmt: skip
        flows.add(Flow(tables.ARP_RESPONDER, 0, actions=(GotoTable(tables.FLOOD_TO_TUN),)))
    return frozenset(flows)


def _learn_remote_mac() -> Learn:
    """In table 20: this VLAN + dst = the sender's MAC -> strip the VLAN, set the tunnel id the
    packet came with, output to the tunnel port it came in on."""
    return Learn(
        table=tables.UC_TO_TUN,
        priority=1,
        hard_timeout=LEARNED_HARD_TIMEOUT,
        specs=(
            LearnMatch(dst="vlan_tci", n_bits=12, src="vlan_tci"),
            LearnMatch(dst="eth_dst", n_bits=48, src="eth_src"),
            LearnLoad(dst="vlan_tci", n_bits=16, value=0),
            LearnLoad(dst="tunnel_id", n_bits=64, src="tunnel_id"),
            LearnOutput(src="in_port", n_bits=32),
        ),
    )


def tunnel_port_flows(network_type: str, ofport: int) -> frozenset[Flow]:
    """Traffic from a tunnel port goes to its type's tunnel-id -> local VLAN table."""
    goto = GotoTable(tunnel_table(network_type))
    return frozenset({Flow(tables.LOCAL_SWITCHING, 1, Match(in_port=ofport), (goto,))})


def check_segment(segment: NetworkSegment) -> int:
    """The segment's tunnel id; ValueError (one line) when it cannot be one."""
    limit = MAX_TUNNEL_ID.get(segment.network_type)
    if limit is None:
        raise ValueError(f"{segment.network_type} network {segment.network_id} is not a tunnel")
    seg = segment.segmentation_id
    if seg is None or not 1 <= seg <= limit:
        raise ValueError(f"{segment.network_type} network with segmentation_id {seg!r}")
    return seg


def network_flows(segment: NetworkSegment, local_vlan: int) -> frozenset[Flow]:
    """Inbound: this network's tunnel id -> its local VLAN, then learn (table 10)."""
    tunnel_id = check_segment(segment)
    actions = (PushVlan(), SetField("vlan_vid", vid(local_vlan)), GotoTable(tables.LEARN_FROM_TUN))
    table = tunnel_table(segment.network_type)
    return frozenset({Flow(table, 1, Match(tunnel_id=tunnel_id), actions)})


def flood_flows(local_vlan: int, tunnel_id: int, ofports: Iterable[int]) -> frozenset[Flow]:
    """Outbound broadcast/unknown unicast of a network: to every tunnel port in ``ofports``
    (sorted: the switch reports actions in order, and desired must equal installed)."""
    ports = sorted(set(ofports))
    if not ports:
        return frozenset()
    actions: tuple[Action, ...] = (
        PopVlan(),
        SetField("tunnel_id", tunnel_id),
        *(Output(p, 0) for p in ports),
    )
    return frozenset({Flow(tables.FLOOD_TO_TUN, 1, Match(vlan_vid=vid(local_vlan)), actions)})


def unicast_flow(local_vlan: int, tunnel_id: int, ofport: int, mac: str) -> Flow:
    """l2population: a remote port's MAC is behind this tunnel port."""
    return Flow(
        tables.UC_TO_TUN,
        UNICAST_PRIORITY,
        Match(vlan_vid=vid(local_vlan), eth_dst=mac),
        (PopVlan(), SetField("tunnel_id", tunnel_id), Output(ofport, 0)),
    )


def arp_responder_flow(local_vlan: int, ip: str, mac: str) -> Flow | None:
    """Answer an ARP request for a remote port's IPv4 address locally: turn the request into
    the reply in place and send it back where it came from. None for an IPv6 address."""
    address = ipaddress.ip_address(ip)
    if address.version != 4:
        return None
    mac = mac.lower()
    return Flow(
        tables.ARP_RESPONDER,
        1,
        Match(vlan_vid=vid(local_vlan), eth_type=ETH_TYPE_ARP, arp_tpa=str(address)),
        (
            SetField("arp_op", ARP_REPLY),
            RegMove("arp_sha", "arp_tha", 48),
            RegMove("arp_spa", "arp_tpa", 32),
            SetField("arp_sha", mac),
            SetField("arp_spa", str(address)),
            RegMove("eth_src", "eth_dst", 48),
            SetField("eth_src", mac),
            Output(OFPP_IN_PORT, 0),
        ),
    )
