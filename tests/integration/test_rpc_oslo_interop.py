"""Wire compatibility with the REAL oslo.messaging, both ways, over the real RabbitMQ.

oslo runs blocking (executor='threading', calls in worker threads) beside our asyncio loop. It
must use the global cfg.CONF: with a private ConfigOpts, oslo 18.3's server fails silently in
its worker thread (see /work/shared/reference/oslo-messaging-wire.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import oslo_messaging
import pytest
from oslo_config import cfg

from aovs.model import PortDetails
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import NoSuchMethod, RemoteError, UnsupportedVersion
from aovs.rpc.events import AddFdbEntries, PortDelete
from aovs.rpc.notifications import (
    L2POPULATION_UPDATE_TOPIC,
    PORT_DELETE_TOPIC,
    NotificationConsumer,
)
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.server_replies import UnknownDevice, devices_details
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

TOPOLOGY = SimulatedCloud.load(Path(__file__).parents[2] / "config" / "topology-small.json")
PORT = TOPOLOGY.ports[0].port_id
OSLO_TOPIC = "q-plugin-oslo"  # not q-plugin: the simulator tests share this vhost

DEVICE = {
    "device": "dev-1", "port_id": "dev-1", "network_id": "net-1",
    "mac_address": "fa:16:3e:aa:bb:cc", "admin_state_up": True, "network_type": "vlan",
    "segmentation_id": 42, "physical_network": "physnet1", "mtu": 1500,
    "fixed_ips": [{"subnet_id": "sub-1", "ip_address": "10.9.0.5"}],
    "device_owner": "compute:nova", "allowed_address_pairs": [], "port_security_enabled": True,
    "qos_policy_id": None, "qos_network_policy_id": None, "profile": {},
    "propagate_uplink_status": False,
}  # fmt: skip


class OsloNeutronEndpoint:
    """A neutron-like oslo endpoint: the plugin API at 1.9."""

    target = oslo_messaging.Target(version="1.9")

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_devices_details_list_and_failed_devices(
        self, context: Any, devices: list[str], agent_id: str, host: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("details", {"agent_id": agent_id, "host": host, "context": context}))
        return {
            "devices": [DEVICE if d == "dev-1" else {"device": d} for d in devices],
            "failed_devices": [],
        }

    def tunnel_sync(self, context: Any, tunnel_ip: str, tunnel_type: str, host: str) -> Any:
        raise ValueError(f"no tunnels for {tunnel_ip}")


@pytest.fixture
def oslo_transport(rabbit_vhost: str) -> Iterator[Any]:
    oslo_messaging.set_transport_defaults(control_exchange="neutron")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=rabbit_vhost)
    try:
        yield transport
    finally:
        transport.cleanup()


@pytest.fixture
async def transport(rabbit_vhost: str) -> AsyncIterator[RpcTransport]:
    async with RpcTransport(rabbit_vhost) as transport:
        yield transport


async def test_aovs_calls_an_oslo_server(oslo_transport: Any, transport: RpcTransport) -> None:
    endpoint = OsloNeutronEndpoint()
    server = oslo_messaging.get_rpc_server(
        oslo_transport,
        oslo_messaging.Target(topic=OSLO_TOPIC, server="oslo-host"),
        [endpoint],
        executor="threading",
    )
    await asyncio.to_thread(server.start)
    try:
        api = NeutronServerApi(transport, "compute-a", rpc_response_timeout=10)
        reply = await transport.call(
            OSLO_TOPIC,
            "get_devices_details_list_and_failed_devices",
            {"devices": ["dev-1", "dev-x"], "agent_id": api.agent_id, "host": "compute-a"},
            version="1.5",
            timeout=10,
        )
        assert reply["devices"][0] == DEVICE and reply["devices"][1] == {"device": "dev-x"}
        # the same through a directed call (T.<server>) and the typed conversion
        directed = await transport.call(
            OSLO_TOPIC,
            "get_devices_details_list_and_failed_devices",
            {"devices": ["dev-1", "dev-x"], "agent_id": api.agent_id, "host": "compute-a"},
            version="1.5",
            timeout=10,
            server="oslo-host",
        )
        details = devices_details(["dev-1", "dev-x"], directed)
        port = details.outcomes["dev-1"]
        assert isinstance(port, PortDetails) and port.segmentation_id == 42
        assert details.outcomes["dev-x"] == UnknownDevice("dev-x")
        # oslo rebuilt our flattened context
        assert endpoint.calls[0][1]["context"]["is_admin"] is True
        assert endpoint.calls[0][1]["agent_id"] == "ovs-agent-compute-a"

        with pytest.raises(RemoteError) as remote:
            await transport.call(
                OSLO_TOPIC,
                "tunnel_sync",
                {"tunnel_ip": "192.0.2.1", "tunnel_type": "vxlan", "host": "h"},
                version="1.4",
                timeout=10,
            )
        assert (remote.value.exc_type, remote.value.module) == ("ValueError", "builtins")
        assert remote.value.message == "no tunnels for 192.0.2.1"
        assert type(remote.value) is RemoteError

        with pytest.raises(NoSuchMethod, match="does not support RPC method frobnicate"):
            await transport.call(OSLO_TOPIC, "frobnicate", {}, version="1.0", timeout=10)
        with pytest.raises(UnsupportedVersion, match=r"RPC version 2\.0"):
            await transport.call(OSLO_TOPIC, "tunnel_sync", {}, version="2.0", timeout=10)
    finally:
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.wait)


async def test_aovs_receives_oslo_fanout_casts(
    oslo_transport: Any, transport: RpcTransport
) -> None:
    consumer = NotificationConsumer(
        transport, "compute-b", topics=[PORT_DELETE_TOPIC, L2POPULATION_UPDATE_TOPIC]
    )
    await consumer.start()
    try:
        port_client = oslo_messaging.get_rpc_client(
            oslo_transport, oslo_messaging.Target(topic=PORT_DELETE_TOPIC, version="1.0")
        )
        l2pop_client = oslo_messaging.get_rpc_client(
            oslo_transport, oslo_messaging.Target(topic=L2POPULATION_UPDATE_TOPIC, version="1.0")
        )
        fdb = {"net-1": {"segment_id": 1001, "network_type": "vxlan",
                         "ports": {"192.0.2.5": [["00:00:00:00:00:00", "0.0.0.0"],
                                                 ["fa:16:3e:00:00:05", "10.0.0.5"]]}}}  # fmt: skip

        def send() -> None:
            port_client.prepare(fanout=True).cast({}, "port_delete", port_id="p-oslo")
            l2pop_client.prepare(fanout=True).cast({}, "add_fdb_entries", fdb_entries=fdb)
            # l2pop's directed form: topic "<T>.<host>", no fanout
            l2pop_client.prepare(topic=f"{L2POPULATION_UPDATE_TOPIC}.compute-b").cast(
                {}, "remove_fdb_entries", fdb_entries=fdb
            )

        await asyncio.to_thread(send)
        async with asyncio.timeout(10):
            got = [await anext(consumer) for _ in range(3)]
        assert got[0] == PortDelete("p-oslo")
        assert isinstance(got[1], AddFdbEntries)
        assert got[1].networks[0].ports["192.0.2.5"][1].mac_address == "fa:16:3e:00:00:05"
        assert type(got[2]).__name__ == "RemoveFdbEntries"
    finally:
        await consumer.stop()


async def test_oslo_client_calls_the_simulator(rabbit_vhost: str, oslo_transport: Any) -> None:
    async with NeutronServerSimulator(TOPOLOGY, rabbit_vhost) as sim:
        client = oslo_messaging.get_rpc_client(
            oslo_transport, oslo_messaging.Target(topic="q-plugin", version="1.0")
        )

        def calls() -> tuple[Any, Any, Any, Exception]:
            details = client.prepare(version="1.5", timeout=10).call(
                {}, "get_devices_details_list_and_failed_devices",
                devices=[PORT, "unknown"], agent_id="ovs-agent-x", host="x",
            )  # fmt: skip
            listing = client.prepare(version="1.9", timeout=10).call(
                {}, "update_device_list", devices_up=[PORT], devices_down=[],
                agent_id="ovs-agent-x", host="x", refresh_tunnels=False,
            )  # fmt: skip
            state = client.prepare(topic="q-reports-plugin", version="1.2", timeout=10).call(
                {}, "report_state", agent_state={"agent_state": {"host": "x"}}, time="t"
            )
            try:
                client.prepare(version="1.9", timeout=10).call({}, "nope")
            except Exception as exc:
                return details, listing, state, exc
            raise AssertionError("NoSuchMethod expected")

        details, listing, state, error = await asyncio.to_thread(calls)
        assert details["failed_devices"] == []
        assert details["devices"][0]["port_id"] == PORT
        assert details["devices"][1] == {"device": "unknown"}
        assert listing == {"devices_up": [PORT], "failed_devices_up": [], "devices_down": [],
                           "failed_devices_down": []}  # fmt: skip
        assert state == "new"
        assert sim.device_up_reports == [PORT]
        # oslo rebuilds a failure from a module outside allowed_remote_exmods as RemoteError,
        # exactly as it does for a real oslo server's NoSuchMethod
        assert isinstance(error, oslo_messaging.RemoteError)
        assert error.exc_type == "NoSuchMethod" and "RPC method nope" in error.value
