"""Which of the agent's connections are up: the state behind ``/healthz`` and ``status --health``.

The agent declares every connection it needs by reporting it (down at first, then up), so a
connection it has not reached yet counts as down instead of being silently absent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aovs.observability.status import ConnectionStatus, HealthReport, System

Clock = Callable[[], float]


class HealthState:
    """Connection states keyed by (system, bridge). Cheap to update from the event loop."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._links: dict[tuple[System, str | None], ConnectionStatus] = {}

    def set_connected(self, system: System, connected: bool, bridge: str | None = None) -> None:
        """Record a connection's state; OpenFlow connections name their bridge."""
        if (system is System.OPENFLOW) != (bridge is not None):
            raise ValueError(f"{system}: a bridge is required for openflow and only for it")
        key = (system, bridge)
        current = self._links.get(key)
        if current is not None and current.connected == connected:
            return  # keep `since` at the real change
        self._links[key] = ConnectionStatus(
            system=system, bridge=bridge, connected=connected, since=self._clock()
        )

    def forget(self, system: System, bridge: str | None = None) -> None:
        """Stop expecting a connection (e.g. a bridge removed from the configuration)."""
        self._links.pop((system, bridge), None)

    def report(self) -> HealthReport:
        links = tuple(sorted(self._links.values(), key=lambda c: (c.system, c.bridge or "")))
        down = tuple(c.name for c in links if not c.connected)
        return HealthReport(healthy=bool(links) and not down, down=down, connections=links)
