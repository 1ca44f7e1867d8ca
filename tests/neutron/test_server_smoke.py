"""Smoke: two aovs agents against a real neutron 29 server bind, wire and activate a VM port."""

from __future__ import annotations

import pytest
from neutron_world import (
    OVS_AGENT,
    HypervisorFactory,
    in_thread,
    poll,
    wait_agents_alive,
    wait_port_status,
)
from server.neutron_server import NeutronServer

pytestmark = pytest.mark.integration

EXTENSIONS = {
    "address-group",
    "stateful-security-group",
    "binding-extended",
    "port-security",
    "allowed-address-pairs",
}


def test_server_has_the_extensions_agents_serve(neutron_server: NeutronServer) -> None:
    missing = EXTENSIONS - neutron_server.extensions()
    assert not missing, f"API extensions off: {sorted(missing)}"


async def test_two_agents_bind_and_activate_a_vlan_port(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    host_a = await hypervisors("host-a")
    await hypervisors("host-b")

    agents = await wait_agents_alive(server, ["host-a", "host-b"])
    assert {(a["host"], a["agent_type"], a["alive"]) for a in agents} == {
        ("host-a", OVS_AGENT, True),
        ("host-b", OVS_AGENT, True),
    }
    assert {a["binary"] for a in agents} == {"neutron-openvswitch-agent"}

    network = await in_thread(
        server.create_network,
        **{"provider:network_type": "vlan", "provider:physical_network": "physnet1"},
    )
    await in_thread(server.create_subnet, network["id"], "10.10.0.0/24")
    port = await in_thread(server.create_port, network["id"], "host-a")
    assert port["binding:vif_type"] == "ovs", port
    host_a.plug(port)

    active = await wait_port_status(server, port["id"], "ACTIVE")
    assert active["binding:host_id"] == "host-a"

    ofport = await poll(
        lambda: host_a.ofport(port["id"]), lambda n: n > 0, within=10, what="the tap's ofport"
    )
    flows = host_a.flows_on_port(ofport)
    assert any(f"in_port={ofport}" in flow for flow in flows), "\n".join(host_a.flows())

    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
