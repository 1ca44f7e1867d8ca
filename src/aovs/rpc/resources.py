"""neutron's resource push RPC (``neutron-vo-<Type>-<version>``): versioned objects, parsed.

neutron 29's server pushes every create/update/delete of the resources agents consume as
oslo.versionedobjects primitives on the fanout exchange ``neutron-vo-<Type>-<version>_fanout``
(``ResourcesPushRpcApi``, method ``push(resource_list, event_type)``, version 1.1), at its own
version of each type and at every version an agent reported in ``resource_versions``.

Some changes reach agents ONLY this way: an address group's add_addresses / remove_addresses
has no legacy notification, and a QoS policy's rules change only this way. aovs consumes the
types in :data:`CONSUMED_RESOURCES` (AddressGroup always, QosPolicy with the ``qos`` agent
extension, Trunk and SubPort with ``trunk``: :func:`consumed_resources`) and reports exactly
these versions, so a newer server keeps pushing the version aovs parses; everything else comes
through the legacy calls (``get_devices_details_list_and_failed_devices``,
``security_group_info_for_devices``) and notifications.

What is known of these objects lives in ONE :class:`ResourceCache` (the agent core holds it):
filled by pushes, and by ``pull`` / ``bulk_pull`` (neutron's ResourcesPullRpcApi: topic
``q-plugin``, version 1.1, no namespace) for an object a port names before any push about it.
This module is a value module (no AMQP is loaded: the transport is only a type here), so the
pure core and the agent extensions read the same values the consumer parses.

A primitive is ``{"versioned_object.name", ".namespace", ".version", ".data", ".changes"}``;
nested objects are primitives too. Parsing never trusts the sender: a malformed object raises
ValueError with a one-line reason (the consumer logs and drops it).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from aovs.rpc.errors import RemoteError

if TYPE_CHECKING:
    from aovs.rpc.amqp import RpcServer, RpcTransport

LOG = logging.getLogger(__name__)

ADDRESS_GROUP = "AddressGroup"
QOS_POLICY = "QosPolicy"
TRUNK = "Trunk"
SUBPORT = "SubPort"
# resource type -> the version aovs parses (neutron 29's own: objects/address_group.py,
# objects/qos/policy.py, objects/trunk.py)
CONSUMED_RESOURCES: Mapping[str, str] = {
    ADDRESS_GROUP: "1.2", QOS_POLICY: "1.10", TRUNK: "1.1", SUBPORT: "1.0",
}  # fmt: skip
ALWAYS_CONSUMED = frozenset({ADDRESS_GROUP})  # the others only for an extension that reads them
PUSH_RPC_VERSION = "1.1"  # ResourcesPushRpcCallback's target
PULL_TOPIC = "q-plugin"  # ResourcesPullRpcApi: topics.PLUGIN, version 1.1, namespace None
PULL_RPC_VERSION = "1.1"
EVENT_TYPES = frozenset({"created", "updated", "deleted"})


def consumed_resources(extra: Iterable[str] = ()) -> dict[str, str]:
    """The types (and versions) the agent consumes: AddressGroup, plus those its extensions
    read. Reported as ``resource_versions``: the server pushes exactly these."""
    wanted = ALWAYS_CONSUMED | set(extra)
    unknown = wanted - CONSUMED_RESOURCES.keys()
    if unknown:
        raise ValueError(f"resource types aovs cannot parse: {sorted(unknown)}")
    return {kind: version for kind, version in CONSUMED_RESOURCES.items() if kind in wanted}


_NAME = "versioned_object.name"
_VERSION = "versioned_object.version"
_DATA = "versioned_object.data"


def resource_topic(resource_type: str, version: str) -> str:
    """neutron's RESOURCE_TOPIC_PATTERN: ``neutron-vo-<type>-<version>``."""
    return f"neutron-vo-{resource_type}-{version}"


@dataclass(frozen=True, slots=True)
class AddressGroupValue:
    """An address group as the firewall needs it: its CIDRs (normalised), by IP version."""

    id: str
    addresses: frozenset[str]
    revision: int | None = None  # the server's revision_number: pushes may arrive out of order

    def by_ethertype(self) -> dict[str, frozenset[str]]:
        v4 = frozenset(a for a in self.addresses if ipaddress.ip_network(a).version == 4)
        return {"IPv4": v4, "IPv6": self.addresses - v4}


@dataclass(frozen=True, slots=True)
class AddressGroupPush:
    """``push`` of AddressGroup objects: created, updated (addresses changed) or deleted."""

    event_type: str
    groups: tuple[AddressGroupValue, ...]


