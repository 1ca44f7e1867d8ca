"""The agent's Prometheus metrics, in a registry of its own (one per agent, so tests are isolated).

Every method is a few dict operations: safe to call on the event loop's hot path. Names follow
Prometheus conventions (``_seconds``, ``_total``, base units); the list with meanings is in
docs/operations.md.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aovs.observability.health import HealthState
from aovs.observability.ports import PortLedger
from aovs.observability.status import PortTransition, ReportedPortState, System

# A port is wired in milliseconds when all is well and in seconds when neutron-server is slow.
PORT_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
# One port costs tens of flowmods; an OVS restart replays tens of thousands in one bundle.
BUNDLE_FLOWMOD_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000, 100_000, 500_000)
BUNDLE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# rpc_response_timeout is 60 s by default and backs off up to rpc_response_max_timeout (600 s).
RPC_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600)


class RpcOutcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # neutron-server answered with a remote exception
    TIMEOUT = "timeout"  # no answer within the call's timeout


class AgentMetrics:
    """Counters and histograms that matter to operators, plus the ports' ledger behind `status`."""

    def __init__(
        self,
        health: HealthState | None = None,
        recent_transitions: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self.ports = PortLedger(keep=recent_transitions, clock=clock)
        self.last_full_sync: float | None = None
        reg = self.registry
        ProcessCollector(registry=reg)
        reg.register(_PortsCollector(self.ports))
        if health is not None:
            reg.register(_ConnectionsCollector(health))
        self._transitions = Counter(
            "aovs_port_transitions", "Port state transitions, by new state.", ["state"],
            registry=reg,
        )  # fmt: skip
        self._port_seconds = Histogram(
            "aovs_port_wiring_seconds",
            "Time from a port's appearance (or change) in OVSDB to reaching this state.",
            ["state"], buckets=PORT_SECONDS_BUCKETS, registry=reg,
        )  # fmt: skip
        self._bundle_flowmods = Histogram(
            "aovs_bundle_flowmods", "Flowmods per committed OpenFlow bundle.", ["bridge"],
            buckets=BUNDLE_FLOWMOD_BUCKETS, registry=reg,
        )  # fmt: skip
        self._bundle_seconds = Histogram(
            "aovs_bundle_commit_seconds", "Time from a bundle's open to its commit reply.",
            ["bridge"], buckets=BUNDLE_SECONDS_BUCKETS, registry=reg,
        )  # fmt: skip
        self._bundle_failures = Counter(
            "aovs_bundle_failures", "Bundles discarded because the switch refused a flowmod.",
            ["bridge"], registry=reg,
        )  # fmt: skip
        self._rpc_seconds = Histogram(
            "aovs_rpc_call_seconds", "neutron-server RPC call latency (answered calls).",
            ["method"], buckets=RPC_SECONDS_BUCKETS, registry=reg,
        )  # fmt: skip
        self._rpc_calls = Counter(
            "aovs_rpc_calls", "neutron-server RPC calls, by outcome (ok, error, timeout).",
            ["method", "outcome"], registry=reg,
        )  # fmt: skip
        self._reconnects = Counter(
            "aovs_reconnects", "Connections re-established after a loss.", ["system", "bridge"],
            registry=reg,
        )  # fmt: skip
        self._full_syncs = Counter(
            "aovs_full_syncs", "Full resynchronisations with neutron-server and the switch.",
            registry=reg,
        )  # fmt: skip
        self._resource_updates = Counter(
            "aovs_resource_updates",
            "neutron versioned objects received into the resource cache, by type and source "
            "(push, pull; pull_failed counts objects asked for and not answered).",
            ["type", "source"], registry=reg,
        )  # fmt: skip
        # children per state made once: labels() costs more than the increment it leads to
        self._transitions_by_state = {
            state: self._transitions.labels(state) for state in ReportedPortState
        }
        self._port_seconds_by_state = {
            state: self._port_seconds.labels(state) for state in ReportedPortState
        }
        self._last_full_sync = Gauge(
            "aovs_last_full_sync_timestamp_seconds",
            "Unix time the last full resynchronisation finished (0: none yet).", registry=reg,
        )  # fmt: skip

    def port_transition(
        self,
        iface_id: str,
        state: ReportedPortState,
        seconds: float | None = None,
        ofport: int | None = None,
        reason: str = "",
    ) -> PortTransition:
        """A port reached ``state``; ``seconds`` is how long that took (observed when given),
        ``reason`` why it is dead or failed (shown by ``aovs status``, not a label)."""
        transition = self.ports.record(
            iface_id, state, seconds=seconds, ofport=ofport, reason=reason
        )
        self._transitions_by_state[state].inc()
        if seconds is not None:
            self._port_seconds_by_state[state].observe(seconds)
        return transition

    def bundle_committed(self, bridge: str, flowmods: int, seconds: float) -> None:
        self._bundle_flowmods.labels(bridge).observe(flowmods)
        self._bundle_seconds.labels(bridge).observe(seconds)

    def bundle_failed(self, bridge: str) -> None:
        self._bundle_failures.labels(bridge).inc()

    def rpc_call(self, method: str, seconds: float, outcome: RpcOutcome) -> None:
        """One neutron-server call. A timeout's latency is the timeout itself: not observed."""
        self._rpc_calls.labels(method, outcome).inc()
        if outcome is not RpcOutcome.TIMEOUT:
            self._rpc_seconds.labels(method).observe(seconds)

    def resource_updates(self, resource_type: str, source: str, count: int = 1) -> None:
        self._resource_updates.labels(resource_type, source).inc(count)

    def watch_extensions(
        self, names: Sequence[str], counts: Callable[[], Mapping[str, tuple[int, int]]]
    ) -> None:
        """``aovs_extension_enabled{extension}``, ``aovs_extension_ports{extension}`` and
        ``aovs_extension_problem_ports{extension}`` (``counts``: extension -> (ports it acts
        on, ports with a problem)), read at scrape time (the agent calls this once its core
        exists)."""
        self.registry.register(_ExtensionsCollector(tuple(names), counts))

    def reconnect(self, system: System, bridge: str | None = None) -> None:
        self._reconnects.labels(system, bridge or "").inc()

    def full_sync_done(self) -> None:
        self.last_full_sync = self._clock()
        self._full_syncs.inc()
        self._last_full_sync.set(self.last_full_sync)


class _PortsCollector(Collector):
    """``aovs_ports{state}`` read from the ledger at scrape time, so it can never drift."""

    def __init__(self, ledger: PortLedger) -> None:
        self._ledger = ledger

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "aovs_ports", "Ports known to the agent, by state.", labels=["state"]
        )
        for state, count in self._ledger.counts().items():
            family.add_metric([state], count)
        yield family


