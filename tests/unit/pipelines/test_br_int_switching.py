"""br-int's explicit switching (tables 110-112): what replaces NORMAL, flow by flow."""

from __future__ import annotations

from aovs.openflow.flows import GotoTable, Match, Output, PopVlan, PushVlan, Resubmit, SetField, vid
from aovs.pipelines import br_int, tables
from aovs.pipelines.br_int import FLOOD_CHUNK, UNKNOWN_CHAIN, LocalPort

A = LocalPort(5, "fa:16:3e:00:00:05", receives_unknown=False)
B = LocalPort(6, "fa:16:3e:00:00:06", receives_unknown=True)


def _outputs(actions: tuple[object, ...]) -> list[int]:
    return [a.port for a in actions if isinstance(a, Output)]


def test_a_wired_port_tags_only_untagged_frames_and_receives_its_mac() -> None:
    tag, deliver = sorted(br_int.local_port_flows(A, 3), key=lambda f: f.table)
    assert tag.key == (tables.LOCAL_VLAN_TABLE, br_int.TAG_PRIORITY, Match(in_port=5, vlan_vid=0))
    assert tag.actions == (PushVlan(), SetField("vlan_vid", vid(3)),
                           GotoTable(tables.L2_FORWARD_TABLE))  # fmt: skip
    assert deliver.match == Match(vlan_vid=vid(3), eth_dst="fa:16:3e:00:00:05")
    assert deliver.actions == (PopVlan(), Output(5, 0))


def test_flooding_goes_tagged_to_the_uplink_then_untagged_to_every_port() -> None:
    flows = br_int.local_vlan_flows(3, 9, [B, A])
    (flood,) = [f for f in flows if f.priority == br_int.FLOOD_PRIORITY]
    assert flood.match == Match(vlan_vid=vid(3), eth_dst=br_int.MULTICAST)
    assert flood.actions[0] == Output(9, 0)  # before the VLAN is stripped
    assert flood.actions[1] == PopVlan()
    (chunk,) = [f for f in flows if f.table == tables.L2_FLOOD_TABLE and f.match.get("reg3") == 0]
    assert chunk.match == Match(reg6=3, reg3=0)
    assert _outputs(chunk.actions) == [5, 6]


def test_unknown_unicast_reaches_the_uplink_and_only_ports_that_may_own_unknown_macs() -> None:
    flows = br_int.local_vlan_flows(3, 9, [A, B])
    (unknown,) = [f for f in flows if f.priority == br_int.UNKNOWN_PRIORITY]
    assert unknown.match == Match(vlan_vid=vid(3))
    assert _outputs(unknown.actions) == [9]
    (chunk,) = [f for f in flows if f.match.get("reg3") == UNKNOWN_CHAIN]
    assert _outputs(chunk.actions) == [6]


def test_without_uplink_or_ports_nothing_is_output() -> None:
    flows = br_int.local_vlan_flows(3, None, [A])
    (unknown,) = [f for f in flows if f.priority == br_int.UNKNOWN_PRIORITY]
    assert unknown.actions == ()  # a local network, no trusted port: unknown unicast dropped
    assert all(f.match.get("reg3") != UNKNOWN_CHAIN for f in flows)


def test_long_flood_lists_are_chained_in_chunks_below_openflows_message_size() -> None:
    ports = [LocalPort(100 + i, f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}", False)
             for i in range(2 * FLOOD_CHUNK + 7)]  # fmt: skip
    flows = br_int.local_vlan_flows(3, 9, ports)
    chunks = sorted((f for f in flows if f.table == tables.L2_FLOOD_TABLE),
                    key=lambda f: int(f.match.get("reg3") or 0))  # fmt: skip
    assert [f.match.get("reg3") for f in chunks] == [0, 1, 2]
    assert sorted(o for f in chunks for o in _outputs(f.actions)) == [p.ofport for p in ports]
    for index, chunk in enumerate(chunks[:-1]):
        assert chunk.actions[-2:] == (SetField("reg3", index + 1), Resubmit(tables.L2_FLOOD_TABLE))
    assert not any(isinstance(a, Resubmit) for a in chunks[-1].actions)


def test_one_ports_new_ofport_rewrites_one_chunk() -> None:
    ports = [LocalPort(100 + i, f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}", False)
             for i in range(2 * FLOOD_CHUNK)]  # fmt: skip
    before = br_int.local_vlan_flows(3, 9, ports)
    ports[3] = LocalPort(7000, ports[3].mac, False)
    after = br_int.local_vlan_flows(3, 9, ports)
    assert len(after - before) == 1
