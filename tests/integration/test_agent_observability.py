"""The running agent's /metrics, /healthz and ``aovs status``, on a real OVS and RabbitMQ.

What the agent exports must be what it did: port gauges equal to the ports it holds, latency
and bundle and RPC figures from real work, health following a real ovs-vswitchd kill.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from agent_world import agent_config, plug, port_id, running_agent, simulator, topology, wait_until
from prometheus_client.parser import text_string_to_metric_families

from aovs.agent.agent import Agent
from aovs.observability import default_socket_path
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration

AOVS = str(Path(sys.executable).with_name("aovs"))
WIRED = 6
UNKNOWN = 99  # plugged, but neutron-server has never heard of it: dead

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def sandbox(fresh_sandbox: OVSSandbox) -> OVSSandbox:
    fresh_sandbox.add_physical_bridge("br-phys")
    return fresh_sandbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def scrape(port: int) -> Samples:
    status, body = await http_get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(port: int, name: str, wanted: float) -> Samples:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        samples = await scrape(port)
        if value(samples, name) == wanted:
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} never {wanted}: {value(samples, name)}")
        await asyncio.sleep(0.05)


async def aovs_status(*args: str) -> tuple[int, str]:
    """The real CLI, as an operator (or the HEALTHCHECK) runs it; the agent shares our loop."""
    proc = await asyncio.create_subprocess_exec(
        AOVS, "status", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def wait_health(port: int, status: int, what: str) -> str:
    """Poll /healthz until it answers ``status``; returns that body."""
    answer: list[tuple[int, str]] = [(0, "")]
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        answer[0] = await http_get(port, "/healthz")
        if answer[0][0] == status:
            return answer[0][1]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/healthz never {status} ({what}): {answer[0]}")
        await asyncio.sleep(0.05)


async def test_metrics_health_and_status_follow_the_running_agent(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    metrics_port = free_port()
    config = agent_config(
        sandbox, rabbit_vhost, state_path, metrics_bind=f"127.0.0.1:{metrics_port}"
    )
    sock = str(default_socket_path(config))
    async with (
        simulator(rabbit_vhost, topology(WIRED)) as sim,
        running_agent(config, unplug_grace=5.0) as agent,
    ):
        plug(sandbox, [*range(WIRED), UNKNOWN])
        core = agent.core
        assert core is not None
        await wait_until(
            lambda: core.counts()["wired"] == WIRED and core.counts()["dead"] == 1,
            what="ports wired and the unknown one dead",
        )
        await wait_until(lambda: len(set(sim.device_up_reports)) == WIRED, what="reported up")
        await agent.settled()
        await wait_health(metrics_port, 200, "every connection up")

        samples = await scrape(metrics_port)
        counts = core.counts()
        for state_name in ("pending", "wired", "dead", "failed"):
            assert value(samples, "aovs_ports", state=state_name) == counts[state_name], state_name
        assert value(samples, "aovs_port_wiring_seconds_count", state="wired") >= WIRED
        for bridge in agent.bridges:
            assert value(samples, "aovs_bundle_flowmods_count", bridge=bridge) > 0, bridge
            assert value(samples, "aovs_connection_up", system="openflow", bridge=bridge) == 1
        assert value(samples, "aovs_bundle_failures_total", bridge="br-int") == 0
        details = "get_devices_details_list_and_failed_devices"
        assert value(samples, "aovs_rpc_calls_total", method=details, outcome="ok") >= 1
        assert value(samples, "aovs_rpc_call_seconds_count", method=details) >= 1
        assert (
            value(samples, "aovs_rpc_calls_total", method="update_device_list", outcome="ok") >= 1
        )
        assert value(samples, "aovs_full_syncs_total") == 1
        for system in ("ovsdb", "rabbitmq"):
            assert value(samples, "aovs_connection_up", system=system, bridge="") == 1

        code, out = await aovs_status("--socket", sock)
        assert code == 0, out
        assert f"PORTS ({WIRED + 1})" in out
        for index in [*range(WIRED), UNKNOWN]:
            assert port_id(index) in out
        assert (await aovs_status("--socket", sock, "--health")) == (0, _healthy(agent))

        sandbox.kill("ovs-vswitchd")
        body = await wait_health(metrics_port, 503, "ovs-vswitchd killed")
        assert "openflow:br-int" in body
        code, out = await aovs_status("--socket", sock, "--health")
        assert code == 1 and "openflow:br-int" in out, out

        sandbox.start_vswitchd()
        await wait_health(metrics_port, 200, "ovs-vswitchd back")
        samples = await scrape_until(metrics_port, "aovs_full_syncs_total", 2)  # the replay
        for bridge in agent.bridges:
            assert value(samples, "aovs_reconnects_total", system="openflow", bridge=bridge) == 1
        assert value(samples, "aovs_ports", state="wired") == WIRED
    assert not os.path.exists(sock)  # noqa: ASYNC240 -- the socket goes with the agent


def _healthy(agent: Agent) -> str:
    return agent.telemetry.health.report().summary() + "\n"
