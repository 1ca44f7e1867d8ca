"""Typed agent events for neutron-server's notifications, and their parsing (pure).

Argument shapes are neutron's (AgentNotifierApi, SecurityGroupAgentRpcApiMixin,
L2populationAgentNotifyAPI). l2population's ``fdb_entries``:
``{net_id: {"segment_id": .., "network_type": .., "ports": {agent_ip: [[mac, ip], ...]}}}``,
where ``FLOODING_ENTRY`` (["00:00:00:00:00:00", "0.0.0.0"]) asks for a flooding tunnel to
agent_ip; ``update_fdb_entries`` carries ``{"chg_ip": {net_id: {agent_ip: {"before": [[mac, ip]],
"after": [[mac, ip]]}}}}``. A parse error raises ValueError with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aovs.model import FdbEntry

FLOODING_ENTRY = FdbEntry(mac_address="00:00:00:00:00:00", ip_address="0.0.0.0")


@dataclass(frozen=True, slots=True)
class PortUpdate:
    """A port changed (security groups, admin state, binding...): refetch its details."""

    port_id: str
    port: Mapping[str, Any]  # the full API dict as sent
    network_type: str | None = None
    segmentation_id: int | None = None
    physical_network: str | None = None


@dataclass(frozen=True, slots=True)
class PortDelete:
    port_id: str


@dataclass(frozen=True, slots=True)
class NetworkUpdate:
    network_id: str
    network: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NetworkDelete:
    network_id: str


@dataclass(frozen=True, slots=True)
class BindingActivate:
    """Live migration: the port's binding on ``host`` became the active one."""

    port_id: str
    host: str


@dataclass(frozen=True, slots=True)
class BindingDeactivate:
    """Live migration: the port's binding on ``host`` is no longer the active one."""

    port_id: str
    host: str


@dataclass(frozen=True, slots=True)
class SecurityGroupsRuleUpdated:
    security_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SecurityGroupsMemberUpdated:
    security_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SecurityGroupsProviderUpdated:
    """The server's own rules (DHCP) changed for these devices (None: all). aovs' firewall
    builds the DHCP allowances into its base flows, as neutron's openvswitch driver does, so
    nothing follows; parsed so that it is not an unknown method to the server's cast."""

    devices: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class TunnelUpdate:
    tunnel_ip: str
    tunnel_type: str | None = None


@dataclass(frozen=True, slots=True)
class TunnelDelete:
    tunnel_ip: str
    tunnel_type: str | None = None


@dataclass(frozen=True, slots=True)
class FdbNetwork:
    """l2population entries of one network: the remote ports behind each tunnel endpoint."""

    network_id: str
    segment_id: int | None
    network_type: str | None
    ports: Mapping[str, tuple[FdbEntry, ...]]  # agent (tunnel) IP -> its ports


@dataclass(frozen=True, slots=True)
class AddFdbEntries:
    networks: tuple[FdbNetwork, ...]


@dataclass(frozen=True, slots=True)
class RemoveFdbEntries:
    networks: tuple[FdbNetwork, ...]


@dataclass(frozen=True, slots=True)
class FdbIpChange:
    network_id: str
    agent_ip: str
    before: tuple[FdbEntry, ...]
    after: tuple[FdbEntry, ...]


@dataclass(frozen=True, slots=True)
class UpdateFdbEntries:
    changes: tuple[FdbIpChange, ...]


AgentEvent = (
    PortUpdate
    | PortDelete
    | NetworkUpdate
    | NetworkDelete
    | BindingActivate
    | BindingDeactivate
    | SecurityGroupsRuleUpdated
    | SecurityGroupsMemberUpdated
    | SecurityGroupsProviderUpdated
    | TunnelUpdate
    | TunnelDelete
    | AddFdbEntries
    | RemoveFdbEntries
    | UpdateFdbEntries
)


# ---- parsing: one function per notification method, named after it --------------------------


def port_update(args: Mapping[str, Any]) -> PortUpdate:
    port = _object(args, "port")
    return PortUpdate(
        port_id=_text(port, "id"),
        port=port,
        network_type=_optional_text(args, "network_type"),
        segmentation_id=_optional_int(args, "segmentation_id"),
        physical_network=_optional_text(args, "physical_network"),
    )


def port_delete(args: Mapping[str, Any]) -> PortDelete:
    return PortDelete(_text(args, "port_id"))


def network_update(args: Mapping[str, Any]) -> NetworkUpdate:
    network = _object(args, "network")
    return NetworkUpdate(_text(network, "id"), network)


def network_delete(args: Mapping[str, Any]) -> NetworkDelete:
    return NetworkDelete(_text(args, "network_id"))


def binding_activate(args: Mapping[str, Any]) -> BindingActivate:
    return BindingActivate(_text(args, "port_id"), _text(args, "host"))


def binding_deactivate(args: Mapping[str, Any]) -> BindingDeactivate:
    return BindingDeactivate(_text(args, "port_id"), _text(args, "host"))


