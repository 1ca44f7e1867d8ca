"""What the agent reports about itself: typed, JSON-ready values shared by /healthz and `status`.

These are the wire format of the status socket (``aovs status --json`` prints them as they are),
so they are versioned by :data:`STATUS_PROTOCOL_VERSION` and only ever grow optional fields.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

STATUS_PROTOCOL_VERSION = 1


class ReportedPortState(enum.StrEnum):
    """Where a VM port is in its life on this host, as the agent sees it.

    The first four are the agent's port phases (``aovs.agent.state.PortPhase``, same values):
    ``pending``: in OVSDB, waiting for neutron-server's details; ``wired``: its flows are
    committed; ``dead``: on the dead VLAN (admin down, unknown to neutron-server, bound
    elsewhere); ``failed``: cannot be wired (ofport -1, bad details, a bundle refused).
    ``removed``: gone from OVSDB: the port's last transition, after which it is forgotten.
    """

    PENDING = "pending"
    WIRED = "wired"
    DEAD = "dead"
    FAILED = "failed"
    REMOVED = "removed"


class System(enum.StrEnum):
    """An external system the agent needs a live connection to."""

    OVSDB = "ovsdb"
    OPENFLOW = "openflow"  # one connection per bridge
    RABBITMQ = "rabbitmq"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PortTransition(_Value):
    """One port changing state. ``seconds``: how long it took (e.g. appeared -> wired), if known."""

    iface_id: str
    state: ReportedPortState
    at: float = Field(description="wall-clock time (unix seconds) of the transition")
    seconds: float | None = None
    ofport: int | None = None
    reason: str = ""


class PortStatus(_Value):
    """A port's current state and its last transition."""

    iface_id: str
    state: ReportedPortState
    ofport: int | None = None
    since: float = Field(description="wall-clock time of the last transition")
    last_seconds: float | None = Field(default=None, description="that transition's latency")
    reason: str = Field(default="", description="why dead or failed")


class ConnectionStatus(_Value):
    """One connection: ``name`` is ``ovsdb``, ``rabbitmq`` or ``openflow:<bridge>``."""

    system: System
    bridge: str | None = None
    connected: bool
    since: float = Field(description="wall-clock time of the last change")

    @property
    def name(self) -> str:
        return f"{self.system}:{self.bridge}" if self.bridge else str(self.system)


class HealthReport(_Value):
    """Healthy when at least one connection is known and every known connection is up."""

    healthy: bool
    down: tuple[str, ...] = ()
    connections: tuple[ConnectionStatus, ...] = ()

    def summary(self) -> str:
        """One line for operators (``aovs status --health``, the container's health log)."""
        if self.healthy:
            return "healthy: " + ", ".join(c.name for c in self.connections)
        if not self.connections:
            return "unhealthy: no connection established yet"
        return "unhealthy: down: " + ", ".join(self.down)


class AgentStatus(_Value):
    """The whole snapshot ``aovs status`` shows."""

    host: str
    started_at: float
    health: HealthReport
    ports: tuple[PortStatus, ...] = ()
    transitions: tuple[PortTransition, ...] = Field(
        default=(), description="the most recent port transitions, oldest first"
    )
    last_full_sync: float | None = None
