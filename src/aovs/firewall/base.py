"""The firewall driver contract: what the agent gives a driver and what it gets back.

A driver is a pure function object: ports and security groups in, OpenFlow rules (``Flow``
values) out, grouped by owner. It keeps no switch state and does no I/O, so the agent can apply
its output atomically with the port's other flows (one bundle) and an agent restart recomputes
exactly the same flows (no churn). Drivers are found by name: the built-ins ``noop`` and
``openvswitch``, else any installed distribution's ``aovs.firewall_drivers`` entry point.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from aovs.model import PortDetails, SecurityGroup
from aovs.openflow.flows import Flow
from aovs.owners import FIREWALL_BASE_OWNER
from aovs.owners import OwnerKey as OwnerKey  # the owner keys drivers use
from aovs.owners import port_owner as port_owner
from aovs.plugins import plugin_names, start_plugin

ENTRY_POINT_GROUP = "aovs.firewall_drivers"
BUILTIN_DRIVERS: Mapping[str, str] = {
    "noop": "aovs.firewall.noop:NoopFirewall",
    "openvswitch": "aovs.firewall.openvswitch:OVSFirewall",
}

BASE_OWNER: OwnerKey = FIREWALL_BASE_OWNER


@dataclass(frozen=True, slots=True)
class FilteredPort:
    """One port as a firewall driver sees it."""

    details: PortDetails  # port_security_enabled, security_groups, fixed_ips, aaps, mac
    ofport: int
    local_vlan: int  # the network's local VLAN on this host; also its conntrack zone


@dataclass(frozen=True)
class SecurityGroupState:
    """Every security group the agent knows, and the addresses of every remote group's members.

    ``members`` maps a remote security group id to ``{"IPv4": ips, "IPv6": ips}`` (addresses or
    CIDRs, as neutron-server's security_group_info_for_devices sends them).
    """

    groups: Mapping[str, SecurityGroup]
    members: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)

    def member_addresses(self, sg_id: str, ethertype: str) -> frozenset[str]:
        return self.members.get(sg_id, {}).get(ethertype, frozenset())


@runtime_checkable
class FirewallDriver(Protocol):
    """What the agent calls. Every method is pure and deterministic (see the module docstring).

    ``shared_flows`` returns flows that belong to no single port, grouped by owner (e.g. the
    member flows of remote security groups), so that a member joining a group rewrites only its
    owners' flows.
    """

    name: ClassVar[str]

    def base_flows(self) -> frozenset[Flow]:
        """The driver's table-wide flows (table defaults, drops); the agent owns them as
        ``("fw-base",)``."""
        ...

    def port_flows(self, port: FilteredPort, sgs: SecurityGroupState) -> frozenset[Flow]:
        """Every flow of one port; the agent owns them as ``("port", iface_id)``."""
        ...

    def shared_flows(
        self, ports: Mapping[str, FilteredPort], sgs: SecurityGroupState
    ) -> Mapping[OwnerKey, frozenset[Flow]]:
        """Flows that belong to no single port, grouped by owner; ``ports`` by iface id."""
        ...


@runtime_checkable
class IncrementalFirewallDriver(FirewallDriver, Protocol):
    """A driver that can say what a change dirties, so the agent recomputes only that.

    Optional: for a driver without it the agent recomputes every port and all shared flows on a
    security-group change (still correct, only slower).
    """

    def shared_flows(
        self,
        ports: Mapping[str, FilteredPort],
        sgs: SecurityGroupState,
        owners: Collection[OwnerKey] | None = None,
    ) -> Mapping[OwnerKey, frozenset[Flow]]:
        """As FirewallDriver's, restricted to ``owners`` when given: each requested owner is in
        the result, with no flows when it has none (the agent then deletes what it had)."""
        ...

    def owners_for_change(
        self,
        ports_before: Mapping[str, FilteredPort],
        sgs_before: SecurityGroupState,
        ports_after: Mapping[str, FilteredPort],
        sgs_after: SecurityGroupState,
    ) -> frozenset[OwnerKey]:
        """The owners whose flows may differ between the two inputs: port owners
        ``("port", iface_id)`` and shared owners (as ``shared_flows`` keys them)."""
        ...


class FirewallDriverError(LookupError):
    """A firewall driver could not be found or loaded; the message says what is available."""


def available_drivers() -> list[str]:
    """Names load_driver accepts: the built-ins and every installed entry point."""
    return plugin_names(BUILTIN_DRIVERS, ENTRY_POINT_GROUP)


def load_driver(name: str) -> FirewallDriver:
    """Instantiate the driver called ``name`` (neutron's ``firewall_driver`` option)."""
    driver = start_plugin(name, BUILTIN_DRIVERS, ENTRY_POINT_GROUP, kind="firewall driver",
                          error=FirewallDriverError)  # fmt: skip
    if not isinstance(driver, FirewallDriver):
        raise FirewallDriverError(
            f"firewall driver {name!r} ({type(driver)!r}) does not implement FirewallDriver "
            "(name, base_flows, port_flows, shared_flows)"
        )
    return driver
