"""/metrics and /healthz scraped over real HTTP from a running server, fed by a stand-in agent."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aovs.observability import (
    AgentMetrics,
    HealthState,
    ObservabilityServer,
    ReportedPortState,
    RpcOutcome,
    System,
)

pytestmark = pytest.mark.integration
BRIDGES = ("br-int", "br-tun")


@dataclass
class StandInAgent:
    """Plays the agent's part: reports connections and port lifecycles through the public API."""

    health: HealthState = field(default_factory=HealthState)
    metrics: AgentMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = AgentMetrics(self.health)
        self.health.set_connected(System.OVSDB, False)
        self.health.set_connected(System.RABBITMQ, False)
        for bridge in BRIDGES:
            self.health.set_connected(System.OPENFLOW, False, bridge=bridge)

    def connect_all(self) -> None:
        self.health.set_connected(System.OVSDB, True)
        self.health.set_connected(System.RABBITMQ, True)
        for bridge in BRIDGES:
            self.health.set_connected(System.OPENFLOW, True, bridge=bridge)

    def wire(self, iface_id: str, ofport: int, seconds: float) -> None:
        self.metrics.port_transition(iface_id, ReportedPortState.PENDING, ofport=ofport)
        self.metrics.rpc_call("get_devices_details_list_and_failed_devices", 0.04, RpcOutcome.OK)
        self.metrics.bundle_committed("br-int", flowmods=30, seconds=0.003)
        self.metrics.port_transition(iface_id, ReportedPortState.WIRED, seconds=seconds)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def _http(port: int, raw: bytes, *, close_write: bool = True) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if close_write:
        writer.write_eof()
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body)


def _get(path: str, *extra: str, method: str = "GET") -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: localhost", *extra, "", ""]).encode()


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.fixture
async def served() -> AsyncIterator[tuple[StandInAgent, ObservabilityServer]]:
    agent = StandInAgent()
    server = ObservabilityServer("127.0.0.1:0", agent.metrics, agent.health, request_timeout=0.5)
    async with server:
        yield agent, server


async def test_metrics_reflect_what_the_agent_reported(
    served: tuple[StandInAgent, ObservabilityServer],
) -> None:
    agent, server = served
    agent.connect_all()
    for n in range(3):
        agent.wire(f"port-{n}", ofport=10 + n, seconds=0.003)
    agent.metrics.port_transition(
        "port-3", ReportedPortState.FAILED, seconds=2.0, reason="ofport -1"
    )
    agent.metrics.port_transition("port-0", ReportedPortState.REMOVED)
    agent.metrics.rpc_call("security_group_info_for_devices", 60.0, RpcOutcome.TIMEOUT)
    agent.metrics.reconnect(System.OPENFLOW, bridge="br-int")
    agent.metrics.reconnect(System.RABBITMQ)
    agent.metrics.full_sync_done()

    reply = await _http(server.port, _get("/metrics"))

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert int(reply.headers["content-length"]) == len(reply.body)
    got = _samples(reply.body)
    assert got[("aovs_ports", (("state", "wired"),))] == 2
    assert got[("aovs_ports", (("state", "failed"),))] == 1
    assert got[("aovs_ports", (("state", "pending"),))] == 0
    assert got[("aovs_port_wiring_seconds_count", (("state", "wired"),))] == 3
    assert got[("aovs_port_wiring_seconds_bucket", (("le", "0.001"), ("state", "wired")))] == 0
    assert got[("aovs_port_wiring_seconds_bucket", (("le", "0.005"), ("state", "wired")))] == 3
    assert got[("aovs_port_wiring_seconds_bucket", (("le", "1.0"), ("state", "failed")))] == 0
    assert got[("aovs_bundle_flowmods_sum", (("bridge", "br-int"),))] == 90
    assert got[("aovs_bundle_commit_seconds_count", (("bridge", "br-int"),))] == 3
    rpc = "get_devices_details_list_and_failed_devices"
    assert got[("aovs_rpc_calls_total", (("method", rpc), ("outcome", "ok")))] == 3
    sg = "security_group_info_for_devices"
    assert got[("aovs_rpc_calls_total", (("method", sg), ("outcome", "timeout")))] == 1
    assert ("aovs_rpc_call_seconds_count", (("method", sg),)) not in got  # timeouts: not latency
    assert got[("aovs_reconnects_total", (("bridge", "br-int"), ("system", "openflow")))] == 1
    assert got[("aovs_reconnects_total", (("bridge", ""), ("system", "rabbitmq")))] == 1
    assert abs(got[("aovs_last_full_sync_timestamp_seconds", ())] - time.time()) < 60
    assert got[("aovs_connection_up", (("bridge", "br-tun"), ("system", "openflow")))] == 1
    assert ("process_cpu_seconds_total", ()) in got


async def test_openmetrics_when_asked_and_head_has_no_body(
    served: tuple[StandInAgent, ObservabilityServer],
) -> None:
    _, server = served
    open_metrics = await _http(
        server.port, _get("/metrics", "Accept: application/openmetrics-text; version=1.0.0")
    )
    head = await _http(server.port, _get("/metrics", method="HEAD"))

    assert open_metrics.status == 200
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.body.endswith(b"# EOF\n")
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["content-length"]) > 0


async def test_healthz_names_what_is_down(served: tuple[StandInAgent, ObservabilityServer]) -> None:
    agent, server = served

    starting = await _http(server.port, _get("/healthz"))
    agent.connect_all()
    healthy = await _http(server.port, _get("/healthz"))
    agent.health.set_connected(System.OPENFLOW, False, bridge="br-tun")
    one_down = await _http(server.port, _get("/healthz?verbose=1"))

    assert starting.status == 503
    assert set(json.loads(starting.body)["down"]) == {
        "ovsdb", "rabbitmq", "openflow:br-int", "openflow:br-tun"
    }  # fmt: skip
    assert healthy.status == 200
    assert healthy.headers["content-type"] == "application/json"
    assert json.loads(healthy.body)["healthy"] is True
    assert one_down.status == 503
    body = json.loads(one_down.body)
    assert body["healthy"] is False
    assert body["down"] == ["openflow:br-tun"]


BAD_REQUESTS = [
    (b"garbage\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (_get("/admin"), 404),
    (_get("/metrics", method="POST"), 405),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
]


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS)
async def test_a_bad_request_gets_an_error_and_one_log_line(
    served: tuple[StandInAgent, ObservabilityServer],
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
    status: int,
) -> None:
    _, server = served
    caplog.set_level(logging.INFO, logger="aovs.observability")

    reply = await _http(server.port, raw)
    after = await _http(server.port, _get("/metrics"))

    assert reply.status == status
    assert reply.headers["connection"] == "close"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert after.status == 200  # and the endpoint carries on


async def test_a_slow_client_is_cut_off_and_others_are_served(
    served: tuple[StandInAgent, ObservabilityServer], caplog: pytest.LogCaptureFixture
) -> None:
    _, server = served
    caplog.set_level(logging.INFO, logger="aovs.observability")
    slow = asyncio.create_task(_http(server.port, b"GET /metrics HTTP/1.1\r\n", close_write=False))

    meanwhile = await _http(server.port, _get("/healthz"))
    reply = await slow

    assert meanwhile.status == 503
    assert reply.status == 408
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "http request timed out"
    ]


async def test_a_client_that_hangs_up_is_no_error(
    served: tuple[StandInAgent, ObservabilityServer], caplog: pytest.LogCaptureFixture
) -> None:
    _, server = served
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()

    assert (await _http(server.port, _get("/metrics"))).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
