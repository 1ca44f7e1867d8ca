"""Timeouts, back-off, a hung server, and the broker closing every connection (real RabbitMQ)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aovs.rpc.amqp import RpcTransport
from aovs.rpc.backoff import BackingOffTimeouts
from aovs.rpc.errors import RpcConnectionLost, RpcTimeout
from aovs.rpc.events import PortDelete
from aovs.rpc.notifications import NotificationConsumer
from aovs.rpc.server_api import NeutronServerApi
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

TOPOLOGY = SimulatedCloud.load(Path(__file__).parents[2] / "config" / "topology-small.json")
PORT = TOPOLOGY.ports[0].port_id


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_vhost() -> Iterator[tuple[str, str]]:
    """A vhost for this test alone: closing its connections touches nobody else's tests."""
    vhost = f"aovs-rpc-fault-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost, f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
async def transport(rabbit_vhost: str) -> AsyncIterator[RpcTransport]:
    async with RpcTransport(rabbit_vhost) as transport:
        yield transport


async def test_call_without_server_times_out_then_backs_off(transport: RpcTransport) -> None:
    timeouts = BackingOffTimeouts(default=0.3, maximum=1.0, uniform=lambda low, high: 0.0)
    api = NeutronServerApi(transport, "h", backoff=timeouts)
    # a topic nobody serves: the message is dropped by the broker, nothing answers
    api_topic = f"q-nobody-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with pytest.raises(RpcTimeout) as first:
        await transport.call(api_topic, "m", {}, version="1.0", timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert first.value.timeout == 0.3 and api_topic in str(first.value)

    observed = []
    for _ in range(3):
        with pytest.raises(RpcTimeout) as info:
            await api._call(api_topic, "tunnel_sync", {}, version="1.4")
        observed.append(info.value.timeout)
    assert observed == [0.3, 0.6, 1.0]  # doubled, then capped at rpc_response_max_timeout
    assert timeouts.timeout_for("report_state") == 0.3  # per method


async def test_hung_server_times_out_and_recovers(
    rabbit_vhost: str, transport: RpcTransport
) -> None:
    async with NeutronServerSimulator(TOPOLOGY, rabbit_vhost) as sim:
        api = NeutronServerApi(
            transport, "h", backoff=BackingOffTimeouts(0.3, 5, uniform=lambda low, high: 0.0)
        )
        sim.answering = False
        details = await api.get_devices_details([PORT])
        assert "RpcTimeout" in details.failed[PORT]  # never raises out of get_devices_details
        sim.answering = True
        sim.reply_delay = 0.1  # slow, but within the (now doubled) timeout
        details = await api.get_devices_details([PORT])
        assert PORT in details.ports


async def test_broker_closes_all_connections(own_vhost: tuple[str, str]) -> None:
    vhost, url = own_vhost
    async with (
        NeutronServerSimulator(TOPOLOGY, url) as sim,
        RpcTransport(url, reconnect_delay=0.1) as transport,
    ):
        api = NeutronServerApi(transport, "compute-r", rpc_response_timeout=10)
        consumer = NotificationConsumer(transport, "compute-r")
        await consumer.start()
        assert PORT in (await api.get_devices_details([PORT])).ports

        # one call in flight (the server holds it), one bare transport call in flight
        sim.answering = False
        retried = asyncio.create_task(api.get_devices_details([PORT]))
        bare = asyncio.create_task(
            transport.call(
                "q-plugin", "tunnel_sync", {"tunnel_ip": "192.0.2.50"}, version="1.4", timeout=30
            )
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            _rabbitmqctl, "close_all_connections", "--vhost", vhost, "--limit", "100", "test"
        )
        with pytest.raises(RpcConnectionLost):
            async with asyncio.timeout(10):
                await bare  # fails at once with a clear error, never hangs
        sim.answering = True

        # the API retried its call after the reconnect
        async with asyncio.timeout(15):
            details = await retried
        assert PORT in details.ports
        assert transport.connections_made >= 2 and sim.transport.connections_made >= 2

        # consumers came back: notifications flow again, and calls succeed
        await sim.notify_port_delete(PORT)
        async with asyncio.timeout(10):
            assert await anext(consumer) == PortDelete(PORT)
        result = await api.update_device_list(up=[PORT])
        assert result.devices_up == (PORT,)
        await consumer.stop()


async def test_no_broker_fails_start_clearly() -> None:
    transport = RpcTransport("rabbit://guest:guest@127.0.0.1:1/", connect_timeout=0.5)
    with pytest.raises(RpcConnectionLost, match=r"127\.0\.0\.1:1"):
        await transport.start()