def object_data(primitive: Any, expected: str) -> Mapping[str, Any]:
    """The ``data`` of a primitive of type ``expected``; ValueError if it is anything else."""
    if not isinstance(primitive, Mapping):
        raise ValueError(f"{expected} primitive is a {type(primitive).__name__}")
    name = primitive.get(_NAME)
    if name != expected:
        raise ValueError(f"versioned object is a {name!r}, not a {expected}")
    data = primitive.get(_DATA)
    if not isinstance(data, Mapping):
        raise ValueError(f"{expected} has no data object")
    return data


def _string(data: Mapping[str, Any], key: str, what: str) -> str:
    """A non-empty string field (an object's id, its port's): ValueError naming ``what``."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} without a {key}")
    return value


def _list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    """A list field, empty when absent: ValueError naming ``what`` when it is no list."""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{what}: {key} is not a list")
    return value


def _revision(data: Mapping[str, Any], what: str) -> int | None:
    revision = data.get("revision_number")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise ValueError(f"{what}: revision_number is not an integer")
    return revision


def _push_args(args: Mapping[str, Any]) -> tuple[str, list[Any]]:
    event_type = args.get("event_type")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"push event_type {event_type!r:.40} is not one of {sorted(EVENT_TYPES)}")
    resources = args.get("resource_list")
    if not isinstance(resources, list):
        raise ValueError("push without a resource_list")
    return str(event_type), resources


def address_group(primitive: Any) -> AddressGroupValue:
    data = object_data(primitive, ADDRESS_GROUP)
    group_id = _string(data, "id", ADDRESS_GROUP)
    associations = _list(data, "addresses", f"AddressGroup {group_id}")
    addresses = set()
    for association in associations:
        address = object_data(association, "AddressAssociation").get("address")
        if not isinstance(address, str):
            raise ValueError(f"AddressGroup {group_id}: an address is not a string")
        try:
            addresses.add(str(ipaddress.ip_network(address, strict=False)))
        except ValueError:
            raise ValueError(f"AddressGroup {group_id}: {address!r:.60} is no CIDR") from None
    return AddressGroupValue(group_id, frozenset(addresses),
                             _revision(data, f"AddressGroup {group_id}"))  # fmt: skip


def address_group_push(args: Mapping[str, Any]) -> AddressGroupPush:
    event_type, resources = _push_args(args)
    return AddressGroupPush(event_type, tuple(address_group(r) for r in resources))


# -- QoS policies ----------------------------------------------------------------------------
# neutron's QosRule subclasses (objects/qos/rule.py) -> their rule_type
RULE_TYPES: Mapping[str, str] = {
    "QosBandwidthLimitRule": "bandwidth_limit",
    "QosDscpMarkingRule": "dscp_marking",
    "QosMinimumBandwidthRule": "minimum_bandwidth",
    "QosPacketRateLimitRule": "packet_rate_limit",
    "QosMinimumPacketRateRule": "minimum_packet_rate",
}
_RULE_INTEGERS = (
    "max_kbps", "max_burst_kbps", "dscp_mark", "min_kbps", "max_kpps", "max_burst_kpps",
    "min_kpps",
)  # fmt: skip
DIRECTIONS = frozenset({"ingress", "egress", "any"})


@dataclass(frozen=True, slots=True)
class QosRuleValue:
    """One rule of a QoS policy. ``direction`` is neutron's (from the VM's point of view:
    egress = what the VM sends); dscp_marking has none (egress). Unset numbers are None."""

    id: str
    type: str  # neutron's rule_type: "bandwidth_limit", "dscp_marking", ...
    direction: str = "egress"
    max_kbps: int | None = None
    max_burst_kbps: int | None = None
    dscp_mark: int | None = None
    min_kbps: int | None = None
    max_kpps: int | None = None
    max_burst_kpps: int | None = None
    min_kpps: int | None = None


@dataclass(frozen=True, slots=True)
class QosPolicyValue:
    """A QoS policy and its rules, as pushed or pulled (``QosPolicy`` 1.10)."""

    id: str
    rules: tuple[QosRuleValue, ...] = ()
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class QosPolicyPush:
    """``push`` of QosPolicy objects (rules changed, policy deleted), or a pull's answer."""

    event_type: str
    policies: tuple[QosPolicyValue, ...]


