"""Ports and security groups for the firewall unit tests (shared by several test modules)."""

from __future__ import annotations

from collections.abc import Mapping

from aovs.dataplane.compose import firewall_owners
from aovs.firewall import FilteredPort, OwnerKey, SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import AllowedAddressPair, FixedIP, PortDetails, SecurityGroup, SecurityGroupRule
from aovs.openflow.flows import Flow
from aovs.owners import PORT, kind_of


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


def recompute_dirty(
    driver: OVSFirewall,
    owned: Mapping[OwnerKey, frozenset[Flow]],
    ports: Mapping[str, FilteredPort],
    sgs: SecurityGroupState,
    dirty: frozenset[OwnerKey],
) -> dict[OwnerKey, frozenset[Flow]]:
    """What the agent does: recompute only the dirty owners."""
    result = dict(owned)
    for owner in dirty:
        if kind_of(owner) == PORT:
            port = ports.get(owner[1])
            result[owner] = driver.port_flows(port, sgs) if port else frozenset()
    result.update(driver.shared_flows(ports, sgs, [o for o in dirty if kind_of(o) != PORT]))
    return {owner: flows for owner, flows in result.items() if flows}


def check_incremental(
    before: tuple[dict[str, FilteredPort], SecurityGroupState],
    after: tuple[dict[str, FilteredPort], SecurityGroupState],
) -> tuple[frozenset[OwnerKey], set[Flow]]:
    """Assert that recomputing the owners ``owners_for_change`` names equals a full recompute;
    the dirty owners and the flows that changed."""
    driver = OVSFirewall()
    old = firewall_owners(driver, *before)
    dirty = driver.owners_for_change(*before, *after)
    incremental = recompute_dirty(driver, old, *after, dirty)
    assert incremental == firewall_owners(OVSFirewall(), *after)
    old_all: set[Flow] = set().union(*old.values())
    new_all: set[Flow] = set().union(*incremental.values())
    return dirty, old_all ^ new_all
