"""The ``noop`` firewall driver: no security groups, but neutron's ARP/ND/MAC anti-spoofing.

neutron's agent installs these flows itself when the firewall does not provide ARP spoofing
protection (noop, iptables); here they are the noop driver's port flows, so they reach the
switch in the same bundle as the port's other flows:

    table 0   in_port=P,arp -> 24          in_port=P,icmpv6,nd_na -> 24      in_port=P -> 25
    table 24  in_port=P,arp,arp_spa=IP -> 25      in_port=P,nd_na,nd_target=IP -> 60
              (otherwise dropped)
    table 25  in_port=P,dl_src=MAC -> 60   (otherwise dropped)

IP addresses are the fixed IPs and allowed-address-pair CIDRs (plus the link-locals of the
port's MACs for ND); MACs are the port's and the pairs'. neutron sends the accepted packets to
table 30/59 (local IP, packet rate limit), which lead to 60 when those features are off; aovs
goes straight to 60 (TRANSIENT), where br-int's NORMAL is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator, Mapping
from typing import ClassVar

from aovs.firewall.base import FilteredPort, OwnerKey, SecurityGroupState, port_owner
from aovs.firewall.port_addresses import PortAddresses, is_trusted, link_local_address
from aovs.firewall.rule_matches import ETH_TYPE_ARP, ETH_TYPE_IPV6, PROTO_ICMPV6
from aovs.openflow.flows import Flow, GotoTable, Match
from aovs.pipelines.tables import ARP_SPOOF_TABLE, LOCAL_SWITCHING, MAC_SPOOF_TABLE, TRANSIENT_TABLE

ICMPV6_TYPE_NA = 136
ACCEPTED_TABLE = TRANSIENT_TABLE


def _has_any_prefix(addresses: set[str]) -> bool:
    """A /0 allows every address anyway, and arp_spa / nd_target cannot match a /0."""
    return any(ipaddress.ip_network(a, strict=False).prefixlen == 0 for a in addresses)


def spoofing_flows(port: FilteredPort) -> Iterator[Flow]:
    """neutron's install_arp_spoofing_protection, install_icmpv6_na_spoofing_protection and
    set_allowed_macs_for_port for one port."""
    details = port.details
    addresses = PortAddresses.of(details)
    ips = {f.ip_address for f in details.fixed_ips}
    ips.update(pair.ip_address for pair in details.allowed_address_pairs)
    v4 = {ip for ip in ips if ipaddress.ip_network(ip, strict=False).version == 4}
    v6 = {ip for ip in ips if ipaddress.ip_network(ip, strict=False).version == 6}
    v6.update(link_local_address(mac) for mac in addresses.macs)
    ofport = port.ofport

    for mac in addresses.macs:
        yield Flow(MAC_SPOOF_TABLE, 2, Match(in_port=ofport, eth_src=mac),
                   [GotoTable(ACCEPTED_TABLE)])  # fmt: skip
    yield Flow(LOCAL_SWITCHING, 9, Match(in_port=ofport), [GotoTable(MAC_SPOOF_TABLE)])

    if not _has_any_prefix(v6):
        na = {"eth_type": ETH_TYPE_IPV6, "ip_proto": PROTO_ICMPV6, "icmpv6_type": ICMPV6_TYPE_NA}
        for ip in sorted(v6):
            yield Flow(ARP_SPOOF_TABLE, 2, Match(in_port=ofport, ipv6_nd_target=ip, **na),
                       [GotoTable(ACCEPTED_TABLE)])  # fmt: skip
        yield Flow(LOCAL_SWITCHING, 10, Match(in_port=ofport, **na), [GotoTable(ARP_SPOOF_TABLE)])
    if not _has_any_prefix(v4):
        for ip in sorted(v4):
            yield Flow(ARP_SPOOF_TABLE, 2, Match(in_port=ofport, eth_type=ETH_TYPE_ARP, arp_spa=ip),
                       [GotoTable(MAC_SPOOF_TABLE)])  # fmt: skip
        yield Flow(LOCAL_SWITCHING, 10, Match(in_port=ofport, eth_type=ETH_TYPE_ARP),
                   [GotoTable(ARP_SPOOF_TABLE)])  # fmt: skip


class NoopFirewall:
    """No filtering; anti-spoofing for ports with port security (neutron's noop + agent)."""

    name: ClassVar[str] = "noop"

    def base_flows(self) -> frozenset[Flow]:
        return frozenset({Flow(ARP_SPOOF_TABLE, 0), Flow(MAC_SPOOF_TABLE, 0)})

    def port_flows(self, port: FilteredPort, sgs: SecurityGroupState) -> frozenset[Flow]:
        if is_trusted(port.details):
            return frozenset()
        return frozenset(spoofing_flows(port))

    def shared_flows(
        self,
        ports: Mapping[str, FilteredPort],
        sgs: SecurityGroupState,
        owners: Collection[OwnerKey] | None = None,
    ) -> Mapping[OwnerKey, frozenset[Flow]]:
        return {owner: frozenset() for owner in owners or ()}

    def owners_for_change(
        self,
        ports_before: Mapping[str, FilteredPort],
        sgs_before: SecurityGroupState,
        ports_after: Mapping[str, FilteredPort],
        sgs_after: SecurityGroupState,
    ) -> frozenset[OwnerKey]:
        """Security groups do not matter here: only ports that changed."""
        return frozenset(
            port_owner(iface)
            for iface in ports_before.keys() | ports_after.keys()
            if ports_before.get(iface) != ports_after.get(iface)
        )