def qos_rule(primitive: Any, policy_id: str) -> QosRuleValue:
    name = primitive.get(_NAME) if isinstance(primitive, Mapping) else None
    rule_type = RULE_TYPES.get(name) if isinstance(name, str) else None
    if rule_type is None:
        # a rule type this version of aovs does not know: kept, so it is reported, not ignored
        if not isinstance(name, str) or not name.startswith("Qos") or not name.endswith("Rule"):
            raise ValueError(f"QosPolicy {policy_id}: a rule is a {name!r:.60}")
        rule_type = name.removeprefix("Qos").removesuffix("Rule")
    data = object_data(primitive, str(name))
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise ValueError(f"QosPolicy {policy_id}: a {rule_type} rule without an id")
    direction = data.get("direction", "egress")
    if direction not in DIRECTIONS:
        raise ValueError(f"QosPolicy {policy_id}: rule {rule_id} direction {direction!r:.20}")
    numbers: dict[str, int | None] = {}
    for key in _RULE_INTEGERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"QosPolicy {policy_id}: rule {rule_id} {key} is not an integer")
        if value is not None and value < 0:
            raise ValueError(f"QosPolicy {policy_id}: rule {rule_id} {key} is negative")
        numbers[key] = value
    return QosRuleValue(rule_id, rule_type, str(direction), **numbers)


def qos_policy(primitive: Any) -> QosPolicyValue:
    data = object_data(primitive, QOS_POLICY)
    policy_id = _string(data, "id", QOS_POLICY)
    rules = _list(data, "rules", f"QosPolicy {policy_id}")
    parsed = tuple(sorted((qos_rule(r, policy_id) for r in rules), key=lambda r: r.id))
    return QosPolicyValue(policy_id, parsed, _revision(data, f"QosPolicy {policy_id}"))


def qos_policy_push(args: Mapping[str, Any]) -> QosPolicyPush:
    event_type, resources = _push_args(args)
    return QosPolicyPush(event_type, tuple(qos_policy(r) for r in resources))


# -- trunks -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SubPortValue:
    """A trunk's subport (``SubPort`` 1.0): its port, and the VLAN the VM tags its frames with.
    Keyed by its port id (neutron's primary key)."""

    port_id: str
    trunk_id: str
    segmentation_type: str
    segmentation_id: int
    revision: None = None  # SubPort has no revision_number

    @property
    def id(self) -> str:
        return self.port_id


@dataclass(frozen=True, slots=True)
class TrunkValue:
    """A trunk (``Trunk`` 1.1): its parent port and subports."""

    id: str
    port_id: str  # the parent port
    sub_ports: tuple[SubPortValue, ...] = ()
    status: str = ""
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class TrunkPush:
    """``push`` of Trunk objects (created, deleted), or a pull's answer."""

    event_type: str
    trunks: tuple[TrunkValue, ...]


@dataclass(frozen=True, slots=True)
class SubPortPush:
    """``push`` of SubPort objects: added to (created) or removed from (deleted) a trunk."""

    event_type: str
    subports: tuple[SubPortValue, ...]


def subport(primitive: Any) -> SubPortValue:
    data = object_data(primitive, SUBPORT)
    port_id = _string(data, "port_id", SUBPORT)
    trunk_id = _string(data, "trunk_id", f"SubPort {port_id}")
    seg_type = _string(data, "segmentation_type", f"SubPort {port_id}")
    seg_id = data.get("segmentation_id")
    if isinstance(seg_id, bool) or not isinstance(seg_id, int) or not 1 <= seg_id <= 4094:
        raise ValueError(f"SubPort {port_id}: segmentation_id {seg_id!r:.20} is no VLAN id")
    return SubPortValue(port_id, trunk_id, seg_type, seg_id)


def trunk(primitive: Any) -> TrunkValue:
    data = object_data(primitive, TRUNK)
    trunk_id = _string(data, "id", TRUNK)
    port_id = _string(data, "port_id", f"Trunk {trunk_id}")
    subports = _list(data, "sub_ports", f"Trunk {trunk_id}")
    parsed = tuple(sorted((subport(s) for s in subports), key=lambda s: s.port_id))
    status = data.get("status", "")
    return TrunkValue(trunk_id, port_id, parsed, str(status or ""),
                      _revision(data, f"Trunk {trunk_id}"))  # fmt: skip


def trunk_push(args: Mapping[str, Any]) -> TrunkPush:
    event_type, resources = _push_args(args)
    return TrunkPush(event_type, tuple(trunk(r) for r in resources))


def subport_push(args: Mapping[str, Any]) -> SubPortPush:
    event_type, resources = _push_args(args)
    return SubPortPush(event_type, tuple(subport(r) for r in resources))


