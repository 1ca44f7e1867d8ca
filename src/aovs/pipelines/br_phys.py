"""A physical bridge (``bridge_mappings``), as neutron's native ``br_phys.py`` programs it.

Traffic from br-int arrives on the ``phy-<bridge>`` patch port tagged with a local VLAN; table 0
rewrites it to the segmentation VLAN (vlan) or strips it (flat) and switches it NORMALly to the
uplink. Anything else from the patch port is dropped; everything else is NORMAL.
"""

from __future__ import annotations

from aovs.model import NetworkSegment
from aovs.openflow.flows import Flow, Match, PopVlan, SetField, normal, vid
from aovs.pipelines import tables

LOCAL_TO_SEGMENT_PRIORITY = 4  # neutron: provision_local_vlan
DROP_PORT_PRIORITY = 2


def base_flows(phy_patch_ofport: int) -> frozenset[Flow]:
    return frozenset(
        {
            Flow(tables.PHY_LOCAL_SWITCHING, 0, actions=(normal(),)),
            Flow(tables.PHY_LOCAL_SWITCHING, DROP_PORT_PRIORITY, Match(in_port=phy_patch_ofport)),
        }
    )


def network_flows(
    phy_patch_ofport: int, segment: NetworkSegment, local_vlan: int
) -> frozenset[Flow]:
    match = Match(in_port=phy_patch_ofport, vlan_vid=vid(local_vlan))
    if segment.network_type == "vlan":
        if segment.segmentation_id is None:
            raise ValueError(f"vlan network {segment.network_id} without segmentation_id")
        rewrite: SetField | PopVlan = SetField("vlan_vid", vid(segment.segmentation_id))
    elif segment.network_type == "flat":
        rewrite = PopVlan()
    else:
        raise ValueError(f"{segment.network_type} network {segment.network_id} is not physical")
    return frozenset(
        {
            Flow(
                tables.PHY_LOCAL_SWITCHING,
                LOCAL_TO_SEGMENT_PRIORITY,
                match,
                actions=(rewrite, normal()),
            )
        }
    )
