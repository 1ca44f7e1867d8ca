"""neutron's resource push RPC (``neutron-vo-<Type>-<version>``): versioned objects, parsed.

neutron 29's server pushes every create/update/delete of the resources agents consume as
oslo.versionedobjects primitives on the fanout exchange ``neutron-vo-<Type>-<version>_fanout``
(``ResourcesPushRpcApi``, method ``push(resource_list, event_type)``, version 1.1), at its own
version of each type and at every version an agent reported in ``resource_versions``.

Some changes reach agents ONLY this way: an address group's add_addresses / remove_addresses
has no legacy notification. aovs consumes the types in :data:`CONSUMED_RESOURCES` (and reports
exactly these versions, so a newer server keeps pushing the version aovs parses); everything
else comes through the legacy calls (``get_devices_details_list_and_failed_devices``,
``security_group_info_for_devices``) and notifications.

A primitive is ``{"versioned_object.name", ".namespace", ".version", ".data", ".changes"}``;
nested objects are primitives too. Parsing never trusts the sender: a malformed object raises
ValueError with a one-line reason (the consumer logs and drops it).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aovs.rpc.amqp import RpcServer, RpcTransport

LOG = logging.getLogger(__name__)

ADDRESS_GROUP = "AddressGroup"
# resource type -> the version aovs parses (neutron 29's own, objects/address_group.py)
CONSUMED_RESOURCES: Mapping[str, str] = {ADDRESS_GROUP: "1.2"}
PUSH_RPC_VERSION = "1.1"  # ResourcesPushRpcCallback's target
EVENT_TYPES = frozenset({"created", "updated", "deleted"})

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


def address_group(primitive: Any) -> AddressGroupValue:
    data = object_data(primitive, ADDRESS_GROUP)
    group_id = data.get("id")
    if not isinstance(group_id, str) or not group_id:
        raise ValueError("AddressGroup without an id")
    associations = data.get("addresses", [])
    if not isinstance(associations, list):
        raise ValueError(f"AddressGroup {group_id}: addresses is not a list")
    addresses = set()
    for association in associations:
        address = object_data(association, "AddressAssociation").get("address")
        if not isinstance(address, str):
            raise ValueError(f"AddressGroup {group_id}: an address is not a string")
        try:
            addresses.add(str(ipaddress.ip_network(address, strict=False)))
        except ValueError:
            raise ValueError(f"AddressGroup {group_id}: {address!r:.60} is no CIDR") from None
    revision = data.get("revision_number")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise ValueError(f"AddressGroup {group_id}: revision_number is not an integer")
    return AddressGroupValue(group_id, frozenset(addresses), revision)


def address_group_push(args: Mapping[str, Any]) -> AddressGroupPush:
    event_type = args.get("event_type")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"push event_type {event_type!r:.40} is not one of {sorted(EVENT_TYPES)}")
    resources = args.get("resource_list")
    if not isinstance(resources, list):
        raise ValueError("push without a resource_list")
    return AddressGroupPush(str(event_type), tuple(address_group(r) for r in resources))


ResourcePush = AddressGroupPush
PUSH_PARSERS: Mapping[str, Callable[[Mapping[str, Any]], ResourcePush]] = {
    ADDRESS_GROUP: address_group_push,
}


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