def security_groups_rule_updated(args: Mapping[str, Any]) -> SecurityGroupsRuleUpdated:
    return SecurityGroupsRuleUpdated(_ids(args, "security_groups"))


def security_groups_member_updated(args: Mapping[str, Any]) -> SecurityGroupsMemberUpdated:
    return SecurityGroupsMemberUpdated(_ids(args, "security_groups"))


def security_groups_provider_updated(args: Mapping[str, Any]) -> SecurityGroupsProviderUpdated:
    devices = args.get("devices_to_update")
    return SecurityGroupsProviderUpdated(
        None if devices is None else _ids(args, "devices_to_update")
    )


def tunnel_update(args: Mapping[str, Any]) -> TunnelUpdate:
    return TunnelUpdate(_text(args, "tunnel_ip"), _optional_text(args, "tunnel_type"))


def tunnel_delete(args: Mapping[str, Any]) -> TunnelDelete:
    return TunnelDelete(_text(args, "tunnel_ip"), _optional_text(args, "tunnel_type"))


def add_fdb_entries(args: Mapping[str, Any]) -> AddFdbEntries:
    return AddFdbEntries(_fdb_networks(_object(args, "fdb_entries")))


def remove_fdb_entries(args: Mapping[str, Any]) -> RemoveFdbEntries:
    return RemoveFdbEntries(_fdb_networks(_object(args, "fdb_entries")))


def update_fdb_entries(args: Mapping[str, Any]) -> UpdateFdbEntries:
    entries = _object(args, "fdb_entries")
    unknown = set(entries) - {"chg_ip"}
    if unknown:
        raise ValueError(f"fdb_entries: unknown update action(s) {sorted(unknown)}")
    changes = []
    for net_id, by_agent in _object(entries, "chg_ip", default={}).items():
        if not isinstance(by_agent, Mapping):
            raise ValueError(f"chg_ip[{net_id}] is not an object")
        for agent_ip, change in by_agent.items():
            if not isinstance(change, Mapping):
                raise ValueError(f"chg_ip[{net_id}][{agent_ip}] is not an object")
            changes.append(
                FdbIpChange(
                    network_id=str(net_id),
                    agent_ip=str(agent_ip),
                    before=_fdb_list(change.get("before") or []),
                    after=_fdb_list(change.get("after") or []),
                )
            )
    return UpdateFdbEntries(tuple(changes))


PARSERS: dict[str, Callable[[Mapping[str, Any]], AgentEvent]] = {
    "port_update": port_update,
    "port_delete": port_delete,
    "network_update": network_update,
    "network_delete": network_delete,
    "binding_activate": binding_activate,
    "binding_deactivate": binding_deactivate,
    "security_groups_rule_updated": security_groups_rule_updated,
    "security_groups_member_updated": security_groups_member_updated,
    "security_groups_provider_updated": security_groups_provider_updated,
    "tunnel_update": tunnel_update,
    "tunnel_delete": tunnel_delete,
    "add_fdb_entries": add_fdb_entries,
    "remove_fdb_entries": remove_fdb_entries,
    "update_fdb_entries": update_fdb_entries,
}


# ---- helpers ---------------------------------------------------------------------------------


def _fdb_networks(entries: Mapping[str, Any]) -> tuple[FdbNetwork, ...]:
    networks = []
    for net_id, info in entries.items():
        if not isinstance(info, Mapping):
            raise ValueError(f"fdb_entries[{net_id}] is not an object")
        ports = _object(info, "ports", default={})
        networks.append(
            FdbNetwork(
                network_id=str(net_id),
                segment_id=_optional_int(info, "segment_id"),
                network_type=_optional_text(info, "network_type"),
                ports={str(ip): _fdb_list(entries_) for ip, entries_ in ports.items()},
            )
        )
    return tuple(networks)


def _fdb_list(entries: Any) -> tuple[FdbEntry, ...]:
    if not isinstance(entries, list | tuple):
        raise ValueError(f"fdb port list is a {type(entries).__name__}")
    return tuple(_fdb_entry(entry) for entry in entries)


def _fdb_entry(entry: Any) -> FdbEntry:
    # PortInfo(mac_address, ip_address) travels as a 2-list; older servers sent objects
    if isinstance(entry, list | tuple) and len(entry) == 2:
        mac, ip = entry
    elif isinstance(entry, Mapping) and "mac_address" in entry:
        mac, ip = entry["mac_address"], entry.get("ip_address")
    else:
        raise ValueError(f"fdb entry {entry!r:.80} is not [mac, ip]")
    if not isinstance(mac, str):
        raise ValueError(f"fdb entry mac {mac!r:.40} is not a string")
    return FdbEntry(mac_address=mac.lower(), ip_address=None if ip is None else str(ip))


def _object(args: Mapping[str, Any], key: str, default: Any = None) -> Mapping[str, Any]:
    value = args.get(key, default)
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} is missing or not an object")
    return value


def _text(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is missing or not a string")
    return value


def _optional_text(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _optional_int(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} {value!r:.40} is not an integer") from None


def _ids(args: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = args.get(key)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} is missing or not a list of ids")
    return tuple(value)
