"""Observability: Prometheus ``/metrics``, ``/healthz``, and the status socket of ``aovs status``.

A standalone adapter: it knows nothing of the agent's internals; the agent reports events to it
through the small typed API below, and the operator reads them over HTTP or the unix socket.

Integration (all calls are synchronous, cheap, and safe on the event loop)::

    from aovs.observability import (
        AgentMetrics, HealthState, ObservabilityServer, ReportedPortState, RpcOutcome, StatusServer,
        System, collect_status, default_socket_path,
    )

    health = HealthState()
    metrics = AgentMetrics(health)             # its own registry; also exports connection gauges
    started = time.time()

    # on start: declare every connection as down, so /healthz is 503 until each one is up
    health.set_connected(System.OVSDB, False)
    health.set_connected(System.RABBITMQ, False)
    for bridge in bridges:
        health.set_connected(System.OPENFLOW, False, bridge=bridge)

    # as things happen
    health.set_connected(System.OPENFLOW, True, bridge="br-int")
    metrics.reconnect(System.OPENFLOW, bridge="br-int")      # on every RE-connection
    metrics.port_transition(iface_id, ReportedPortState.WIRED, seconds=0.012, ofport=7)
    metrics.port_transition(iface_id, ReportedPortState.REMOVED)  # leaves the gauge and the table
    metrics.bundle_committed("br-int", flowmods=31, seconds=0.004)
    metrics.bundle_failed("br-int")
    metrics.rpc_call("get_devices_details_list_and_failed_devices", 0.08, RpcOutcome.OK)
    metrics.full_sync_done()

    # servers (both async context managers; start()/close() also work)
    status = StatusServer(
        default_socket_path(cfg), lambda: collect_status(cfg.host, started, metrics, health)
    )
    if cfg.agent.metrics_bind:                  # off by default
        http = ObservabilityServer(cfg.agent.metrics_bind, metrics, health)

Neither server raises out of a request handler: a malformed request gets an error response and
one warning log line. ``aovs status`` talks to :class:`StatusServer` (protocol in
:mod:`aovs.observability.status_protocol`); the container's HEALTHCHECK runs
``aovs status --health``.
"""

from __future__ import annotations

from pathlib import Path

from aovs.config import AgentConfig
from aovs.observability.collect import collect_status
from aovs.observability.health import HealthState
from aovs.observability.http_server import ObservabilityServer
from aovs.observability.metrics import AgentMetrics, RpcOutcome
from aovs.observability.status import (
    AgentStatus,
    ConnectionStatus,
    HealthReport,
    PortStatus,
    PortTransition,
    ReportedPortState,
    System,
)
from aovs.observability.status_server import StatusServer, StatusServerError

SOCKET_NAME = "aovs.sock"


def default_socket_path(cfg: AgentConfig) -> Path:
    """``<state_path>/aovs.sock``: where the agent listens and ``aovs status`` looks."""
    return cfg.agent.state_path / SOCKET_NAME


__all__ = [
    "AgentMetrics",
    "AgentStatus",
    "ConnectionStatus",
    "HealthReport",
    "HealthState",
    "ObservabilityServer",
    "PortStatus",
    "PortTransition",
    "ReportedPortState",
    "RpcOutcome",
    "StatusServer",
    "StatusServerError",
    "System",
    "collect_status",
    "default_socket_path",
]
