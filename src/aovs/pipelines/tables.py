"""neutron-lib's ovs_constants table numbers, so operators' dump-flows habits keep working."""

from __future__ import annotations

# -- br-int ---------------------------------------------------------------------------------
LOCAL_SWITCHING = 0
TRANSIENT_EGRESS_TABLE = 1  # unused by aovs, kept for parity
DEAD_VLAN_TAG = 4095
CANARY_TABLE = 23
ARP_SPOOF_TABLE = 24
MAC_SPOOF_TABLE = 25
LOCAL_EGRESS_TABLE = 30
LOCAL_IP_TABLE = 31
PACKET_RATE_LIMIT = 58
BANDWIDTH_RATE_LIMIT = 59
TRANSIENT_TABLE = 60
BASE_EGRESS_TABLE = 71
RULES_EGRESS_TABLE = 72
ACCEPT_OR_INGRESS_TABLE = 73
BASE_INGRESS_TABLE = 81
RULES_INGRESS_TABLE = 82
ACCEPTED_EGRESS_TRAFFIC_TABLE = 91
ACCEPTED_INGRESS_TRAFFIC_TABLE = 92
DROPPED_TRAFFIC_TABLE = 93
ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE = 94
# aovs' explicit switching (instead of NORMAL, which follows Port.tag; see br_int.py); numbers
# neutron does not use
LOCAL_VLAN_TABLE = 110  # which local VLAN a packet is on: tag untagged VM traffic, pass patches
L2_FORWARD_TABLE = 111  # by (local VLAN, destination MAC): a local port, flood, or the uplink
L2_FLOOD_TABLE = 112  # a local VLAN's ports to flood to, in chunks (an OpenFlow message <= 64 KiB)

# -- br-tun ---------------------------------------------------------------------------------
PATCH_LV_TO_TUN = 2
GRE_TUN_TO_LV = 3
VXLAN_TUN_TO_LV = 4
GENEVE_TUN_TO_LV = 6
DVR_NOT_LEARN = 9
LEARN_FROM_TUN = 10
UC_TO_TUN = 20
ARP_RESPONDER = 21
FLOOD_TO_TUN = 22
TUN_TABLE = {"gre": GRE_TUN_TO_LV, "vxlan": VXLAN_TUN_TO_LV, "geneve": GENEVE_TUN_TO_LV}

# -- physical bridges -------------------------------------------------------------------------
PHY_LOCAL_SWITCHING = 0

# -- registers the openvswitch firewall uses --------------------------------------------------
REG_PORT = "reg5"  # the ofport a packet came from / goes to
REG_NET = "reg6"  # the conntrack zone (= the network's local VLAN)
REG_REMOTE_GROUP = "reg7"
REG_FLOOD_CHUNK = "reg3"  # which chunk of a flood list table 112 outputs next (br_int.py)
