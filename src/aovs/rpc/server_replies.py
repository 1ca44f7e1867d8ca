"""neutron-server's replies, typed, and their conversion to aovs.model domain values (pure).

A reply is data from another process: anything in it may be missing or malformed. Conversion
never raises for one bad device or rule; it puts the device among the failed ones with a
one-line reason (the agent retries those), so one broken port cannot stall the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from aovs.model import PortDetails, SecurityGroup, SecurityGroupRule, TunnelEndpoint

LOG = logging.getLogger(__name__)


# ---- get_devices_details_list_and_failed_devices -----------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownDevice:
    """The server answered ``{"device": id}`` only: no such port, or not bound to a segment."""

    device: str


@dataclass(frozen=True, slots=True)
class NoActiveBinding:
    """The port is bound to another host (e.g. mid live-migration): do not wire it here."""

    device: str


@dataclass(frozen=True, slots=True)
class FailedDevice:
    """The server failed the device, or its details do not parse; retried by the agent."""

    device: str
    reason: str


DeviceOutcome = PortDetails | UnknownDevice | NoActiveBinding | FailedDevice


@dataclass(frozen=True, slots=True)
class DevicesDetails:
    """One outcome per requested device."""

    outcomes: Mapping[str, DeviceOutcome]

    @property
    def ports(self) -> dict[str, PortDetails]:
        return {k: v for k, v in self.outcomes.items() if isinstance(v, PortDetails)}

    @property
    def unknown(self) -> frozenset[str]:
        return frozenset(k for k, v in self.outcomes.items() if isinstance(v, UnknownDevice))

    @property
    def no_active_binding(self) -> frozenset[str]:
        return frozenset(k for k, v in self.outcomes.items() if isinstance(v, NoActiveBinding))

    @property
    def failed(self) -> dict[str, str]:
        return {k: v.reason for k, v in self.outcomes.items() if isinstance(v, FailedDevice)}


def device_outcome(entry: Mapping[str, Any]) -> DeviceOutcome:
    """One element of the reply's ``devices`` list (which always carries ``device``)."""
    device = str(entry["device"])
    if entry.get("no_active_binding"):
        return NoActiveBinding(device)
    if set(entry) == {"device"}:
        return UnknownDevice(device)
    data = dict(entry)
    if data.get("mtu") is None:
        data.pop("mtu", None)
    for key in ("fixed_ips", "allowed_address_pairs", "security_groups"):
        if data.get(key) is None:
            data.pop(key, None)
    if data.get("qos_policy_id") is None:  # the network's policy applies (neutron's handle_port)
        data["qos_policy_id"] = data.get("qos_network_policy_id")
    try:
        return PortDetails.model_validate(data)
    except ValidationError as exc:
        return FailedDevice(device, f"malformed details: {_one_line(exc)}")


def devices_details(requested: Sequence[str], reply: Any) -> DevicesDetails:
    """Outcomes for ``requested`` from one reply; a device the reply forgot is failed."""
    outcomes: dict[str, DeviceOutcome] = {}
    if not isinstance(reply, Mapping):
        reason = f"reply is a {type(reply).__name__}, not an object"
        return DevicesDetails({d: FailedDevice(d, reason) for d in requested})
    for entry in _list(reply.get("devices")):
        if not isinstance(entry, Mapping) or "device" not in entry:
            LOG.warning("device details entry without a device id dropped: %.200r", entry)
            continue
        outcome = device_outcome(entry)
        outcomes[outcome.device] = outcome
    for device in _list(reply.get("failed_devices")):
        outcomes[str(device)] = FailedDevice(str(device), "failed by the server")
    for device in requested:
        if device not in outcomes:
            outcomes[device] = FailedDevice(device, "missing from the server's reply")
    return DevicesDetails(outcomes)


# ---- update_device_list ------------------------------------------------------------------


