"""TunnelState: which tunnel ports exist and which br-tun flows each owner holds."""

from __future__ import annotations

import pytest

from aovs.agent.tunnel_io import add_tunnel_port
from aovs.agent.tunnels import (
    PortChanges,
    TunnelPort,
    TunnelSettings,
    TunnelState,
    TunnelSynced,
    fdb_owner,
    flood_owner,
    tunnel_owner,
    tunnel_port_name,
)
from aovs.model import FdbEntry, NetworkSegment, TunnelEndpoint
from aovs.openflow.flows import Flow
from aovs.pipelines import br_tun
from aovs.rpc import events
from aovs.rpc.events import FLOODING_ENTRY

LOCAL = "192.0.2.1"
NET = "net-t"
SEG = NetworkSegment(network_id=NET, network_type="vxlan", segmentation_id=1001)
VLAN = 5


def settings(**kw: object) -> TunnelSettings:
    base: dict[str, object] = {"local_ip": LOCAL, "tunnel_types": ("vxlan",)}
    base.update(kw)
    return TunnelSettings(**base)  # type: ignore[arg-type]


def name(ip: str, kind: str = "vxlan") -> str:
    result = tunnel_port_name(kind, ip)
    assert result is not None
    return result


def seen(state: TunnelState, *ips: str, first_ofport: int = 10) -> dict[str, int]:
    """OVSDB reports the ports with ofports."""
    ofports = {}
    for index, ip in enumerate(ips):
        ofports[name(ip)] = first_ofport + index
        state.interface_event(name(ip), "vxlan", first_ofport + index, deleted=False)
    return ofports


def fdb(*ports: tuple[str, list[tuple[str, str]]], net: str = NET) -> events.FdbNetwork:
    return events.FdbNetwork(
        network_id=net,
        segment_id=1001,
        network_type="vxlan",
        ports={ip: tuple(FdbEntry(mac_address=m, ip_address=a) for m, a in entries)
               for ip, entries in ports},
    )  # fmt: skip


FLOOD = (FLOODING_ENTRY.mac_address, "0.0.0.0")


def br_tun_flows(flush_flows: dict[tuple[str, ...], dict[str, frozenset[Flow]]]) -> set[Flow]:
    return {f for by_bridge in flush_flows.values() for f in by_bridge.get("br-tun", ())}


def test_tunnel_port_names_are_neutrons() -> None:
    assert tunnel_port_name("vxlan", "192.168.0.2") == "vxlan-c0a80002"
    assert tunnel_port_name("gre", "10.0.0.1") == "gre-0a000001"
    v6 = tunnel_port_name("vxlan", "2001:db8::2")
    assert v6 is not None and v6.startswith("vxlan-") and len(v6) == 15
    assert tunnel_port_name("vxlan", "not-an-ip") is None


def test_tunnel_port_options_are_neutrons() -> None:
    port = TunnelPort("vxlan-c0000202", "vxlan", "192.0.2.2")
    command = add_tunnel_port(port, settings())
    assert command.type == "vxlan" and command.bridge == "br-tun"
    assert command.options == {"remote_ip": "192.0.2.2", "local_ip": LOCAL, "in_key": "flow",
                               "out_key": "flow", "df_default": "true",
                               "egress_pkt_mark": "0"}  # fmt: skip
    assert add_tunnel_port(port, settings(vxlan_udp_port=8472)).options["dst_port"] == "8472"  # type: ignore[index]
    v6 = add_tunnel_port(
        TunnelPort("gre-x", "gre", "2001:db8::2"), settings(local_ip="2001:db8::1")
    )
    assert v6.type == "ip6gre" and v6.options["packet_type"] == "legacy_l2"  # type: ignore[index]


