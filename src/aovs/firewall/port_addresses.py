"""The (MAC, IP) pairs a port may send from: fixed IPs, allowed address pairs, its link-local."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aovs.model import PortDetails
from aovs.openflow.flows import canonical_address

NETWORK_OWNER_PREFIX = "network:"  # router, DHCP, ... ports: neutron treats them as trusted


def link_local_address(mac: str) -> str:
    """The EUI-64 IPv6 link-local address of ``mac`` (what the VM uses for neighbour discovery)."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui64 = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *([0] * 6), *eui64])))


def _version(address: str) -> int:
    """4 or 6 for an address or CIDR (ValueError if neither); a plain address is parsed as
    one (and once: its flows' match values need the same parse), cheaper than as a network."""
    if "/" in address or "%" in address:
        return ipaddress.ip_network(address, strict=False).version
    return 6 if ":" in canonical_address(address) else 4


def is_trusted(details: PortDetails) -> bool:
    """Ports neutron does not filter: port security off, or owned by the network itself."""
    return not details.port_security_enabled or details.device_owner.startswith(
        NETWORK_OWNER_PREFIX
    )


@dataclass(frozen=True, slots=True)
class PortAddresses:
    """A port's addresses, sorted so flows built from them do not depend on input order."""

    mac: str
    macs: tuple[str, ...]  # the port's MAC and every allowed-address-pair MAC
    pairs_v4: tuple[tuple[str, str], ...]  # (mac, address or CIDR)
    pairs_v6: tuple[tuple[str, str], ...]  # (mac, address or CIDR), incl. the link-local
    link_local: str

    @classmethod
    def of(cls, details: PortDetails) -> PortAddresses:
        mac = details.mac_address
        pairs: set[tuple[str, str]] = {(mac, fixed.ip_address) for fixed in details.fixed_ips}
        pairs.update(
            (pair.mac_address or mac, pair.ip_address) for pair in details.allowed_address_pairs
        )
        lla = link_local_address(mac)
        pairs.add((mac, lla))
        versions = {pair: _version(pair[1]) for pair in pairs}
        v4 = sorted(pair for pair, version in versions.items() if version == 4)
        v6 = sorted(pair for pair, version in versions.items() if version == 6)
        macs = sorted({mac} | {pair_mac for pair_mac, _ in pairs})
        return cls(mac, tuple(macs), tuple(v4), tuple(v6), lla)
