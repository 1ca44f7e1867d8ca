"""AgentMetrics, the port ledger and the health state (no sockets)."""

from __future__ import annotations

import pytest

from aovs.observability import AgentMetrics, HealthState, ReportedPortState, RpcOutcome, System
from aovs.observability.ports import PortLedger


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_each_agent_has_its_own_registry() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.bundle_committed("br-int", flowmods=10, seconds=0.01)

    labels = {"bridge": "br-int"}
    assert first.registry.get_sample_value("aovs_bundle_flowmods_count", labels) == 1
    assert second.registry.get_sample_value("aovs_bundle_flowmods_count", labels) is None


def test_ports_gauge_follows_transitions_and_removals() -> None:
    metrics = AgentMetrics()
    metrics.port_transition("a", ReportedPortState.PENDING, ofport=3)
    metrics.port_transition("b", ReportedPortState.PENDING, ofport=4)
    metrics.port_transition("a", ReportedPortState.WIRED, seconds=0.02)
    metrics.port_transition("b", ReportedPortState.REMOVED)

    def ports(state: str) -> float | None:
        return metrics.registry.get_sample_value("aovs_ports", {"state": state})

    assert (ports("pending"), ports("wired"), ports("dead"), ports("failed")) == (0, 1, 0, 0)
    assert ports("removed") is None  # removed ports are not ports any more
    assert (
        metrics.registry.get_sample_value("aovs_port_transitions_total", {"state": "removed"}) == 1
    )


def test_rpc_timeouts_are_counted_but_not_observed_as_latency() -> None:
    metrics = AgentMetrics()
    metrics.rpc_call("report_state", 0.01, RpcOutcome.OK)
    metrics.rpc_call("report_state", 0.5, RpcOutcome.ERROR)
    metrics.rpc_call("report_state", 60.0, RpcOutcome.TIMEOUT)

    get = metrics.registry.get_sample_value
    assert get("aovs_rpc_calls_total", {"method": "report_state", "outcome": "timeout"}) == 1
    assert get("aovs_rpc_call_seconds_count", {"method": "report_state"}) == 2
    assert get("aovs_rpc_call_seconds_sum", {"method": "report_state"}) == pytest.approx(0.51)


def test_full_sync_sets_the_timestamp() -> None:
    clock = FakeClock()
    metrics = AgentMetrics(clock=clock)
    assert metrics.registry.get_sample_value("aovs_last_full_sync_timestamp_seconds") == 0
    metrics.full_sync_done()
    assert metrics.registry.get_sample_value("aovs_last_full_sync_timestamp_seconds") == 1_000.0
    assert metrics.last_full_sync == 1_000.0


def test_connection_gauges_mirror_health() -> None:
    health = HealthState()
    metrics = AgentMetrics(health)
    health.set_connected(System.OPENFLOW, True, bridge="br-int")
    health.set_connected(System.OVSDB, False)

    get = metrics.registry.get_sample_value
    assert get("aovs_connection_up", {"system": "openflow", "bridge": "br-int"}) == 1
    assert get("aovs_connection_up", {"system": "ovsdb", "bridge": ""}) == 0


def test_ledger_keeps_the_last_transitions_and_the_ofport() -> None:
    clock = FakeClock()
    ledger = PortLedger(keep=3, clock=clock)
    ledger.record("a", ReportedPortState.PENDING, ofport=7)
    clock.now += 1
    ledger.record("a", ReportedPortState.WIRED, seconds=0.5)
    for state in (ReportedPortState.DEAD, ReportedPortState.WIRED):
        ledger.record("b", state)

    (port_a, port_b) = ledger.ports()
    assert (port_a.iface_id, port_a.state, port_a.ofport, port_a.since) == ("a", "wired", 7, 1001.0)
    assert port_a.last_seconds == 0.5
    assert [(t.iface_id, t.state) for t in ledger.recent()] == [
        ("a", "wired"), ("b", "dead"), ("b", "wired")
    ]  # fmt: skip
    assert port_b.ofport is None


def test_health_needs_every_known_connection() -> None:
    clock = FakeClock()
    health = HealthState(clock=clock)
    assert not health.report().healthy  # nothing known yet: not healthy
    assert health.report().summary() == "unhealthy: no connection established yet"

    health.set_connected(System.OVSDB, True)
    health.set_connected(System.OPENFLOW, False, bridge="br-tun")
    assert health.report().down == ("openflow:br-tun",)

    clock.now += 5
    health.set_connected(System.OPENFLOW, True, bridge="br-tun")
    clock.now += 5
    health.set_connected(System.OPENFLOW, True, bridge="br-tun")  # no change: `since` stays
    report = health.report()
    assert report.healthy
    assert report.summary() == "healthy: openflow:br-tun, ovsdb"
    assert [c.since for c in report.connections] == [1005.0, 1000.0]

    health.forget(System.OPENFLOW, bridge="br-tun")
    assert [c.name for c in health.report().connections] == ["ovsdb"]


@pytest.mark.parametrize(("system", "bridge"), [(System.OPENFLOW, None), (System.OVSDB, "br-int")])
def test_only_openflow_connections_name_a_bridge(system: System, bridge: str | None) -> None:
    with pytest.raises(ValueError, match="bridge"):
        HealthState().set_connected(system, True, bridge=bridge)


def test_resource_updates_and_extensions_are_exposed() -> None:
    metrics = AgentMetrics()
    get = metrics.registry.get_sample_value
    metrics.resource_updates("QosPolicy", "push", 2)
    metrics.resource_updates("QosPolicy", "pull")
    metrics.resource_updates("Trunk", "pull_failed", 3)
    assert get("aovs_resource_updates_total", {"type": "QosPolicy", "source": "push"}) == 2
    assert get("aovs_resource_updates_total", {"type": "QosPolicy", "source": "pull"}) == 1
    assert get("aovs_resource_updates_total", {"type": "Trunk", "source": "pull_failed"}) == 3
    assert get("aovs_extension_enabled", {"extension": "qos"}) is None  # none watched yet
    counts: dict[str, tuple[int, int]] = {}
    metrics.watch_extensions(["qos", "trunk"], lambda: counts)
    assert get("aovs_extension_enabled", {"extension": "qos"}) == 1
    assert get("aovs_extension_enabled", {"extension": "trunk"}) == 1
    assert get("aovs_extension_problem_ports", {"extension": "qos"}) == 0
    counts["qos"] = (3, 1)  # read at scrape time
    assert get("aovs_extension_ports", {"extension": "qos"}) == 3
    assert get("aovs_extension_problem_ports", {"extension": "qos"}) == 1
    assert get("aovs_extension_problem_ports", {"extension": "trunk"}) == 0