ResourcePush: TypeAlias = AddressGroupPush | QosPolicyPush | TrunkPush | SubPortPush
ResourceValue: TypeAlias = AddressGroupValue | QosPolicyValue | TrunkValue | SubPortValue
PUSH_PARSERS: Mapping[str, Callable[[Mapping[str, Any]], ResourcePush]] = {
    ADDRESS_GROUP: address_group_push,
    QOS_POLICY: qos_policy_push,
    TRUNK: trunk_push,
    SUBPORT: subport_push,
}
VALUE_PARSERS: Mapping[str, Callable[[Any], ResourceValue]] = {
    ADDRESS_GROUP: address_group,
    QOS_POLICY: qos_policy,
    TRUNK: trunk,
    SUBPORT: subport,
}


def push_values(push: ResourcePush) -> tuple[str, tuple[ResourceValue, ...]]:
    """(resource type, the objects) of a push."""
    if isinstance(push, AddressGroupPush):
        return ADDRESS_GROUP, push.groups
    if isinstance(push, TrunkPush):
        return TRUNK, push.trunks
    if isinstance(push, SubPortPush):
        return SUBPORT, push.subports
    return QOS_POLICY, push.policies


def with_subports(known: TrunkValue, push: SubPortPush) -> TrunkValue:
    """``known`` after a SubPort push about it: neutron pushes the subports added to or removed
    from a trunk, never the trunk again, so the cache folds them into the trunk's value."""
    mine = {s.port_id: s for s in push.subports if s.trunk_id == known.id}
    kept = [s for s in known.sub_ports if s.port_id not in mine]
    if push.event_type != "deleted":
        kept.extend(mine.values())
    return TrunkValue(known.id, known.port_id, tuple(sorted(kept, key=lambda s: s.port_id)),
                      known.status, known.revision)  # fmt: skip


