"""Assemble an :class:`AgentStatus` from the live observability state: the default provider."""

from __future__ import annotations

from aovs.observability.health import HealthState
from aovs.observability.metrics import AgentMetrics
from aovs.observability.status import AgentStatus


def collect_status(
    host: str, started_at: float, metrics: AgentMetrics, health: HealthState
) -> AgentStatus:
    return AgentStatus(
        host=host,
        started_at=started_at,
        health=health.report(),
        ports=metrics.ports.ports(),
        transitions=metrics.ports.recent(),
        last_full_sync=metrics.last_full_sync,
    )