def test_without_l2pop_every_synced_endpoint_gets_a_port_and_the_flood_list() -> None:
    state = TunnelState(settings())
    state.set_hosted({NET: (SEG, VLAN)})
    endpoints = tuple(TunnelEndpoint(ip_address=ip) for ip in (LOCAL, "192.0.2.2", "192.0.2.3"))
    state.notified(TunnelSynced("vxlan", endpoints))
    first = state.flush()
    assert sorted(p.remote_ip for p in first.ports.add) == ["192.0.2.2", "192.0.2.3"]
    assert first.state_changed
    assert state.flush().ports == PortChanges()  # asked once, not again while pending

    ofports = seen(state, "192.0.2.2", "192.0.2.3")
    result = state.flush()
    assert result.flows[flood_owner(NET)] == {"br-tun": br_tun.flood_flows(VLAN, 1001, [10, 11])}
    for port, ofport in ofports.items():
        assert result.flows[tunnel_owner(port)] == {
            "br-tun": br_tun.tunnel_port_flows("vxlan", ofport)
        }

    state.notified(events.TunnelUpdate("192.0.2.4", "vxlan"))
    state.notified(events.TunnelUpdate(LOCAL, "vxlan"))  # our own: ignored
    state.notified(events.TunnelUpdate("192.0.2.5", "gre"))  # not enabled here: ignored
    assert [p.remote_ip for p in state.flush().ports.add] == ["192.0.2.4"]

    state.notified(events.TunnelDelete("192.0.2.3", "vxlan"))
    gone = state.flush()
    assert gone.ports.delete == (name("192.0.2.3"),)
    assert gone.flows[tunnel_owner(name("192.0.2.3"))] == {}
    assert gone.flows[flood_owner(NET)] == {"br-tun": br_tun.flood_flows(VLAN, 1001, [10])}


def test_a_restart_never_deletes_ports_before_the_server_spoke() -> None:
    state = TunnelState(settings())
    seen(state, "192.0.2.9")  # left over from the previous run, not in the snapshot
    assert state.flush().ports.delete == ()
    state.notified(TunnelSynced("vxlan", (TunnelEndpoint(ip_address="192.0.2.2"),)))
    assert state.flush().ports.delete == (name("192.0.2.9"),)


def test_a_sync_reply_older_than_an_announcement_keeps_the_announced_endpoint() -> None:
    # 20 hosts starting at once: hv02 announced (tunnel_update) after the server built hv04's
    # tunnel_sync reply, which hv04 handled second; the reply must not drop hv02
    state = TunnelState(settings())
    state.notified(events.TunnelUpdate("192.0.2.12", "vxlan"))
    state.notified(TunnelSynced("vxlan", (TunnelEndpoint(ip_address="192.0.2.11"),)))
    assert state.endpoints["vxlan"] == {"192.0.2.11", "192.0.2.12"}
    # deleted since: the next reply that lacks it does not bring it back
    state.notified(events.TunnelDelete("192.0.2.12", "vxlan"))
    state.notified(TunnelSynced("vxlan", (TunnelEndpoint(ip_address="192.0.2.11"),)))
    assert state.endpoints["vxlan"] == {"192.0.2.11"}


def test_restored_endpoints_keep_their_ports_and_flows() -> None:
    before = TunnelState(settings())
    before.notified(events.TunnelUpdate("192.0.2.2", "vxlan"))
    after = TunnelState(settings())
    after.restore(before.snapshot())
    after.set_hosted({NET: (SEG, VLAN)})
    seen(after, "192.0.2.2")
    result = after.flush()
    assert result.ports == PortChanges()
    assert result.flows[flood_owner(NET)] == {"br-tun": br_tun.flood_flows(VLAN, 1001, [10])}
    with pytest.raises(ValueError, match="malformed tunnel snapshot"):
        TunnelState(settings()).restore({"endpoints": {"vxlan": ["bad"]}})


