"""The simulator keeps tunnel endpoints per type, as ML2's type drivers do."""

from __future__ import annotations

from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator


def simulator() -> NeutronServerSimulator:
    topology = SimulatedCloud.parse(
        {"networks": {}, "ports": [], "tunnels": [{"ip_address": "192.0.2.9"}]}
    )
    return NeutronServerSimulator(topology, transport_url="rabbit://guest:guest@127.0.0.1:5672/")


def test_a_second_tunnel_type_of_a_known_ip_is_new() -> None:
    sim = simulator()
    assert sim.tunnel_sync("192.0.2.1", "vxlan", "a") is True
    assert sim.tunnel_sync("192.0.2.1", "vxlan", "a") is False
    assert sim.tunnel_sync("192.0.2.1", "gre", "a") is True  # announced again, for gre
    assert sim.tunnel_sync("192.0.2.9", "gre", "z") is True  # topology endpoint, new host


def test_reply_lists_the_type_s_endpoints_and_the_untyped_ones() -> None:
    sim = simulator()
    sim.tunnel_sync("192.0.2.1", "vxlan", "a")
    sim.tunnel_sync("192.0.2.2", "gre", "b")
    vxlan = {t["ip_address"]: t for t in sim.tunnels_reply("vxlan")["tunnels"]}
    gre = {t["ip_address"]: t for t in sim.tunnels_reply("gre")["tunnels"]}
    assert set(vxlan) == {"192.0.2.1", "192.0.2.9"}
    assert vxlan["192.0.2.1"]["udp_port"] == 4789
    assert set(gre) == {"192.0.2.2", "192.0.2.9"}
    assert gre["192.0.2.2"]["udp_port"] is None
