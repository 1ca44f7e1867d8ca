"""br-int: neutron's tables 0-94, then aovs' explicit switching instead of NORMAL.

Table 0 (LOCAL_SWITCHING) drops the dead VLAN, translates a physical network's segmentation VLAN
(or untagged traffic, for flat) arriving from its ``int-<bridge>`` patch port to the network's
local VLAN, drops anything else from that patch port, and sends the rest on to table 60 (and
the firewall), as neutron's ``br_int.py`` does. Table 23 holds the canary.

Where neutron ends in NORMAL (table 60's default, table 94), aovs switches in OpenFlow:

    110 LOCAL_VLAN   in_port=P (a wired VM port), untagged -> push its local VLAN -> 111
                     in_port=<patch port> -> 111 (already tagged with a local VLAN)
                     anything else (a port not wired yet, a VM sending tagged frames): drop
    111 L2_FORWARD   dl_vlan=V,dl_dst=<P's MAC> -> strip, output:P
                     dl_vlan=V, multicast -> output:<uplink> (tagged), strip, flood V's ports
                     dl_vlan=V (unknown unicast) -> output:<uplink>, strip, the ports of V that
                     may own MACs nobody told us (trusted ports, address-pair MACs)
    112 L2_FLOOD     reg6=V,reg3=chunk -> output: up to FLOOD_CHUNK ports, next chunk

NORMAL switches by Port.tag, and every Port.tag write makes ovs-vswitchd reconfigure all of its
ports (~170 ms of its CPU at 1000 ports, measured); these tables depend on nothing but the
flows, so a port forwards the moment its bundle commits, whatever its tag (os-vif leaves 4095
or nothing), and the tag is written later, batched (aovs.agent.port_metadata). The uplink of a
network is ``int-<bridge>`` (vlan, flat) or ``patch-tun`` (tunnels); the physical and tunnel
bridges still switch NORMALly, as neutron's do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aovs.model import NetworkSegment
from aovs.openflow.flows import (
    Action,
    Flow,
    GotoTable,
    Match,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    SetField,
    vid,
)
from aovs.pipelines import tables

OPENFLOW_MAX_PRIORITY = 0xFFFF
OFPVID_NONE = 0  # vlan_vid of an untagged packet
PATCH_TRANSLATE_PRIORITY = 3  # neutron: provision_local_vlan
DROP_PORT_PRIORITY = 2  # neutron: drop_port (untranslated patch traffic, dead ports)
TAG_PRIORITY = 10  # table 110: a wired port's or a patch port's traffic
KNOWN_MAC_PRIORITY = 20  # table 111
FLOOD_PRIORITY = 15  # table 111: broadcast and multicast
UNKNOWN_PRIORITY = 10  # table 111: unicast to a MAC no local port is known to own
FLOOD_CHUNK = 500  # outputs per table-112 flow: 8 KB of actions, far below OpenFlow's 64 KiB
UNKNOWN_CHAIN = 0x10000  # reg3 of the unknown-unicast list's first chunk (broadcast: 0)
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")


@dataclass(frozen=True, slots=True)
class LocalPort:
    """A wired port as the switching tables see it."""

    ofport: int
    mac: str
    receives_unknown: bool  # may own MACs we were not told (trusted, address-pair MACs)


def base_flows() -> frozenset[Flow]:
    """What br-int needs before any port: canary, dead-VLAN drop, default path, NORMAL."""
    return frozenset(
        {
            Flow(tables.CANARY_TABLE, 0),
            Flow(
                tables.LOCAL_SWITCHING,
                OPENFLOW_MAX_PRIORITY,
                Match(vlan_vid=vid(tables.DEAD_VLAN_TAG)),
            ),
            Flow(tables.LOCAL_SWITCHING, 0, actions=(GotoTable(tables.TRANSIENT_TABLE),)),
            # neutron 29's chain 0 -> 58 -> 59 -> 60 (rate limits), empty: aovs goes from 0 to
            # 60 itself, but neutron's agent taking the host back points table 0 at 58 before
            # it fills 58 and 59; with these, no frame is lost in between
            Flow(tables.PACKET_RATE_LIMIT, 0, actions=(GotoTable(tables.BANDWIDTH_RATE_LIMIT),)),
            Flow(tables.BANDWIDTH_RATE_LIMIT, 0, actions=(GotoTable(tables.TRANSIENT_TABLE),)),
            Flow(tables.TRANSIENT_TABLE, 3, actions=(GotoTable(tables.LOCAL_VLAN_TABLE),)),
            Flow(tables.ARP_SPOOF_TABLE, 0),
            Flow(tables.LOCAL_VLAN_TABLE, 0),
            Flow(tables.L2_FORWARD_TABLE, 0),
            Flow(tables.L2_FLOOD_TABLE, 0),
        }
    )


def canary_flow() -> Flow:
    """The one flow whose absence means ovs-vswitchd lost its tables."""
    return Flow(tables.CANARY_TABLE, 0)


def patch_port_flows(int_patch_ofport: int) -> frozenset[Flow]:
    """Block all untranslated traffic coming from a physical bridge; switch the rest."""
    return frozenset({_drop_in_port(int_patch_ofport), uplink_flow(int_patch_ofport)})


def uplink_flow(patch_ofport: int) -> Flow:
    """What a patch port brings in is tagged with a local VLAN already (table 0 translated a
    physical bridge's; br-tun pushes its own): straight on to the forwarding table."""
    return Flow(
        tables.LOCAL_VLAN_TABLE,
        TAG_PRIORITY,
        Match(in_port=patch_ofport),
        actions=(GotoTable(tables.L2_FORWARD_TABLE),),
    )


def local_port_flows(port: LocalPort, local_vlan: int) -> frozenset[Flow]:
    """A wired port joins its local VLAN (untagged frames only: a VM's tagged frame is dropped,
    as NORMAL drops it on an access port) and receives what is sent to its MAC on it."""
    return frozenset(
        {
            Flow(
                tables.LOCAL_VLAN_TABLE,
                TAG_PRIORITY,
                Match(in_port=port.ofport, vlan_vid=OFPVID_NONE),
                actions=(
                    PushVlan(),
                    SetField("vlan_vid", vid(local_vlan)),
                    GotoTable(tables.L2_FORWARD_TABLE),
                ),
            ),
            Flow(
                tables.L2_FORWARD_TABLE,
                KNOWN_MAC_PRIORITY,
                Match(vlan_vid=vid(local_vlan), eth_dst=port.mac),
                actions=(PopVlan(), Output(port.ofport, 0)),
            ),
        }
    )


def local_vlan_flows(
    local_vlan: int, uplink_ofport: int | None, ports: Iterable[LocalPort]
) -> frozenset[Flow]:
    """A local VLAN's broadcast/multicast and unknown-unicast forwarding (table 111) and its
    flood lists (table 112), for its wired ports (in a stable order, so one port's change
    rewrites one chunk) and its uplink (None: a local network)."""
    members = sorted(ports, key=lambda port: (port.mac, port.ofport))
    everyone = [port.ofport for port in members]
    unknown = [port.ofport for port in members if port.receives_unknown]
    tagged = vid(local_vlan)
    uplink: tuple[Action, ...] = () if uplink_ofport is None else (Output(uplink_ofport, 0),)
    flows = {
        Flow(
            tables.L2_FORWARD_TABLE,
            FLOOD_PRIORITY,
            Match(vlan_vid=tagged, eth_dst=MULTICAST),
            actions=(*uplink, *_flood_entry(local_vlan, everyone, 0)),
        ),
        Flow(
            tables.L2_FORWARD_TABLE,
            UNKNOWN_PRIORITY,
            Match(vlan_vid=tagged),
            actions=(*uplink, *_flood_entry(local_vlan, unknown, UNKNOWN_CHAIN)),
        ),
    }
    flows.update(_flood_chunks(local_vlan, everyone, 0))
    flows.update(_flood_chunks(local_vlan, unknown, UNKNOWN_CHAIN))
    return frozenset(flows)


def _flood_entry(local_vlan: int, ofports: Sequence[int], chain: int) -> tuple[Action, ...]:
    if not ofports:
        return ()
    return (
        PopVlan(),
        SetField(tables.REG_NET, local_vlan),
        SetField(tables.REG_FLOOD_CHUNK, chain),
        Resubmit(tables.L2_FLOOD_TABLE),
    )


def _flood_chunks(local_vlan: int, ofports: Sequence[int], chain: int) -> list[Flow]:
    chunks = []
    for index, start in enumerate(range(0, len(ofports), FLOOD_CHUNK)):
        members = tuple(ofports[start : start + FLOOD_CHUNK])
        more = start + FLOOD_CHUNK < len(ofports)
        chunks.append(_flood_chunk(local_vlan, chain + index, members, more))
    return chunks


@functools.lru_cache(maxsize=8192)
def _flood_chunk(local_vlan: int, chunk: int, ofports: tuple[int, ...], more: bool) -> Flow:
    """One chunk's flow; cached, so a VM reboot among thousands of ports builds one chunk (the
    one its new ofport is in), not the whole VLAN's lists again."""
    actions: list[Action] = [Output(ofport, 0) for ofport in ofports]
    if more:
        actions += [SetField(tables.REG_FLOOD_CHUNK, chunk + 1), Resubmit(tables.L2_FLOOD_TABLE)]
    match = Match(**{tables.REG_NET: local_vlan, tables.REG_FLOOD_CHUNK: chunk})
    return Flow(tables.L2_FLOOD_TABLE, 1, match, actions=tuple(actions))


def network_flows(
    int_patch_ofport: int, segment: NetworkSegment, local_vlan: int
) -> frozenset[Flow]:
    """From the physical bridge: segmentation VLAN (vlan) or no VLAN (flat) -> local VLAN."""
    set_local = SetField("vlan_vid", vid(local_vlan))
    goto = GotoTable(tables.TRANSIENT_TABLE)
    if segment.network_type == "vlan":
        if segment.segmentation_id is None:
            raise ValueError(f"vlan network {segment.network_id} without segmentation_id")
        match = Match(in_port=int_patch_ofport, vlan_vid=vid(segment.segmentation_id))
        actions: tuple[SetField | PushVlan | GotoTable, ...] = (set_local, goto)
    elif segment.network_type == "flat":
        match = Match(in_port=int_patch_ofport, vlan_vid=OFPVID_NONE)
        actions = (PushVlan(), set_local, goto)
    else:
        raise ValueError(f"{segment.network_type} network {segment.network_id} is not physical")
    return frozenset(
        {Flow(tables.LOCAL_SWITCHING, PATCH_TRANSLATE_PRIORITY, match, actions=actions)}
    )


def dead_port_flows(ofport: int) -> frozenset[Flow]:
    """A port that must not forward (admin down, unknown to neutron, not wired yet)."""
    return frozenset({_drop_in_port(ofport)})


def _drop_in_port(ofport: int) -> Flow:
    return Flow(tables.LOCAL_SWITCHING, DROP_PORT_PRIORITY, Match(in_port=ofport))