# -- the cache ---------------------------------------------------------------------------------
class ResourceCache:
    """The agent's one cache of neutron's versioned objects, by (type, id): what pushes and
    pulls said last. An older revision never replaces a newer one (pushes may arrive out of
    order); a deletion forgets the object. Pure: the agent core owns it."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], ResourceValue] = {}

    def get(self, resource_type: str, resource_id: str) -> ResourceValue | None:
        return self._objects.get((resource_type, resource_id))

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def of_type(self, resource_type: str) -> dict[str, ResourceValue]:
        return {rid: v for (kind, rid), v in self._objects.items() if kind == resource_type}

    def apply(self, push: ResourcePush) -> list[str]:
        """Record a push (or a pull's answer); the ids whose value changed."""
        resource_type, values = push_values(push)
        changed = []
        if isinstance(push, SubPortPush):  # kept in their trunk's value, not on their own
            for trunk_id in sorted({s.trunk_id for s in push.subports}):
                known_trunk = self._objects.get((TRUNK, trunk_id))
                if isinstance(known_trunk, TrunkValue):
                    updated = with_subports(known_trunk, push)
                    if updated != known_trunk:
                        self._objects[(TRUNK, trunk_id)] = updated
                        changed.append(trunk_id)
            return changed
        for value in values:
            key = (resource_type, value.id)
            known = self._objects.get(key)
            if push.event_type == "deleted":
                if self._objects.pop(key, None) is not None:
                    changed.append(value.id)
                continue
            if (
                known is not None
                and value.revision is not None
                and known.revision is not None
                and value.revision < known.revision
            ):
                continue  # an older push, late
            if known != value:
                self._objects[key] = value
                changed.append(value.id)
        return changed

    def __len__(self) -> int:
        return len(self._objects)


# -- pull --------------------------------------------------------------------------------------
async def bulk_pull(
    transport: RpcTransport,
    resource_type: str,
    resource_ids: Collection[str],
    *,
    timeout: float,  # noqa: ASYNC109 -- also the message's expiration on the wire
) -> ResourcePush:
    """neutron's ``bulk_pull(resource_type, version, filter_kwargs={"id": ids})``: the objects
    that exist, as an "updated" push; those the server does not return come back as a
    "deleted" push of empty values (so the cache and the ports waiting for them settle).
    Raises RpcError (the caller retries) or ValueError (a malformed answer)."""
    version = CONSUMED_RESOURCES[resource_type]
    ids = sorted(set(resource_ids))
    reply = await transport.call(
        PULL_TOPIC,
        "bulk_pull",
        {"resource_type": resource_type, "version": version, "filter_kwargs": {"id": ids}},
        version=PULL_RPC_VERSION,
        timeout=timeout,
    )
    if not isinstance(reply, list):
        raise ValueError(f"bulk_pull {resource_type} answered a {type(reply).__name__}")
    parse = VALUE_PARSERS[resource_type]
    found = [parse(primitive) for primitive in reply]
    return _as_push(resource_type, "updated", found)


async def pull(
    transport: RpcTransport,
    resource_type: str,
    resource_id: str,
    *,
    timeout: float,  # noqa: ASYNC109 -- also the message's expiration on the wire
) -> ResourcePush:
    """neutron's ``pull(resource_type, version, resource_id)``: one object, as an "updated"
    push, or a "deleted" one when the server has no such object (ResourceNotFound)."""
    version = CONSUMED_RESOURCES[resource_type]
    try:
        primitive = await transport.call(
            PULL_TOPIC,
            "pull",
            {"resource_type": resource_type, "version": version, "resource_id": resource_id},
            version=PULL_RPC_VERSION,
            timeout=timeout,
        )
    except RemoteError as exc:
        if exc.exc_type != "ResourceNotFound":
            raise
        primitive = None
    if primitive is None:
        return _as_push(resource_type, "deleted", [_empty(resource_type, resource_id)])
    return _as_push(resource_type, "updated", [VALUE_PARSERS[resource_type](primitive)])


def missing_as_deleted(
    resource_type: str, wanted: Iterable[str], answer: ResourcePush
) -> ResourcePush:
    """The ids of ``wanted`` that ``answer`` lacks, as a "deleted" push."""
    found = {value.id for value in push_values(answer)[1]}
    gone = [_empty(resource_type, rid) for rid in sorted(set(wanted) - found)]
    return _as_push(resource_type, "deleted", gone)


def _empty(resource_type: str, resource_id: str) -> ResourceValue:
    if resource_type == ADDRESS_GROUP:
        return AddressGroupValue(resource_id, frozenset())
    if resource_type == TRUNK:
        return TrunkValue(resource_id, "")
    if resource_type == SUBPORT:
        return SubPortValue(resource_id, "", "vlan", 1)
    return QosPolicyValue(resource_id)


def _as_push(resource_type: str, event_type: str, values: list[ResourceValue]) -> ResourcePush:
    if resource_type == ADDRESS_GROUP:
        groups = tuple(v for v in values if isinstance(v, AddressGroupValue))
        return AddressGroupPush(event_type, groups)
    if resource_type == TRUNK:
        return TrunkPush(event_type, tuple(v for v in values if isinstance(v, TrunkValue)))
    if resource_type == SUBPORT:
        return SubPortPush(event_type, tuple(v for v in values if isinstance(v, SubPortValue)))
    policies = tuple(v for v in values if isinstance(v, QosPolicyValue))
    return QosPolicyPush(event_type, policies)


class _PushEndpoint:
    """neutron's ResourcesPushRpcCallback: ``push(resource_list, event_type)``."""

    rpc_version = PUSH_RPC_VERSION

    def __init__(
        self,
        resource_type: str,
        deliver: Callable[[ResourcePush], None],
        on_malformed: Callable[[], None],
    ) -> None:
        self._resource_type = resource_type
        self._parse = PUSH_PARSERS[resource_type]
        self._deliver = deliver
        self._on_malformed = on_malformed

    def push(self, _context: Mapping[str, Any], **args: Any) -> None:
        try:
            event = self._parse(args)
        except (ValueError, TypeError) as exc:
            self._on_malformed()
            LOG.warning("dropped malformed %s push: %s", self._resource_type, exc)
            return
        self._deliver(event)


class ResourcePushConsumer:
    """Listens on ``neutron-vo-<Type>-<version>`` for every consumed type; calls ``deliver``
    with one typed event per push, in the order of delivery."""

    def __init__(
        self,
        transport: RpcTransport,
        host: str,
        deliver: Callable[[ResourcePush], None],
        *,
        resources: Mapping[str, str] = CONSUMED_RESOURCES,
    ) -> None:
        self.transport = transport
        self.host = host
        self.resources = dict(resources)
        self.malformed = 0
        self._deliver = deliver
        self._servers: list[RpcServer] = []

    def _count_malformed(self) -> None:
        self.malformed += 1

    async def start(self) -> None:
        for resource_type, version in self.resources.items():
            endpoint = _PushEndpoint(resource_type, self._deliver, self._count_malformed)
            topic = resource_topic(resource_type, version)
            self._servers.append(await self.transport.serve(topic, self.host, [endpoint]))

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers.clear()
