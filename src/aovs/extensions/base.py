"""The agent extension contract: what the agent gives an extension and what it gets back.

neutron's L2 agent extensions (``[agent] extensions = qos, ...``) get ``handle_port`` /
``delete_port`` calls and write to OVS themselves. In aovs an extension is a pure function
object, like a firewall driver: for a port wired on this host (its details, ofport, local VLAN)
and the agent's one cache of neutron's versioned objects (:class:`aovs.rpc.resources.
ResourceCache`), it says what the port needs: flows on br-int (owned with the port's own flows,
so they land in the same bundle and go with it), values of Interface columns (written by the
agent, in one OVSDB transaction after the bundle), the objects it read (the agent pulls those it
lacks and recomputes the port whenever a push changes one), and what it could not apply.

The agent asks again whenever anything about the port changes (wired with its details, details
updated, a policy pushed, a re-plug with a new ofport), and withdraws the contribution when the
port is no longer wired (removed, dead): its flows are deleted with the port's, its Interface
columns set back to the extension's neutral values. An extension never touches OVS itself.

Extensions are found by name: the built-ins (:data:`BUILTIN_EXTENSIONS`), else an installed
distribution's ``aovs.agent.extensions`` entry point (a class, instantiated without arguments).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from aovs.model import PortDetails
from aovs.openflow.flows import Flow, Meter
from aovs.plugins import plugin_names, start_plugin
from aovs.rpc.resources import ResourceCache

ENTRY_POINT_GROUP = "aovs.agent.extensions"
BUILTIN_EXTENSIONS: Mapping[str, str] = {
    "qos": "aovs.extensions.qos:QosExtension",
    "trunk": "aovs.extensions.trunk:TrunkExtension",
}

ResourceKey = tuple[str, str]  # (resource type, id), e.g. ("QosPolicy", "<uuid>")
InterfaceColumns = Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ExtensionPort:
    """A wired port as an extension sees it."""

    iface_id: str
    name: str | None  # the Interface (tap) name; None while its row is gone (unplug grace)
    ofport: int
    details: PortDetails
    local_vlan: int


@dataclass(frozen=True, slots=True)
class MinBandwidthQueue:
    """A port's egress queue on the physical bridges' NICs (neutron's minimum_bandwidth): one
    Queue row per port, all of them in the one linux-htb QoS row of those NICs; written by the
    agent (aovs.extensions.queue_writes), in one OVSDB transaction after the bundle."""

    port_id: str
    queue_num: int  # the port's ofport, as neutron numbers it (its br-int flow sets it)
    min_kbps: int


@dataclass(frozen=True, slots=True)
class PortContribution:
    """What one port needs from one extension (or from all of them, :func:`combine`)."""

    # br-int flows, owned with the port's own flows; never equal to one of those (a push
    # replaces the contribution's flows alone: see AgentCore._refresh_contributions)
    flows: frozenset[Flow] = frozenset()
    interface: Mapping[str, int] = field(default_factory=dict)  # Interface columns to set
    needs: frozenset[ResourceKey] = frozenset()  # objects read: pulled when missing
    problems: tuple[str, ...] = ()  # what could not be applied, one line each
    queue: MinBandwidthQueue | None = None  # its minimum-bandwidth egress queue
    # br-int meters its flows name (ApplyMeter): sent before the bundle that adds those flows,
    # deleted after the one that removes them (aovs.openflow.meters); ids unique per bridge
    meters: frozenset[Meter] = frozenset()

    def __bool__(self) -> bool:
        return bool(
            self.flows or self.interface or self.needs or self.problems or self.queue is not None
            or self.meters
        )  # fmt: skip


NOTHING = PortContribution()


@runtime_checkable
class AgentExtension(Protocol):
    """What the agent calls; ``port_contribution`` is pure and deterministic."""

    name: ClassVar[str]
    # the versioned-object types it reads: the agent consumes (and reports) them for it
    resource_types: ClassVar[frozenset[str]]
    # the Interface columns it may set, with their neutral values (what a port without its
    # contribution gets back)
    interface_columns: ClassVar[InterfaceColumns]

    # Optional, not part of the protocol: ``uses_meters: ClassVar[bool] = True`` makes the
    # agent reconcile br-int's meters (every meter there is then the agent's: the ones no
    # contribution names are deleted), as the contributions' ``meters`` say.

    def port_contribution(self, port: ExtensionPort, resources: ResourceCache) -> PortContribution:
        """What ``port`` needs now, given what the cache holds."""
        ...


def combine(contributions: Iterable[PortContribution]) -> PortContribution:
    """Several extensions' contributions to one port as one."""
    parts = [c for c in contributions if c]
    if not parts:
        return NOTHING
    if len(parts) == 1:
        return parts[0]
    interface: dict[str, int] = {}
    for part in parts:
        interface.update(part.interface)
    queues = [p.queue for p in parts if p.queue is not None]
    return PortContribution(
        flows=frozenset().union(*(p.flows for p in parts)),
        interface=interface,
        needs=frozenset().union(*(p.needs for p in parts)),
        problems=tuple(problem for p in parts for problem in p.problems),
        queue=queues[-1] if queues else None,  # one queue per port: the last extension's
        meters=frozenset().union(*(p.meters for p in parts)),
    )


def neutral_columns(extensions: Sequence[AgentExtension]) -> dict[str, int]:
    """Every Interface column the extensions manage, at its neutral value."""
    columns: dict[str, int] = {}
    for extension in extensions:
        columns.update(extension.interface_columns)
    return columns


class ExtensionError(LookupError):
    """An extension could not be found or loaded; the message says what is available."""


def available_extensions() -> list[str]:
    """Names :func:`load_extensions` accepts: the built-ins and every installed entry point."""
    return plugin_names(BUILTIN_EXTENSIONS, ENTRY_POINT_GROUP)


def unknown_extensions(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that no built-in or entry point provides."""
    available = set(available_extensions())
    return [name for name in names if name not in available]


def load_extension(name: str) -> AgentExtension:
    """Instantiate the extension called ``name``."""
    extension = start_plugin(name, BUILTIN_EXTENSIONS, ENTRY_POINT_GROUP, kind="agent extension",
                             error=ExtensionError)  # fmt: skip
    if not isinstance(extension, AgentExtension):
        raise ExtensionError(
            f"agent extension {name!r} ({type(extension)!r}) does not implement AgentExtension "
            "(name, resource_types, interface_columns, port_contribution)"
        )
    return extension


def load_extensions(names: Iterable[str]) -> tuple[AgentExtension, ...]:
    """``[agent] extensions``, in order, each once."""
    loaded: list[AgentExtension] = []
    seen: set[str] = set()
    for name in names:
        if name not in seen:
            seen.add(name)
            loaded.append(load_extension(name))
    return tuple(loaded)
