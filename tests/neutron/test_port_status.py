"""A port stays ACTIVE through the agent's re-reads: ML2 moves an ACTIVE port back to BUILD
whenever an agent asks its details, so the agent must report it UP again after each one."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from neutron_world import HypervisorFactory, in_thread, wait_port_status
from server.neutron_server import NeutronApiError, NeutronServer

pytestmark = pytest.mark.integration


async def test_a_port_update_leaves_the_port_active(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    host = await hypervisors("host-a")
    network = await in_thread(
        server.create_network,
        **{"provider:network_type": "vlan", "provider:physical_network": "physnet1"},
    )
    port: dict[str, object] = {}
    try:
        await in_thread(server.create_subnet, network["id"], "10.30.0.0/24")
        group = await in_thread(server.post, "/v2.0/security-groups",
                                {"security_group": {"name": "status-sg"}})  # fmt: skip
        port = await in_thread(server.create_port, network["id"], "host-a")
        host.plug(port)
        await wait_port_status(server, port["id"], "ACTIVE")
        calls = host.agent.stats.rpc_details_calls
        # a security group change fans out port_update: the agent asks the details again
        await in_thread(
            server.update_port, port["id"], security_groups=[group["security_group"]["id"]]
        )
        async with asyncio.timeout(20):
            while host.agent.stats.rpc_details_calls == calls:  # noqa: ASYNC110 -- agent counter
                await asyncio.sleep(0.1)
        await host.agent.settled()
        await wait_port_status(server, port["id"], "ACTIVE", within=20)
        await asyncio.sleep(1.0)  # a late BUILD would show now
        assert (await in_thread(server.show_port, port["id"]))["status"] == "ACTIVE"
    finally:
        if port:
            host.unplug(str(port["id"]))
            with contextlib.suppress(NeutronApiError):
                await in_thread(server.delete_port, port["id"])
        await in_thread(server.delete_network, network["id"])
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