class _DeviceDown(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    device: str
    exists: bool = True


class _UpdateDeviceListReply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    devices_up: tuple[str, ...] = ()
    failed_devices_up: tuple[str, ...] = ()
    devices_down: tuple[_DeviceDown, ...] = ()
    failed_devices_down: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceListResult:
    devices_up: tuple[str, ...] = ()
    failed_devices_up: tuple[str, ...] = ()
    devices_down: tuple[str, ...] = ()
    failed_devices_down: tuple[str, ...] = ()
    unknown_down: tuple[str, ...] = ()  # reported down, but the server has no such port

    def merged(self, other: DeviceListResult) -> DeviceListResult:
        return DeviceListResult(
            self.devices_up + other.devices_up,
            self.failed_devices_up + other.failed_devices_up,
            self.devices_down + other.devices_down,
            self.failed_devices_down + other.failed_devices_down,
            self.unknown_down + other.unknown_down,
        )


def device_list_result(reply: Any) -> DeviceListResult:
    parsed = _UpdateDeviceListReply.model_validate(reply or {})
    return DeviceListResult(
        devices_up=parsed.devices_up,
        failed_devices_up=parsed.failed_devices_up,
        devices_down=tuple(d.device for d in parsed.devices_down if d.exists),
        failed_devices_down=parsed.failed_devices_down,
        unknown_down=tuple(d.device for d in parsed.devices_down if not d.exists),
    )


# ---- security_group_info_for_devices -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityGroupInfo:
    """What the firewall driver needs for a set of ports.

    The ports' own ``security_group_rules`` (their groups' rules again, plus the DHCP rules the
    server adds) are not read: the firewall implements DHCP itself, as neutron's does.
    """

    devices: Mapping[str, tuple[str, ...]]  # port id -> its security group ids
    security_groups: Mapping[str, SecurityGroup]
    # remote security group or address group id -> ethertype -> addresses or CIDRs
    member_ips: Mapping[str, Mapping[str, frozenset[str]]]
    problems: tuple[str, ...] = field(default=())  # dropped rules, one line each


# Keys of a wire rule that say which traffic it admits: each is honoured by the firewall.
RULE_MATCH_KEYS = frozenset({
    "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
    "source_ip_prefix", "dest_ip_prefix", "remote_ip_prefix", "remote_group_id",
    "remote_address_group_id", "stateful",
})  # fmt: skip
# Keys that describe a rule without narrowing it (safe to ignore).
RULE_INFO_KEYS = frozenset({
    "id", "security_group_id", "project_id", "tenant_id", "description", "normalized_cidr",
    "created_at", "updated_at", "revision_number", "tags", "standard_attr_id",
    "belongs_to_default_sg", "name",
})  # fmt: skip


class UnhonouredRule(ValueError):
    """A rule carries a field aovs cannot enforce: it is dropped, so its traffic is denied."""


def security_group_rule(rule: Mapping[str, Any]) -> SecurityGroupRule:
    """A wire rule: the peer prefix is ``source_ip_prefix`` (ingress) or ``dest_ip_prefix``.

    Security groups only allow: a rule aovs drops denies what it would have admitted. So a
    field that would narrow a rule but that aovs does not know (a newer server's, or
    ``source_port_range_*``) makes the rule fail closed instead of admitting more than asked.
    """
    unknown = sorted(
        key for key, value in rule.items()
        if value is not None and key not in RULE_MATCH_KEYS and key not in RULE_INFO_KEYS
    )  # fmt: skip
    if unknown:
        raise UnhonouredRule(f"field(s) {', '.join(unknown)} not enforceable: rule denied")
    direction = rule.get("direction")
    prefix_key = "source_ip_prefix" if direction == "ingress" else "dest_ip_prefix"
    protocol = rule.get("protocol")
    return SecurityGroupRule.model_validate(
        {
            "direction": direction,
            "ethertype": rule.get("ethertype", "IPv4"),
            "protocol": None if protocol is None else str(protocol),
            "port_range_min": rule.get("port_range_min"),
            "port_range_max": rule.get("port_range_max"),
            "remote_ip_prefix": rule.get(prefix_key) or rule.get("remote_ip_prefix"),
            "remote_group_id": rule.get("remote_group_id"),
            "remote_address_group_id": rule.get("remote_address_group_id"),
            "stateful": rule.get("stateful", True),
        }
    )


def security_group_info(reply: Any) -> SecurityGroupInfo:
    if not isinstance(reply, Mapping):
        raise ValueError(f"security_group_info reply is a {type(reply).__name__}")
    problems: list[str] = []

    def rules_of(owner: str, wire_rules: Any) -> tuple[SecurityGroupRule, ...]:
        rules = []
        for wire_rule in _list(wire_rules):
            try:
                if not isinstance(wire_rule, Mapping):
                    raise ValueError(f"rule is a {type(wire_rule).__name__}")
                rules.append(security_group_rule(wire_rule))
            except (ValidationError, ValueError) as exc:
                problem = f"{owner}: rule {wire_rule!r:.300} dropped: {_one_line(exc)}"
                LOG.warning("security group %s", problem)
                problems.append(problem)
        return tuple(rules)

    devices: dict[str, tuple[str, ...]] = {}
    for port_id, port in _mapping(reply.get("devices")).items():
        if not isinstance(port, Mapping):
            problems.append(f"device {port_id}: not an object")
            continue
        devices[str(port_id)] = tuple(str(sg) for sg in _list(port.get("security_groups")))
    groups: dict[str, SecurityGroup] = {}
    for sg_id, wire_rules in _mapping(reply.get("security_groups")).items():
        rules = rules_of(f"group {sg_id}", wire_rules)
        stateful = all(rule.stateful for rule in rules)
        groups[str(sg_id)] = SecurityGroup(id=str(sg_id), rules=rules, stateful=stateful)
    member_ips: dict[str, dict[str, frozenset[str]]] = {}
    for sg_id, by_ethertype in _mapping(reply.get("sg_member_ips")).items():
        member_ips[str(sg_id)] = {
            str(ethertype): frozenset(_member_ip(member) for member in _list(members))
            for ethertype, members in _mapping(by_ethertype).items()
        }
    return SecurityGroupInfo(devices, groups, member_ips, tuple(problems))


def _member_ip(member: Any) -> str:
    # neutron's DB-backed server sends IP strings; its cache-backed code uses (ip, mac) pairs
    if isinstance(member, list | tuple) and member:
        return str(member[0])
    return str(member)


# ---- tunnel_sync, report_state -------------------------------------------------------------


def tunnel_endpoints(reply: Any) -> tuple[TunnelEndpoint, ...]:
    tunnels = _list(reply.get("tunnels")) if isinstance(reply, Mapping) else []
    endpoints = []
    for tunnel in tunnels:
        try:
            endpoints.append(TunnelEndpoint.model_validate(tunnel))
        except ValidationError as exc:
            LOG.warning("tunnel entry %.200r dropped: %s", tunnel, _one_line(exc))
    return tuple(endpoints)


# ---- helpers -------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _mapping(value: Any) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
    return str(exc).replace("\n", " ")


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, order kept (a device asked twice is asked once)."""
    return list(dict.fromkeys(items))
