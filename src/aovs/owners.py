"""Owner keys: who a group of flows belongs to, named in one place.

The agent keys every flow by an owner so that a change recomputes only what it touched (see
:mod:`aovs.dataplane.compose` and docs/architecture.md). A key is a plain tuple of strings
(hashable, ordered, JSON-able); build and read them ONLY through the functions here:

- ``bridge_owner(name)``: a bridge's base flows (canary, defaults, NORMAL);
- ``patch_owner(physnet)``: br-int's drop of untranslated traffic from a physical bridge;
- ``network_owner(net_id)``: a network's VLAN (or tunnel id) translation;
- ``port_owner(iface_id)``: a port's own flows (dead-port drop, or the firewall's port flows);
- ``FIREWALL_BASE_OWNER``: the firewall driver's table-wide flows;
- ``member_owner(zone, direction, ethertype, address)``: the openvswitch firewall's flows for
  one remote-group member address in one conntrack zone;
- ``tunnel_owner(port)``, ``flood_owner(net)``, ``fdb_owner(net)``: br-tun's overlay owners.

A leaf module: it imports nothing of aovs, so the firewall drivers and the agent share it.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

OwnerKey: TypeAlias = tuple[str, ...]

BRIDGE = "bridge"
PATCH = "patch"
NETWORK = "network"
PORT = "port"
FIREWALL_BASE = "fw-base"
MEMBER = "fw-member"
TUNNEL = "tunnel"
FLOOD = "flood"
FDB = "fdb"

FIREWALL_BASE_OWNER: OwnerKey = (FIREWALL_BASE,)


def bridge_owner(bridge: str) -> OwnerKey:
    return (BRIDGE, bridge)


def patch_owner(physnet: str) -> OwnerKey:
    return (PATCH, physnet)


def network_owner(network_id: str) -> OwnerKey:
    return (NETWORK, network_id)


def port_owner(iface_id: str) -> OwnerKey:
    return (PORT, iface_id)


def member_owner(zone: int, direction: str, ethertype: str, address: str) -> OwnerKey:
    return (MEMBER, str(zone), direction, ethertype, address)


def tunnel_owner(port_name: str) -> OwnerKey:
    return (TUNNEL, port_name)


def flood_owner(network_id: str) -> OwnerKey:
    return (FLOOD, network_id)


def fdb_owner(network_id: str) -> OwnerKey:
    return (FDB, network_id)


def kind_of(owner: OwnerKey) -> str:
    """What an owner is: one of the constants above (``PORT``, ``MEMBER``, ...)."""
    return owner[0]


def port_of(owner: OwnerKey) -> str | None:
    """The iface id of a ``port_owner`` key; None for any other owner."""
    return owner[1] if len(owner) == 2 and owner[0] == PORT else None


class Member(NamedTuple):
    zone: int
    direction: str
    ethertype: str
    address: str


def member_of(owner: OwnerKey) -> Member | None:
    """The fields of a ``member_owner`` key; None for any other owner."""
    if len(owner) != 5 or owner[0] != MEMBER:
        return None
    _, zone, direction, ethertype, address = owner
    return Member(int(zone), direction, ethertype, address)
