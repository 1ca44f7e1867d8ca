"""aovs's neutron-server API, notification consumer and heartbeat against the simulator, over
the real RabbitMQ (a private vhost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aovs.agent.reporter import DeviceReporter
from aovs.model import PortDetails
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.events import (
    FLOODING_ENTRY,
    AddFdbEntries,
    AgentEvent,
    PortDelete,
    PortUpdate,
    SecurityGroupsMemberUpdated,
    TunnelUpdate,
)
from aovs.rpc.notifications import PORT_DELETE_TOPIC, NotificationConsumer
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.server_replies import NoActiveBinding, UnknownDevice
from aovs.rpc.state_report import StateReporter
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

TOPOLOGY = SimulatedCloud.load(Path(__file__).parents[2] / "config" / "topology-small.json")
VLAN_PORT, SG_PORT, V6_PORT, ELSEWHERE_PORT = (p.port_id for p in TOPOLOGY.ports)
HOST = "compute-test"


@pytest.fixture
async def transport(rabbit_vhost: str) -> AsyncIterator[RpcTransport]:
    async with RpcTransport(rabbit_vhost) as transport:
        yield transport


@pytest.fixture
async def sim(rabbit_vhost: str) -> AsyncIterator[NeutronServerSimulator]:
    async with NeutronServerSimulator(TOPOLOGY, rabbit_vhost) as sim:
        yield sim


@pytest.fixture
def api(transport: RpcTransport) -> NeutronServerApi:
    return NeutronServerApi(transport, HOST, rpc_response_timeout=5, details_batch_size=2)


async def next_event(consumer: NotificationConsumer) -> AgentEvent:
    async with asyncio.timeout(5):
        return await anext(consumer)


async def test_device_details_outcomes(api: NeutronServerApi, sim: NeutronServerSimulator) -> None:
    sim.fail_devices = {"failing"}
    sim.wire_overrides[SG_PORT] = {"mac_address": "not-a-mac"}
    details = await api.get_devices_details(
        [VLAN_PORT, SG_PORT, V6_PORT, ELSEWHERE_PORT, "nope", "failing", VLAN_PORT]
    )
    port = details.outcomes[VLAN_PORT]
    assert isinstance(port, PortDetails)
    assert (port.network_type, port.segmentation_id, port.physical_network) == (
        "vlan",
        100,
        "physnet1",
    )
    assert port.fixed_ips[0].ip_address == "10.1.0.11"
    v6 = details.outcomes[V6_PORT]
    assert isinstance(v6, PortDetails) and v6.mtu == 1450
    assert [ip.ip_address for ip in v6.fixed_ips] == ["10.2.0.13", "fd00:2::13"]
    assert details.outcomes["nope"] == UnknownDevice("nope")
    assert details.outcomes[ELSEWHERE_PORT] == NoActiveBinding(ELSEWHERE_PORT)
    assert set(details.failed) == {SG_PORT, "failing"}
    assert "not a MAC" in details.failed[SG_PORT]
    # 6 distinct devices in batches of 2
    assert sim.calls["get_devices_details_list_and_failed_devices"] == 3


async def test_security_group_info(api: NeutronServerApi, sim: NeutronServerSimulator) -> None:
    info = await api.security_group_info_for_devices([VLAN_PORT, SG_PORT])
    default_sg, web_sg = TOPOLOGY.ports[1].security_groups
    assert info.devices[SG_PORT] == (default_sg, web_sg)
    web_rules = info.security_groups[web_sg].rules
    assert {(r.protocol, r.port_range_min, r.remote_ip_prefix) for r in web_rules} == {
        ("tcp", 80, "0.0.0.0/0"),
        ("icmp", None, "10.0.0.0/8"),
    }
    # member IPs of the default group (it is a remote group): fixed IPs and address pairs
    assert info.member_ips[default_sg]["IPv4"] == {"10.1.0.11", "10.1.0.12", "10.1.0.200/32",
                                                   "10.2.0.13"}  # fmt: skip
    assert info.member_ips[default_sg]["IPv6"] == {"fd00:2::13"}
    assert not info.problems


async def test_update_device_list_is_recorded(
    api: NeutronServerApi, sim: NeutronServerSimulator
) -> None:
    result = await api.update_device_list(up=[VLAN_PORT, SG_PORT], down=["gone"])
    assert result.devices_up == (VLAN_PORT, SG_PORT) and result.unknown_down == ("gone",)
    (report,) = sim.device_list_reports
    assert report.agent_id == f"ovs-agent-{HOST}" and report.host == HOST
    assert sim.device_up_reports == [VLAN_PORT, SG_PORT] and sim.device_down_reports == ["gone"]


async def test_agent_device_reporter_coalesces_and_retries(
    api: NeutronServerApi, sim: NeutronServerSimulator
) -> None:
    """The agent's reporter over the real wire: a newer report supersedes a queued one, and
    devices the server failed are sent again until it accepts them."""
    reporter = DeviceReporter(api, retry_delay=0.05)
    sim.fail_devices = {V6_PORT}
    reporter.start()
    try:
        for device in (VLAN_PORT, SG_PORT, V6_PORT):
            reporter.report(device, up=True)
        reporter.report(SG_PORT, up=False)  # superseding, if not sent yet
        await asyncio.sleep(0.2)
        sim.fail_devices = set()
        async with asyncio.timeout(5):
            await reporter.drain()
    finally:
        await reporter.stop()
    assert VLAN_PORT in sim.device_up_reports and V6_PORT in sim.device_up_reports
    assert SG_PORT not in sim.device_up_reports and SG_PORT in sim.device_down_reports


async def test_tunnel_sync_fans_out_tunnel_update(
    api: NeutronServerApi, sim: NeutronServerSimulator, transport: RpcTransport
) -> None:
    consumer = NotificationConsumer(transport, "compute-peer")
    await consumer.start()
    try:
        tunnels = await api.tunnel_sync("192.0.2.99", "vxlan")
        assert {t.ip_address for t in tunnels} == {"192.0.2.11", "192.0.2.12", "192.0.2.99"}
        assert next(t for t in tunnels if t.ip_address == "192.0.2.99").host == HOST
        assert await next_event(consumer) == TunnelUpdate("192.0.2.99", "vxlan")
    finally:
        await consumer.stop()


async def test_report_state_heartbeat(api: NeutronServerApi, sim: NeutronServerSimulator) -> None:
    devices = [3]
    reporter = StateReporter(
        api,
        interval=0.1,
        configurations=lambda: {"bridge_mappings": {"physnet1": "br-phys"}, "l2_population": True},
        device_count=lambda: devices[0],
        resource_versions={"AddressGroup": "1.2"},
    )
    reporter.start()
    try:
        async with asyncio.timeout(5):
            while len(sim.state_reports) < 3:  # noqa: ASYNC110 -- watching the server's record
                await asyncio.sleep(0.05)
    finally:
        await reporter.stop()
    first, second = sim.state_reports[0], sim.state_reports[1]
    assert first["start_flag"] is True and "start_flag" not in second
    # resource_versions until a report succeeds, as neutron's agent pops them
    assert first["resource_versions"] == {"AddressGroup": "1.2"}
    assert "resource_versions" not in second
    assert first["binary"] == "neutron-openvswitch-agent" and first["host"] == HOST
    assert first["agent_type"] == "Open vSwitch agent" and first["topic"] == "N/A"
    assert first["configurations"]["devices"] == 3
    assert reporter.last_status == "alive"


async def test_notifications_become_typed_events_in_order(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    consumer = NotificationConsumer(transport, HOST)
    await consumer.start()
    try:
        await sim.notify_port_update(VLAN_PORT)
        await sim.notify_security_groups_member_updated(["sg-x"])
        # malformed: logged and dropped, the next one still comes through
        await transport.fanout_cast(PORT_DELETE_TOPIC, "port_delete", {}, version="1.0")
        await transport.fanout_cast(PORT_DELETE_TOPIC, "no_such_notification", {}, version="1.0")
        await sim.notify_port_delete(SG_PORT)
        net_id = TOPOLOGY.ports[2].network_id
        await sim.notify_add_fdb_entries(sim.fdb_entries_for_network(net_id, "192.0.2.11"))
        await sim.notify_add_fdb_entries(
            sim.fdb_entries_for_network(net_id, "192.0.2.12"), host=HOST
        )  # directed cast to T.<host>
        update = await next_event(consumer)
        assert isinstance(update, PortUpdate) and update.port_id == VLAN_PORT
        assert update.segmentation_id == 100 and update.port["mac_address"] == "fa:16:3e:10:00:01"
        assert await next_event(consumer) == SecurityGroupsMemberUpdated(("sg-x",))
        assert await next_event(consumer) == PortDelete(SG_PORT)
        fdb = [await next_event(consumer), await next_event(consumer)]
        assert all(isinstance(e, AddFdbEntries) for e in fdb)
        by_ip = {ip: entries for e in fdb for n in e.networks for ip, entries in n.ports.items()}  # type: ignore[union-attr]
        assert set(by_ip) == {"192.0.2.11", "192.0.2.12"}
        assert by_ip["192.0.2.11"][0] == FLOODING_ENTRY
        assert consumer.malformed == 1
    finally:
        await consumer.stop()
