"""Ports and security groups for the firewall unit tests (shared by several test modules)."""

from __future__ import annotations

from collections.abc import Mapping

from aovs.firewall import FilteredPort, SecurityGroupState
from aovs.model import AllowedAddressPair, FixedIP, PortDetails, SecurityGroup, SecurityGroupRule


def rule(direction: str, **fields: object) -> SecurityGroupRule:
    return SecurityGroupRule.model_validate({"direction": direction, **fields})


def make_port(
    index: int,
    groups: tuple[str, ...],
    vlan: int = 5,
    security: bool = True,
    pairs: tuple[AllowedAddressPair, ...] = (),
    owner: str = "compute:nova",
) -> FilteredPort:
    details = PortDetails(
        device=f"port-{index}",
        port_id=f"port-{index}",
        network_id=f"net-{vlan}",
        network_type="vxlan",
        segmentation_id=1000 + vlan,
        mac_address=f"fa:16:3e:00:{index >> 8:02x}:{index & 0xFF:02x}",
        fixed_ips=(
            FixedIP(ip_address=f"10.{vlan}.{index >> 8}.{index & 0xFF}"),
            FixedIP(ip_address=f"fd00:{vlan:x}::{index:x}"),
        ),
        security_groups=groups,
        port_security_enabled=security,
        allowed_address_pairs=pairs,
        device_owner=owner,
    )
    return FilteredPort(details, ofport=index + 1, local_vlan=vlan)


WEB = SecurityGroup(
    id="web",
    rules=(
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        rule("ingress", protocol="icmp", remote_ip_prefix="0.0.0.0/0"),
        rule("ingress", protocol="tcp", port_range_min=8000, port_range_max=8999,
             remote_ip_prefix="192.168.0.0/16"),
        rule("ingress", protocol="tcp", port_range_min=5000, port_range_max=5010,
             remote_group_id="web"),
        rule("ingress", protocol="tcp", port_range_min=5005, port_range_max=5020,
             remote_group_id="db"),
        rule("ingress", protocol="icmp", port_range_min=8, remote_group_id="db"),
        rule("ingress", ethertype="IPv6", remote_group_id="web"),
        rule("egress", ethertype="IPv4"),
        rule("egress", ethertype="IPv6"),
    ),
)  # fmt: skip
DB = SecurityGroup(
    id="db",
    rules=(
        rule("ingress", protocol="tcp", port_range_min=5432, port_range_max=5432,
             remote_group_id="web"),
        rule("egress", protocol="udp", port_range_min=53, port_range_max=53,
             remote_ip_prefix="10.0.0.0/8"),
    ),
)  # fmt: skip


def members(ips: Mapping[str, list[str]]) -> dict[str, dict[str, frozenset[str]]]:
    out: dict[str, dict[str, frozenset[str]]] = {}
    for sg_id, addresses in ips.items():
        out[sg_id] = {
            "IPv4": frozenset(a for a in addresses if ":" not in a),
            "IPv6": frozenset(a for a in addresses if ":" in a),
        }
    return out


def scenario(n_ports: int = 12, zones: tuple[int, ...] = (5, 6)) -> tuple[
    dict[str, FilteredPort], SecurityGroupState
]:  # fmt: skip
    ports: dict[str, FilteredPort] = {}
    groups_by_sg: dict[str, list[str]] = {"web": [], "db": []}
    for index in range(n_ports):
        sg = ("web",) if index % 3 else ("db", "web") if index % 2 else ("db",)
        port = make_port(index, sg, vlan=zones[index % len(zones)])
        ports[port.details.device] = port
        for sg_id in sg:
            groups_by_sg[sg_id] += [f.ip_address for f in port.details.fixed_ips]
    return ports, SecurityGroupState({"web": WEB, "db": DB}, members(groups_by_sg))
