"""The agent's state as plain data: ports by iface-id, what OVSDB says, what neutron said.

Everything here is a value or a small mutable record owned by :class:`aovs.agent.core.AgentCore`;
nothing does I/O. Ports are keyed by ``external_ids:iface-id`` (neutron's port id), never by
ofport or Interface row: a VM reboot deletes the row and inserts a new one with a new ofport,
and it must be ONE transition of one port (the reboot bug family, LP 1645655 and friends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from aovs.model import PortDetails
from aovs.pipelines.tables import DEAD_VLAN_TAG


class PortPhase(StrEnum):
    PENDING = "pending"  # has an ofport, neutron's details not known yet: dead VLAN + drop
    WIRED = "wired"  # local VLAN, translation and firewall flows
    DEAD = "dead"  # admin down, unknown to neutron-server or bound elsewhere: dead VLAN + drop
    FAILED = "failed"  # cannot be wired (bad ofport, details, network); dead VLAN + drop/none


@dataclass(frozen=True, slots=True)
class InterfaceRow:
    """An OVSDB Interface row that carries ``external_ids:iface-id``."""

    uuid: str
    name: str
    iface_id: str
    ofport: int | None  # None: OVS has not assigned one yet; -1: OVS could not add it


@dataclass(frozen=True, slots=True)
class PortConfig:
    """What neutron writes on the OVSDB Port row: the local VLAN tag and ``other_config``."""

    tag: int
    other_config: tuple[tuple[str, str], ...] | None = None  # None: leave as it is

    @classmethod
    def dead(cls) -> PortConfig:
        return cls(tag=DEAD_VLAN_TAG)

    @classmethod
    def wired(cls, details: PortDetails, local_vlan: int) -> PortConfig:
        other = {"net_uuid": details.network_id, "network_type": details.network_type,
                 "tag": str(local_vlan)}  # fmt: skip
        if details.physical_network is not None:
            other["physical_network"] = details.physical_network
        if details.segmentation_id is not None:
            other["segmentation_id"] = str(details.segmentation_id)
        return cls(tag=local_vlan, other_config=tuple(sorted(other.items())))

    def satisfied_by(self, tag: int | None, other_config: dict[str, str]) -> bool:
        """True when a Port row with this tag and other_config needs no write."""
        if tag != self.tag:
            return False
        if self.other_config is None:
            return True
        return all(other_config.get(key) == value for key, value in self.other_config)


@dataclass(frozen=True, slots=True)
class CachedDetails:
    """neutron's details for a port; ``confirmed`` once the server said so in this run (details
    restored from the snapshot are used to wire at once, then confirmed or corrected)."""

    details: PortDetails
    confirmed: bool


@dataclass(slots=True)
class PortState:
    """One port (by iface-id) the agent is programming or has just stopped programming."""

    iface_id: str
    interface: InterfaceRow | None  # None while unplugged (flows kept for a short grace)
    ofport: int | None  # the ofport its flows are built for (may be the old one, see core)
    phase: PortPhase = PortPhase.PENDING
    reason: str = ""  # why DEAD or FAILED
    network_id: str | None = None  # set while the port holds its network's local VLAN
    unplugged_at: float | None = None
    since: float = 0.0  # when the change being processed began (for the transition log)
    plugs: int = 1  # Interface rows seen for this iface-id (a reboot makes it 2, 3, ...)
    notes: list[str] = field(default_factory=list)  # what happened since the last flush

    @property
    def name(self) -> str | None:
        return self.interface.name if self.interface is not None else None