class _ExtensionsCollector(Collector):
    """The agent extensions in use, and how many ports have rules they could not apply."""

    def __init__(
        self, names: tuple[str, ...], counts: Callable[[], Mapping[str, tuple[int, int]]]
    ) -> None:
        self._names = names
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        enabled = GaugeMetricFamily(
            "aovs_extension_enabled", "1 per agent extension loaded ([agent] extensions).",
            labels=["extension"],
        )  # fmt: skip
        for name in self._names:
            enabled.add_metric([name], 1.0)
        yield enabled
        ports = GaugeMetricFamily(
            "aovs_extension_ports", "Ports an agent extension acts on (flows, meters, columns, "
            "queues; trunk: the trunks wired).", labels=["extension"],
        )  # fmt: skip
        problems = GaugeMetricFamily(
            "aovs_extension_problem_ports",
            "Ports with something an extension could not apply (logged per port; `aovs status`).",
            labels=["extension"],
        )
        counts = self._counts()
        for name in self._names:
            acting, troubled = counts.get(name, (0, 0))
            ports.add_metric([name], float(acting))
            problems.add_metric([name], float(troubled))
        yield ports
        yield problems


class _ConnectionsCollector(Collector):
    """``aovs_connection_up{system,bridge}``: 1 when connected; what /healthz says, for alerts."""

    def __init__(self, health: HealthState) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "aovs_connection_up", "1 while the connection is established.",
            labels=["system", "bridge"],
        )  # fmt: skip
        for link in self._health.report().connections:
            family.add_metric([link.system, link.bridge or ""], 1.0 if link.connected else 0.0)
        yield family
