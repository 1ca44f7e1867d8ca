"""The agent's events, told to :mod:`aovs.observability` (metrics, health, the status socket).

The shell calls these as things happen; each call is O(1) and does no I/O, so a VM reboot's
milliseconds are not spent here. Connections are declared down at construction: ``/healthz``
stays 503 until each one (OVSDB, RabbitMQ, OpenFlow per bridge) has really come up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aovs.agent.core import Transition
from aovs.config import AgentConfig
from aovs.observability import (
    AgentMetrics,
    AgentStatus,
    HealthState,
    ObservabilityServer,
    ReportedPortState,
    RpcOutcome,
    StatusServer,
    StatusServerError,
    System,
    collect_status,
    default_socket_path,
)
from aovs.openflow.channel import ChannelEvent, Connected
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import RpcError, RpcTimeout

LOG = logging.getLogger("aovs.agent")

REMOVED_EVENT = "removed"  # AgentCore's event for a port gone from OVSDB

RpcObserver = Callable[[str, float, RpcOutcome], None]


class AgentTelemetry:
    """Health and metrics of one agent run, and the servers that show them."""

    def __init__(self, config: AgentConfig, bridges: tuple[str, ...]) -> None:
        self.config = config
        self.health = HealthState()
        self.metrics = AgentMetrics(self.health)
        self.started_at = time.time()
        self.health.set_connected(System.OVSDB, False)
        self.health.set_connected(System.RABBITMQ, False)
        for bridge in bridges:
            self.health.set_connected(System.OPENFLOW, False, bridge=bridge)
        self._sessions: dict[System, int] = {System.OVSDB: 0, System.RABBITMQ: 0}
        self._openflow_up: set[str] = set()  # bridges connected at least once
        self._status: StatusServer | None = None
        self._http: ObservabilityServer | None = None

    # -- servers ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """The status socket always, ``/metrics`` when ``metrics_bind`` is set. Neither failing
        stops the agent: the dataplane matters more than its dashboard (one error line)."""
        status = StatusServer(default_socket_path(self.config), self.status)
        try:
            await status.start()
            self._status = status
        except (StatusServerError, OSError) as exc:
            LOG.error("status socket not started", extra={"error": str(exc)})
        bind = self.config.agent.metrics_bind
        if bind:
            http = ObservabilityServer(bind, self.metrics, self.health)
            try:
                await http.start()
                self._http = http
            except OSError as exc:
                LOG.error("metrics endpoint not started", extra={"bind": bind, "error": str(exc)})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._status is not None:
            await self._status.close()
            self._status = None

    @property
    def metrics_port(self) -> int | None:
        """The bound ``/metrics`` port (tests bind port 0), None when not serving."""
        return self._http.port if self._http is not None else None

    def status(self) -> AgentStatus:
        return collect_status(self.config.host, self.started_at, self.metrics, self.health)

    # -- events ----------------------------------------------------------------------------------
    def port_transition(self, transition: Transition, seconds: float) -> None:
        """``seconds``: event to commit. Observed only when the port's flows changed in that
        commit (what the latency means); other transitions only move the port's state."""
        if transition.event == REMOVED_EVENT:
            self.metrics.port_transition(transition.iface_id, ReportedPortState.REMOVED)
            return
        self.metrics.port_transition(
            transition.iface_id,
            ReportedPortState(transition.phase.value),
            seconds=seconds if transition.flows_changed else None,
            ofport=transition.ofport,
            reason=transition.reason,
        )

    def openflow_event(self, bridge: str, event: ChannelEvent) -> None:
        connected = isinstance(event, Connected)
        self.health.set_connected(System.OPENFLOW, connected, bridge=bridge)
        if connected:
            if bridge in self._openflow_up:
                self.metrics.reconnect(System.OPENFLOW, bridge=bridge)
            self._openflow_up.add(bridge)

    def session_state(self, system: System, connected: bool, sessions: int) -> None:
        """A sampled connection (OVSDB, RabbitMQ): up or not, and how many sessions it has had
        so far; every session after the first is a reconnect."""
        self.health.set_connected(system, connected)
        seen = self._sessions[system]
        if sessions > seen:
            for _ in range(max(0, sessions - max(seen, 1))):
                self.metrics.reconnect(system)
            self._sessions[system] = sessions


class MeteredRpcTransport(RpcTransport):
    """An :class:`RpcTransport` whose every call to neutron-server is timed and counted.

    Metering the one call path sees each real request (a details batch, a heartbeat, a
    device report) with its exact outcome, which the API's callers cannot: a details fetch
    turns a failed batch into failed devices and never raises.
    """

    def __init__(self, transport_url: str, observe: RpcObserver, **options: Any) -> None:
        super().__init__(transport_url, **options)
        self._observe = observe

    async def call(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        version: str,
        timeout: float,  # noqa: ASYNC109 -- the base class's, on the wire too
        **options: Any,
    ) -> Any:
        started = time.monotonic()
        try:
            result = await super().call(
                topic, method, args, version=version, timeout=timeout, **options
            )
        except RpcTimeout:
            self._observe(method, time.monotonic() - started, RpcOutcome.TIMEOUT)
            raise
        except RpcError:  # the server raised, or the broker went away mid-call
            self._observe(method, time.monotonic() - started, RpcOutcome.ERROR)
            raise
        self._observe(method, time.monotonic() - started, RpcOutcome.OK)
        return result
