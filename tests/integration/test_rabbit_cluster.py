"""A two-node RabbitMQ cluster of PRIVATE nodes (own node names, ports, cookie, config, data;
the shared broker is never touched), with both in ``transport_url``: the node in use is stopped
(or hangs, or loses a queue) mid-run and the agent fails over, re-declares its consumers, and
loses no port; when every node is down it comes back as soon as one returns; durable and quorum
queues are declared as the real oslo.messaging declares them, and both talk to each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import oslo_messaging
import pytest
from agent_world import agent_config, flows_with, plug, port_id, running_agent, topology, wait_until
from oslo_config import cfg

from aovs.agent.agent import Agent
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import RpcConnectionLost, RpcTimeout
from aovs.rpc.events import PortDelete
from aovs.rpc.notifications import PORT_DELETE_TOPIC, NotificationConsumer
from aovs.rpc.server_api import NeutronServerApi
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.rabbit_nodes import RabbitNode, private_cluster, transport_url
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

TOPOLOGY = SimulatedCloud.load(Path(__file__).parents[2] / "config" / "topology-small.json")
PORT = TOPOLOGY.ports[0].port_id
USER = "aovs-cluster"
PASSWORD = "Zq9:cl@ster$s3cret"  # percent-encoded in the URL; never in a log line


@dataclass
class Cluster:
    nodes: list[RabbitNode]

    def url(self, vhost: str = "/", **query: str) -> str:
        return transport_url(self.nodes, USER, PASSWORD, vhost, query=query or None)

    def node_of(self, transport: RpcTransport) -> RabbitNode:
        broker = transport.current_broker
        assert broker is not None, "not connected"
        return next(n for n in self.nodes if n.port == broker.port)

    def other(self, node: RabbitNode) -> RabbitNode:
        return next(n for n in self.nodes if n is not node)

    def vhost(self) -> str:
        name = f"aovs-{uuid.uuid4().hex[:8]}"
        self.nodes[0].ctl("add_vhost", name)
        self.nodes[0].ctl("set_permissions", "-p", name, USER, ".*", ".*", ".*")
        return name


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[Cluster]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-rq-cl-", dir="/tmp"))
    try:
        with private_cluster(directory, 2, users={USER: PASSWORD}, tag="cl") as nodes:
            yield Cluster(nodes)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    """Both nodes up at the start of each test (a test may have stopped one)."""
    for node in module_cluster.nodes:
        if not node.running:
            node.start()
    return module_cluster


@contextlib.asynccontextmanager
async def agent_on_cluster(
    cluster: Cluster, sandbox: OVSSandbox, state_path: Path, ports: int
) -> AsyncIterator[tuple[NeutronServerSimulator, Agent]]:
    """The simulator and an agent (physnet1 on br-phys), both on a fresh vhost of the cluster."""
    sandbox.add_physical_bridge("br-phys")
    url = cluster.url(cluster.vhost())
    async with (
        NeutronServerSimulator(topology(ports), url) as sim,
        running_agent(agent_config(sandbox, url, state_path)) as agent,
    ):
        yield sim, agent


def _no_password(caplog: pytest.LogCaptureFixture) -> None:
    assert PASSWORD not in caplog.text
    assert "cl%40ster" not in caplog.text  # nor its percent-encoded form


async def test_the_node_in_use_stops_and_no_port_is_lost(
    cluster: Cluster,
    fresh_sandbox: OVSSandbox,
    state_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with agent_on_cluster(cluster, fresh_sandbox, state_path, 12) as (sim, agent):
        core = agent.core
        assert core is not None
        plug(fresh_sandbox, range(6))
        await wait_until(lambda: core.counts()["wired"] == 6, 30, "6 ports wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == 6, 30, "6 reported up")
        await wait_until(lambda: agent.transport.is_connected, 10, "the agent's RPC")
        in_use = cluster.node_of(agent.transport)
        connections = agent.transport.connections_made

        stopping = asyncio.create_task(asyncio.to_thread(in_use.stop))
        await wait_until(lambda: not agent.transport.is_connected or stopping.done(), 30,
                         "the node going away")  # fmt: skip
        plug(fresh_sandbox, range(6, 12))  # while the agent fails over
        await stopping
        await wait_until(lambda: core.counts()["wired"] == 12, 40, "12 ports wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == 12, 40, "12 reported up")

        assert cluster.node_of(agent.transport) is cluster.other(in_use)
        assert agent.transport.connections_made > connections
        assert sim.device_down_reports == []  # no port was ever reported down
        assert set(sim.device_up_reports) == {port_id(i) for i in range(12)}
        for i in range(12):  # every port still has its flows
            ofport = int(fresh_sandbox.vsctl("get", "Interface", f"tap{i:05d}", "ofport"))
            assert flows_with(fresh_sandbox, "br-int", f"in_port={ofport}"), f"port {i} lost"

        # the agent's consumers were declared again on the surviving node: a notification
        # makes it ask for the port's details again
        asked = sim.calls["get_devices_details_list_and_failed_devices"]
        await sim.notify_port_update(port_id(3))
        await wait_until(
            lambda: sim.calls["get_devices_details_list_and_failed_devices"] > asked, 20,
            "details asked again after a port_update",
        )  # fmt: skip
    _no_password(caplog)


async def test_every_node_down_then_the_agent_comes_back_with_the_first_one(
    cluster: Cluster,
    fresh_sandbox: OVSSandbox,
    state_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with agent_on_cluster(cluster, fresh_sandbox, state_path, 4) as (sim, agent):
        core = agent.core
        assert core is not None
        plug(fresh_sandbox, range(2))
        await wait_until(lambda: len(set(sim.device_up_reports)) == 2, 30, "2 reported up")
        first, last = cluster.nodes[1], cluster.nodes[0]
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(last.stop)  # the cluster is down
        assert not agent.transport.is_connected
        plug(fresh_sandbox, range(2, 4))  # no broker: the details wait
        await asyncio.sleep(1.0)
        assert core.counts()["wired"] == 2
        started = time.monotonic()
        await asyncio.to_thread(last.start)  # the last one down comes back first
        await wait_until(lambda: agent.transport.is_connected, 30, "the agent reconnected")
        # it tries again within rabbit_retry_interval + n * rabbit_retry_backoff (1, 3, 5 s)
        assert time.monotonic() - started < 20
        await wait_until(lambda: core.counts()["wired"] == 4, 30, "4 ports wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == 4, 30, "4 reported up")
        assert cluster.node_of(agent.transport) is last
    _no_password(caplog)


async def test_a_hung_node_is_detected_within_the_heartbeat_threshold(cluster: Cluster) -> None:
    """SIGSTOP: the node keeps its sockets open and answers nothing. The liveness probe
    (every heartbeat_timeout_threshold / heartbeat_rate s) notices within the threshold, calls
    in flight fail at once, nothing hangs (connection attempts and declarations have deadlines),
    and the transport is back once the node answers again.

    (Moving to the OTHER node needs RabbitMQ to notice the hung one first, net_ticktime: its
    queues, ours among them, cannot be declared again before; oslo.messaging waits the same.)"""
    url = cluster.url(cluster.vhost(), heartbeat_timeout_threshold="2")
    async with RpcTransport(url, connect_timeout=2, setup_timeout=3) as transport:
        hung = cluster.node_of(transport)
        made = transport.connections_made
        call = asyncio.create_task(
            transport.call("q-nobody", "m", {}, version="1.0", timeout=30)
        )  # nobody answers: only the loss can end it early
        await asyncio.sleep(0.2)
        hung.freeze()
        started = time.monotonic()
        try:
            with pytest.raises(RpcConnectionLost, match="heartbeat_timeout_threshold"):
                await call
            detected = time.monotonic() - started
            assert detected < 2 + 2 / 3 + 1.5  # threshold + one probe interval + slack
            with pytest.raises(RpcTimeout):  # a call meanwhile fails at its deadline
                await transport.call("q-nobody", "m", {}, version="1.0", timeout=1)
            await asyncio.sleep(4)  # attempts time out against the hung node, no hang
        finally:
            hung.thaw()
        await wait_until(lambda: transport.connections_made > made, 30, "connected again")


async def test_a_queue_deleted_under_a_consumer_is_declared_again(cluster: Cluster) -> None:
    """The broker cancels the consumer (its queue went with a cluster node, or an operator
    deleted it): the transport reconnects after kombu_reconnect_delay and declares it again."""
    vhost = cluster.vhost()
    url = cluster.url(vhost, kombu_reconnect_delay="0.2")
    async with (
        NeutronServerSimulator(TOPOLOGY, url) as sim,
        RpcTransport(url) as transport,
    ):
        consumer = NotificationConsumer(transport, "compute-q", topics=(PORT_DELETE_TOPIC,))
        await consumer.start()
        (fanout_queue,) = consumer.fanout_queues
        made = transport.connections_made
        cluster.node_of(transport).ctl("delete_queue", "-p", vhost, fanout_queue)
        await wait_until(lambda: transport.connections_made > made, 10, "reconnected")
        await sim.notify_port_delete(PORT)
        async with asyncio.timeout(10):
            assert await anext(consumer) == PortDelete(PORT)
        await consumer.stop()


# -- durable and quorum queues, with the real oslo.messaging -----------------------------------


class OsloEndpoint:
    target = oslo_messaging.Target(version="1.0")

    def echo(self, context: Any, value: str) -> str:
        return f"oslo:{value}"


class AovsEndpoint:
    rpc_version = "1.0"

    def echo(self, context: Any, value: str) -> str:
        return f"aovs:{value}"


DURABLE = {
    "amqp_durable_queues": "true",
    "rabbit_quorum_queue": "true",
    "rabbit_transient_quorum_queue": "true",
}


@pytest.fixture
async def oslo_and_aovs(cluster: Cluster) -> AsyncIterator[tuple[Any, RpcTransport, str]]:
    """oslo.messaging and aovs on one vhost, with the SAME transport_url: quorum and durable
    queues come from its query, which both read over [oslo_messaging_rabbit]."""
    vhost = cluster.vhost()
    url = cluster.url(vhost, **DURABLE)
    oslo_messaging.set_transport_defaults(control_exchange="neutron")
    oslo = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    try:
        async with RpcTransport(url) as transport:
            yield oslo, transport, vhost
    finally:
        oslo.cleanup()


async def test_quorum_and_durable_queues_interoperate_with_oslo(
    cluster: Cluster, oslo_and_aovs: tuple[Any, RpcTransport, str]
) -> None:
    oslo, transport, vhost = oslo_and_aovs
    assert transport.options.rabbit_quorum_queue and transport.options.durable
    server = oslo_messaging.get_rpc_server(
        oslo, oslo_messaging.Target(topic="t-oslo", server="oslo-host"), [OsloEndpoint()],
        executor="threading",
    )  # fmt: skip
    await asyncio.to_thread(server.start)
    ours = await transport.serve("t-aovs", "aovs-host", [AovsEndpoint()])
    try:
        # aovs declares the queues oslo declared (same arguments: no PRECONDITION_FAILED) ...
        shared = await transport.serve("t-oslo", "aovs-host", [AovsEndpoint()])
        assert len(shared._consumers) == 3  # t-oslo, t-oslo.aovs-host, the fanout queue
        await shared.stop()
        # ... and both call each other
        reply = await transport.call("t-oslo", "echo", {"value": "x"}, version="1.0",
                                     server="oslo-host", timeout=20)  # fmt: skip
        assert reply == "oslo:x"
        client = oslo_messaging.get_rpc_client(
            oslo, oslo_messaging.Target(topic="t-aovs", server="aovs-host", version="1.0"),
            timeout=20,
        )  # fmt: skip
        answer = await asyncio.to_thread(client.call, {}, "echo", value="y")
        assert answer == "aovs:y"
    finally:
        await ours.stop()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.wait)
    queues = {}
    for line in (
        cluster.nodes[0].ctl("list_queues", "-p", vhost, "name", "type", "durable").splitlines()
    ):
        parts = line.split("\t")
        if len(parts) == 3:
            queues[parts[0]] = (parts[1], parts[2])
    for name in ("t-aovs", "t-aovs.aovs-host", "t-oslo", "t-oslo.oslo-host", transport.reply_queue):
        assert queues.get(name) == ("quorum", "true"), name


async def test_a_non_durable_exchange_is_used_as_oslo_does(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer declared the control exchange non-durable; aovs asked for durable queues: it
    falls back to the exchange as it is (oslo's _declare_fallback_nondurable), and works."""
    caplog.set_level(logging.INFO)
    vhost = cluster.vhost()
    one = transport_url(cluster.nodes[:1], USER, PASSWORD, vhost)
    plain = one.replace("rabbit://", "amqp://", 1)
    connection = await aio_pika.connect(plain)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange("neutron", aio_pika.ExchangeType.TOPIC, durable=False)
    url = cluster.url(vhost, amqp_durable_queues="true")
    async with (
        NeutronServerSimulator(TOPOLOGY, cluster.url(vhost)),
        RpcTransport(url) as transport,
    ):
        details = await NeutronServerApi(transport, "compute-d").get_devices_details([PORT])
        assert PORT in details.ports
    assert "exchange neutron exists non-durable" in caplog.text
    _no_password(caplog)