def test_l2pop_ports_follow_the_fdb_of_our_networks() -> None:
    state = TunnelState(settings(l2_population=True, arp_responder=True))
    state.notified(TunnelSynced("vxlan", (TunnelEndpoint(ip_address="192.0.2.7"),)))
    state.notified(events.AddFdbEntries((fdb(("192.0.2.2", [FLOOD])),)))  # not hosted yet
    assert state.flush().ports == PortChanges()

    state.set_hosted({NET: (SEG, VLAN)})
    vm = ("fa:16:3e:00:00:02", "10.0.0.2")
    state.notified(events.AddFdbEntries((fdb(("192.0.2.2", [FLOOD, vm]), ("192.0.2.3", [FLOOD])),)))
    added = state.flush()
    assert sorted(p.remote_ip for p in added.ports.add) == ["192.0.2.2", "192.0.2.3"]
    seen(state, "192.0.2.2", "192.0.2.3")
    flows = br_tun_flows(state.flush().flows)
    assert br_tun.unicast_flow(VLAN, 1001, 10, vm[0]) in flows
    assert br_tun.arp_responder_flow(VLAN, vm[1], vm[0]) in flows
    assert br_tun.flood_flows(VLAN, 1001, [10, 11]) <= flows

    # the last port behind 192.0.2.3 leaves: its flooding entry goes, and so does its tunnel
    state.notified(events.RemoveFdbEntries((fdb(("192.0.2.3", [FLOOD])),)))
    removed = state.flush()
    assert removed.ports.delete == (name("192.0.2.3"),)
    assert removed.flows[flood_owner(NET)] == {"br-tun": br_tun.flood_flows(VLAN, 1001, [10])}

    # a new IP for the same MAC moves the ARP entry, not the unicast one
    moved = ("fa:16:3e:00:00:02", "10.0.0.99")
    state.notified(
        events.UpdateFdbEntries(
            (events.FdbIpChange(NET, "192.0.2.2",
                                before=(FdbEntry(mac_address=vm[0], ip_address=vm[1]),),
                                after=(FdbEntry(mac_address=moved[0], ip_address=moved[1]),)),)
        )
    )  # fmt: skip
    fdb_flows = state.flush().flows[fdb_owner(NET)]["br-tun"]
    assert br_tun.arp_responder_flow(VLAN, moved[1], moved[0]) in fdb_flows
    assert br_tun.arp_responder_flow(VLAN, vm[1], vm[0]) not in fdb_flows
    assert br_tun.unicast_flow(VLAN, 1001, 10, vm[0]) in fdb_flows


def test_l2pop_forgets_a_network_when_its_last_local_port_leaves() -> None:
    state = TunnelState(settings(l2_population=True))
    state.set_hosted({NET: (SEG, VLAN)})
    state.notified(events.AddFdbEntries((fdb(("192.0.2.2", [FLOOD])),)))
    state.flush()
    seen(state, "192.0.2.2")
    assert state.flush().flows[flood_owner(NET)]
    state.set_hosted({})
    result = state.flush()
    assert result.ports.delete == (name("192.0.2.2"),)
    assert result.flows[flood_owner(NET)] == {} and result.flows[fdb_owner(NET)] == {}
    assert state.snapshot()["fdb"] == {}


def test_without_arp_responder_no_table_21_entries() -> None:
    state = TunnelState(settings(l2_population=True, arp_responder=False))
    state.set_hosted({NET: (SEG, VLAN)})
    state.notified(events.AddFdbEntries((fdb(("192.0.2.2", [("fa:16:3e:00:00:02", "10.0.0.2")])),)))
    state.flush()
    seen(state, "192.0.2.2")
    flows = br_tun_flows(state.flush().flows)
    assert {f.table for f in flows} == {0, 20}


def test_a_failed_transaction_is_asked_again() -> None:
    state = TunnelState(settings())
    state.notified(events.TunnelUpdate("192.0.2.2", "vxlan"))
    changes = state.flush().ports
    assert changes.add
    state.port_changes_failed(changes)
    assert state.flush().ports == changes


def test_ip_version_mismatch_gets_no_tunnel() -> None:
    state = TunnelState(settings())
    state.notified(events.TunnelUpdate("2001:db8::2", "vxlan"))
    assert state.flush().ports == PortChanges()
