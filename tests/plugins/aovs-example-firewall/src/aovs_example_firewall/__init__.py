"""An example third-party firewall driver: quarantine.

Every VM port may only do ARP and DHCP (to get an address and be told it is quarantined); all
other traffic from or to it is dropped. It shows the whole contract a driver implements:
a class with a ``name``, pure ``base_flows`` / ``port_flows`` / ``shared_flows``, registered
as an ``aovs.firewall_drivers`` entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from aovs.firewall import FilteredPort, OwnerKey, SecurityGroupState
from aovs.openflow.flows import Flow, Match, Output, PopVlan, normal, vid

TRANSIENT_TABLE = 60
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IP = 0x0800


class QuarantineFirewall:
    name: ClassVar[str] = "quarantine"

    def base_flows(self) -> frozenset[Flow]:
        return frozenset()

    def port_flows(self, port: FilteredPort, sgs: SecurityGroupState) -> frozenset[Flow]:
        ofport, vlan = port.ofport, port.local_vlan
        mac = port.details.mac_address
        to_port = [PopVlan(), Output(ofport, 0)]
        return frozenset(
            {
                Flow(TRANSIENT_TABLE, 101, Match(in_port=ofport, eth_type=ETH_TYPE_ARP),
                     [normal()]),
                Flow(TRANSIENT_TABLE, 101, Match(in_port=ofport, eth_type=ETH_TYPE_IP,
                     ip_proto=17, udp_src=68, udp_dst=67), [normal()]),
                Flow(TRANSIENT_TABLE, 100, Match(in_port=ofport)),
                Flow(TRANSIENT_TABLE, 91, Match(vlan_vid=vid(vlan), eth_dst=mac,
                     eth_type=ETH_TYPE_ARP), to_port),
                Flow(TRANSIENT_TABLE, 91, Match(vlan_vid=vid(vlan), eth_dst=mac,
                     eth_type=ETH_TYPE_IP, ip_proto=17, udp_src=67, udp_dst=68), to_port),
                Flow(TRANSIENT_TABLE, 90, Match(vlan_vid=vid(vlan), eth_dst=mac)),
            }
        )  # fmt: skip

    def shared_flows(
        self, ports: Mapping[str, FilteredPort], sgs: SecurityGroupState
    ) -> Mapping[OwnerKey, frozenset[Flow]]:
        return {}
