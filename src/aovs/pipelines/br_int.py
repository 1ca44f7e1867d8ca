"""br-int, as neutron's native ``br_int.py`` programs it (same tables, priorities and matches).

Table 0 (LOCAL_SWITCHING) drops the dead VLAN, translates a physical network's segmentation VLAN
(or untagged traffic, for flat) arriving from its ``int-<bridge>`` patch port to the network's
local VLAN, drops anything else from that patch port, and sends the rest on to table 60, where
NORMAL switches within the port's local VLAN (``Port.tag``). Table 23 holds the canary.
"""

from __future__ import annotations

from aovs.model import NetworkSegment
from aovs.openflow.flows import Flow, GotoTable, Match, PushVlan, SetField, normal, vid
from aovs.pipelines import tables

OPENFLOW_MAX_PRIORITY = 0xFFFF
OFPVID_NONE = 0  # vlan_vid of an untagged packet
PATCH_TRANSLATE_PRIORITY = 3  # neutron: provision_local_vlan
DROP_PORT_PRIORITY = 2  # neutron: drop_port (untranslated patch traffic, dead ports)


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
            Flow(tables.TRANSIENT_TABLE, 3, actions=(normal(),)),
            Flow(tables.ARP_SPOOF_TABLE, 0),
        }
    )


def canary_flow() -> Flow:
    """The one flow whose absence means ovs-vswitchd lost its tables."""
    return Flow(tables.CANARY_TABLE, 0)


def patch_port_flows(int_patch_ofport: int) -> frozenset[Flow]:
    """Block all untranslated traffic coming from a physical bridge."""
    return frozenset({_drop_in_port(int_patch_ofport)})


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
