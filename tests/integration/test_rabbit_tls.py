"""RPC over TLS to a PRIVATE RabbitMQ node (its own node name, ports, cookie, config, data; the
shared broker is never touched): a test CA, a server certificate for ``localhost``, a client
certificate the node requires. The broker is verified by default; a wrong CA, a host name the
certificate does not name, or no client certificate fail with one clear line and no password."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_world import agent_config, plug, port_id, running_agent, topology, wait_until

from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import RpcConnectionLost
from aovs.rpc.options import RabbitOptions
from aovs.rpc.server_api import NeutronServerApi
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.rabbit_nodes import Pki, RabbitNode, make_pki, private_cluster, transport_url
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

TOPOLOGY = SimulatedCloud.load(Path(__file__).parents[2] / "config" / "topology-small.json")
PORT = TOPOLOGY.ports[0].port_id
USER = "aovs-tls"
PASSWORD = "Zq9-tls-s3cret"  # must never show in a log line or an error


@dataclass(frozen=True)
class TlsBroker:
    node: RabbitNode
    pki: Pki

    def url(self, host: str = "localhost", query: str = "") -> str:
        url = transport_url([self.node], USER, PASSWORD, tls=True)
        if host != "localhost":
            url = url.replace("@localhost:", f"@{host}:")
        return url + (f"?{query}" if query else "")

    def options(self, **overrides: object) -> RabbitOptions:
        values: dict[str, object] = {
            "ssl": True,
            "ssl_ca_file": str(self.pki.ca),
            "ssl_cert_file": str(self.pki.client_cert),
            "ssl_key_file": str(self.pki.client_key),
        }
        values.update(overrides)
        return RabbitOptions.model_validate(values)

    def query(self) -> str:
        """The same TLS settings as transport_url query parameters (oslo's override)."""
        pki = self.pki
        return (
            f"ssl=1&ssl_ca_file={pki.ca}&ssl_cert_file={pki.client_cert}"
            f"&ssl_key_file={pki.client_key}"
        )


@pytest.fixture(scope="module")
def broker() -> Iterator[TlsBroker]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-rq-tls-", dir="/tmp"))
    try:
        pki = make_pki(directory / "pki")
        with private_cluster(directory, 1, tls=pki, users={USER: PASSWORD}, tag="tls") as nodes:
            yield TlsBroker(nodes[0], pki)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_calls_and_replies_over_tls_with_verification(broker: TlsBroker) -> None:
    # the simulator reads TLS from the URL's query, the client from [oslo_messaging_rabbit]
    async with (
        NeutronServerSimulator(TOPOLOGY, broker.url(query=broker.query())),
        RpcTransport(broker.url(), options=broker.options()) as client,
    ):
        details = await NeutronServerApi(client, "compute-tls").get_devices_details([PORT])
        assert PORT in details.ports
        connections = broker.node.connections()
        assert len(connections) >= 2
        assert all(c["ssl"] == "true" and c["user"] == USER for c in connections)


async def test_the_agent_wires_ports_over_tls(
    broker: TlsBroker, fresh_sandbox: OVSSandbox, state_path: Path
) -> None:
    fresh_sandbox.add_physical_bridge("br-phys")
    world = topology(3)
    # TLS from the URL's query: the agent passes transport_url to its transport as it is
    config = agent_config(fresh_sandbox, broker.url(query=broker.query()), state_path)
    async with (
        NeutronServerSimulator(world, broker.url(query=broker.query())) as sim,
        running_agent(config) as agent,
    ):
        assert agent.transport.options.ssl
        plug(fresh_sandbox, range(3))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == 3, 30, "3 ports wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == 3, 30, "3 reported up")
        assert set(sim.device_up_reports) == {port_id(i) for i in range(3)}
        assert all(c["ssl"] == "true" for c in broker.node.connections())


def _one_clear_line(caplog: pytest.LogCaptureFixture, error: BaseException) -> str:
    """The transport's own line for the failed attempt; no other logger repeats it, and no
    password anywhere."""
    assert PASSWORD not in str(error) and "\n" not in str(error)
    assert PASSWORD not in caplog.text
    ours = [r for r in caplog.records if r.name == "aovs.rpc.amqp" and r.levelno >= logging.WARNING]
    assert ours, "no line from the transport"
    others = [r for r in caplog.records if r.name.startswith("aiormq") and r.levelno >= 40]
    assert others == []
    return ours[0].getMessage()


async def test_a_wrong_ca_fails_with_one_clear_line(
    broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    transport = RpcTransport(
        broker.url(), options=broker.options(ssl_ca_file=str(broker.pki.other_ca)),
        connect_timeout=3,
    )  # fmt: skip
    with pytest.raises(RpcConnectionLost) as info:
        await transport.start()
    line = _one_clear_line(caplog, info.value)
    assert line.startswith(f"cannot connect to broker {USER}@localhost:{broker.node.tls_port}/")
    assert (
        "certificate was rejected: self-signed certificate in certificate chain" in line
        or "certificate was rejected: unable to get local issuer certificate" in line
    )
    assert "ssl_ca_file" in line
    assert "certificate was rejected" in str(info.value)


async def test_the_host_name_is_verified_unless_turned_off(
    broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = broker.url(host="127.0.0.1")  # the certificate names localhost only
    with pytest.raises(RpcConnectionLost):
        await RpcTransport(url, options=broker.options(), connect_timeout=3).start()
    line = _one_clear_line(caplog, RuntimeError())
    assert "IP address mismatch" in line or "hostname mismatch" in line
    # the chain is still verified; only the name check is off
    relaxed = broker.options(ssl_enforce_hostname_verification=False)
    async with RpcTransport(url, options=relaxed) as transport:
        assert transport.is_connected


async def test_no_client_certificate_is_refused(
    broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    options = broker.options(ssl_cert_file="", ssl_key_file="")
    with pytest.raises(RpcConnectionLost) as info:
        await RpcTransport(broker.url(), options=options, connect_timeout=3).start()
    _one_clear_line(caplog, info.value)
    lines = [r.getMessage() for r in caplog.records if r.name == "aovs.rpc.amqp"]
    # the broker's alert, or (when the alert loses the race with the reset) the hint
    assert all("client certificate" in line for line in lines)