async def test_durable_queues_of_a_stopped_node_come_back_with_it(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With amqp_durable_queues, a classic queue lives on its node: with the node down RabbitMQ
    answers NOT_FOUND to any declaration of it, elsewhere too, until the node is back. aovs
    keeps its session and its other consumers (replies: calls keep working), and declares the
    missing queues again in the background until the node returns."""
    caplog.set_level(logging.INFO)
    vhost = cluster.vhost()
    home, survivor = cluster.nodes
    durable = {"amqp_durable_queues": "true"}
    async with RpcTransport(transport_url([home], USER, PASSWORD, vhost, query=durable)) as first:
        server = await first.serve("t-durable", "h1", [AovsEndpoint()])
        assert len(server._consumers) == 3
    await asyncio.to_thread(home.stop)
    url = cluster.url(vhost, **durable, rabbit_retry_backoff="0")  # retry every second
    async with RpcTransport(url) as second, RpcTransport(url) as caller:
        assert cluster.node_of(second) is survivor and cluster.node_of(caller) is survivor
        server = await second.serve("t-durable", "h1", [AovsEndpoint()])
        assert list(server._consumers) == [server.fanout_queue]  # the rest is on `home`
        assert second.is_connected  # the session stays
        assert "queue t-durable is stuck on a node that is down" in caplog.text
        await asyncio.to_thread(home.start)
        await wait_until(lambda: len(server._consumers) == 3, 20, "the queues back")
        reply = await caller.call("t-durable", "echo", {"value": "z"}, version="1.0", timeout=10)
        assert reply == "aovs:z"
        await server.stop()
