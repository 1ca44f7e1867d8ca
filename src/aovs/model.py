"""Typed domain values the agent core works with (independent of any wire format).

The RPC adapter turns neutron-server's dicts into these; pipelines and firewall drivers read them.
All are frozen pydantic models: hashable, comparable, cheap to cache and to snapshot as JSON.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NetworkType = Literal["vlan", "flat", "vxlan", "gre", "geneve", "local"]
TUNNEL_TYPES: frozenset[str] = frozenset({"vxlan", "gre", "geneve"})
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _check_mac(value: str) -> str:
    value = value.lower()
    if not _MAC_RE.match(value):
        raise ValueError(f"{value!r} is not a MAC address")
    return value


class FixedIP(_Value):
    subnet_id: str | None = None
    ip_address: str

    @field_validator("ip_address")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))


class AllowedAddressPair(_Value):
    ip_address: str  # an address or a CIDR
    mac_address: str | None = None

    @field_validator("ip_address")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        return str(ipaddress.ip_network(value, strict=False))

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else _check_mac(value)


class NetworkSegment(_Value):
    """What the dataplane needs to know about a network on this host."""

    network_id: str
    network_type: NetworkType
    physical_network: str | None = None
    segmentation_id: int | None = None
    mtu: int = 1500

    @property
    def is_tunnel(self) -> bool:
        return self.network_type in TUNNEL_TYPES


class PortDetails(_Value):
    """One port as neutron-server describes it (get_devices_details_list_and_failed_devices)."""

    device: str
    port_id: str
    network_id: str
    mac_address: str
    admin_state_up: bool = True
    network_type: NetworkType
    physical_network: str | None = None
    segmentation_id: int | None = None
    mtu: int = 1500
    fixed_ips: tuple[FixedIP, ...] = ()
    device_owner: str = ""
    allowed_address_pairs: tuple[AllowedAddressPair, ...] = ()
    port_security_enabled: bool = True
    security_groups: tuple[str, ...] = ()
    qos_policy_id: str | None = None

    _mac = field_validator("mac_address")(classmethod(lambda cls, v: _check_mac(v)))

    @property
    def segment(self) -> NetworkSegment:
        return NetworkSegment(
            network_id=self.network_id,
            network_type=self.network_type,
            physical_network=self.physical_network,
            segmentation_id=self.segmentation_id,
            mtu=self.mtu,
        )


class SecurityGroupRule(_Value):
    """A rule as the agent sees it. ``remote_ip_prefix`` is the peer prefix in either direction
    (the wire calls it source_ip_prefix for ingress and dest_ip_prefix for egress)."""

    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | None = None  # "tcp", "udp", "icmp", "ipv6-icmp", a number, or None = any
    port_range_min: int | None = Field(default=None, ge=0, le=65535)
    port_range_max: int | None = Field(default=None, ge=0, le=65535)
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    remote_address_group_id: str | None = None
    stateful: bool = True

    @field_validator("remote_ip_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value, strict=False))

    @model_validator(mode="after")
    def _one_remote(self) -> SecurityGroupRule:
        # neutron allows one remote at most; two would be ambiguous, and guessing could widen
        remotes = [self.remote_ip_prefix, self.remote_group_id, self.remote_address_group_id]
        if sum(remote is not None for remote in remotes) > 1:
            raise ValueError(
                "more than one of remote_ip_prefix, remote_group_id, remote_address_group_id"
            )
        return self

    @property
    def remote_id(self) -> str | None:
        """The remote set whose members this rule admits: a security group or an address group
        (neutron sends both kinds' addresses in ``sg_member_ips``, keyed by their ids)."""
        return self.remote_group_id or self.remote_address_group_id


class SecurityGroup(_Value):
    id: str
    rules: tuple[SecurityGroupRule, ...] = ()
    stateful: bool = True


class TunnelEndpoint(_Value):
    ip_address: str
    host: str | None = None
    udp_port: int | None = None


class FdbEntry(_Value):
    """l2population: a (mac, ip) of a port on a remote endpoint."""

    mac_address: str
    ip_address: str | None = None
