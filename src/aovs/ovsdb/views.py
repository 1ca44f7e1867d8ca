"""Typed views of the rows the agent consumes: Interface first, then Port and Bridge.

``AGENT_MONITOR`` is the monitor the agent opens (no condition: it needs tunnel and patch
Interfaces too, which carry no ``iface-id``). ``AGENT_TABLES``/``AGENT_WHERE`` are a wider,
VM-port-centric monitor (Port.tag, Bridge; Interfaces with an ``iface-id``) that the OVSDB tests
and benchmarks exercise; the agent does not use it. ``Interface.from_row`` etc. turn a
:class:`~aovs.ovsdb.rows.Row` from a monitor (or an event's ``old``/``new``) into a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aovs.ovsdb.conditions import Condition, HasKey
from aovs.ovsdb.datum import Uuid
from aovs.ovsdb.rows import Row

OFPORT_FAILED: Final = -1

INTERFACE_COLUMNS: Final = ("name", "ofport", "external_ids", "type")
PORT_COLUMNS: Final = ("name", "tag", "other_config", "interfaces")
BRIDGE_COLUMNS: Final = ("name", "datapath_id", "ports")

AGENT_TABLES: Final[Mapping[str, tuple[str, ...]]] = {
    "Interface": INTERFACE_COLUMNS,
    "Port": PORT_COLUMNS,
    "Bridge": BRIDGE_COLUMNS,
}
AGENT_WHERE: Final[Mapping[str, Condition]] = {"Interface": HasKey("external_ids", "iface-id")}

# What aovs.agent.agent monitors.
AGENT_MONITOR: Final[Mapping[str, tuple[str, ...]]] = {
    "Interface": INTERFACE_COLUMNS,
    # Port.tag is read once at start (the agent's _port_tags), not monitored: the ovsdb cache
    # rejects update2's new-value diff of an optional column (4095 -> 5) and resets the session.
    "Port": ("name", "other_config", "interfaces"),
}


@dataclass(frozen=True, slots=True)
class Interface:
    uuid: Uuid
    name: str
    type: str
    ofport: int | None  # None while ovs-vswitchd has not assigned one yet; -1 if it failed
    external_ids: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Row) -> Interface:
        return cls(row.uuid, row["name"], row["type"], row["ofport"], row["external_ids"])

    @property
    def iface_id(self) -> str | None:
        return self.external_ids.get("iface-id")

    @property
    def attached_mac(self) -> str | None:
        return self.external_ids.get("attached-mac")

    @property
    def vm_uuid(self) -> str | None:
        return self.external_ids.get("vm-uuid")

    @property
    def ofport_ready(self) -> bool:
        """Wired by ovs-vswitchd: a real port number (not unassigned, not failed)."""
        return self.ofport is not None and self.ofport > 0


@dataclass(frozen=True, slots=True)
class Port:
    uuid: Uuid
    name: str
    tag: int | None
    other_config: Mapping[str, str]
    interfaces: frozenset[Uuid]

    @classmethod
    def from_row(cls, row: Row) -> Port:
        return cls(row.uuid, row["name"], row["tag"], row["other_config"], row["interfaces"])


@dataclass(frozen=True, slots=True)
class Bridge:
    uuid: Uuid
    name: str
    datapath_id: str | None
    ports: frozenset[Uuid]

    @classmethod
    def from_row(cls, row: Row) -> Bridge:
        return cls(row.uuid, row["name"], row["datapath_id"], row["ports"])
