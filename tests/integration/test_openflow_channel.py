"""The OpenFlow channel, codec and bundles against a real ovs-vswitchd (dummy datapath)."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow import codec
from aovs.openflow.bundle import BundleEntry, add_messages, commit_bundle
from aovs.openflow.channel import Connected, Disconnected, OpenFlowChannel
from aovs.openflow.errors import (
    BundleError,
    ChannelClosedError,
    RequestTimeoutError,
    SwitchError,
)
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flows import (
    CT,
    OFPP_CONTROLLER,
    Conjunction,
    CTClear,
    Flow,
    GotoTable,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Match,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    ct_state,
    normal,
    vid,
)
from aovs.openflow.messages import DATAPATH, HEADER, serialize
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration
COOKIE = 0x5EED
ENCODER = FastEncoder()

EVERY_ACTION = [
    Flow(0, 10, Match(in_port=5, eth_src="FA:16:3E:00:00:01"),
         [SetField("reg5", 5), SetField("reg6", 3), GotoTable(24)]),
    Flow(0, 11, Match(in_port=6), [Output(7), Output(OFPP_CONTROLLER)]),
    Flow(24, 20, Match(eth_type=0x806, arp_spa="10.0.0.1"),
         [RegLoad("reg0", 1, 0, 1), RegLoad("reg1", 7), RegMove("reg5", "reg6", 16),
          Resubmit(25), Resubmit(25, 3)]),
    Flow(71, 30, Match(eth_type=0x800, ct_state=ct_state("-trk")),
         [CTClear(), CT(zone_src="reg6", table=72)]),
    Flow(72, 30, Match(eth_type=0x800, ct_state=ct_state("+trk+new"), reg5=5),
         [CT(commit=True, zone=7, actions=(SetField("ct_mark", 1),)), normal()]),
    Flow(72, 31, Match(eth_type=0x86DD, ipv6_src=("fe80::", "ffff:ffff:ffff:ffff::")),
         [Conjunction(12, 1, 2)]),
    Flow(72, 32, Match(conj_id=12, eth_type=0x800, ct_mark=(1, 1), ct_zone=3), [Output(9, 0)]),
    Flow(10, 1, Match(), [Learn(table=20, priority=1, hard_timeout=300, specs=(
        LearnMatch(dst="vlan_tci", n_bits=12, src="vlan_tci"),
        LearnMatch(dst="eth_dst", n_bits=48, src="eth_src"),
        LearnLoad(dst="vlan_tci", n_bits=16, value=0),
        LearnLoad(dst="tunnel_id", n_bits=64, src="tunnel_id"),
        LearnOutput(src="in_port"))), Output(1)]),
    Flow(0, 12, Match(vlan_vid=vid(5)), [PopVlan(), PushVlan(), SetField("vlan_vid", vid(9)),
                                         GotoTable(60)]),
    Flow(0, 13, Match(tunnel_id=55, reg0=(4, 0xF), eth_dst=("fa:16:3e:00:00:00",
                                                             "ff:ff:ff:00:00:00")), []),
    Flow(82, 5, Match(eth_type=0x800, ipv4_src="10.1.0.0/16", ip_proto=6, tcp_dst=(0x400, 0xFC00)),
         [], idle_timeout=30, hard_timeout=300),
]  # fmt: skip


def new_bridge(sandbox: OVSSandbox) -> str:
    name = f"of{uuid.uuid4().hex[:8]}"
    sandbox.vsctl(
        "add-br", name, "--", "set", "Bridge", name,
        "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13",
    )  # fmt: skip
    return name


@pytest.fixture
async def bridge_channel(ovs_sandbox: OVSSandbox) -> AsyncIterator[tuple[str, OpenFlowChannel]]:
    bridge = new_bridge(ovs_sandbox)
    channel = OpenFlowChannel.for_mgmt_socket(ovs_sandbox.mgmt_socket(bridge))
    await channel.start(within=10)
    try:
        yield bridge, channel
    finally:
        await channel.close()
        ovs_sandbox.vsctl("del-br", bridge)


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A short unix socket path for a fake switch (pytest's tmp_path is too long)."""
    path = Path(f"/tmp/aovs-fake-{uuid.uuid4().hex[:8]}.sock")
    yield path
    path.unlink(missing_ok=True)


async def dump(channel: OpenFlowChannel) -> set[Flow]:
    request = ofpp.OFPFlowStatsRequest(
        DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, ofpp.OFPMatch()
    )
    return {codec.decode_flow_stats(s, COOKIE) for s in await channel.multipart(request)}


async def test_handshake_reads_the_datapath_id(
    ovs_sandbox: OVSSandbox, bridge_channel: tuple[str, OpenFlowChannel]
) -> None:
    bridge, channel = bridge_channel
    dpid = ovs_sandbox.vsctl("get", "Bridge", bridge, "datapath_id").strip().strip('"')
    assert channel.datapath_id == int(dpid, 16)
    await channel.barrier(within=5)


async def test_every_action_round_trips_through_ovs(
    bridge_channel: tuple[str, OpenFlowChannel],
) -> None:
    _bridge, channel = bridge_channel
    entries = [BundleEntry(ENCODER.encode(f, codec.ADD, COOKIE), f) for f in EVERY_ACTION]
    await commit_bundle(channel, entries)
    assert await dump(channel) == set(EVERY_ACTION)


async def test_switch_error_names_the_failed_message(
    bridge_channel: tuple[str, OpenFlowChannel],
) -> None:
    _bridge, channel = bridge_channel
    bad = Flow(5, 1, Match(), [GotoTable(3)])  # goto a lower table
    xid = channel.next_xid()
    with pytest.raises(SwitchError) as caught:
        await channel.request_raw(ENCODER.encode(bad, codec.ADD, COOKIE, xid), xid, within=5)
    assert caught.value.err_type == ofp.OFPET_BAD_INSTRUCTION
    assert "FLOW_MOD(ADD, table=5, priority=1" in str(caught.value)
    await channel.barrier(within=5)  # the connection is still fine


async def test_bundle_with_one_bad_flow_changes_nothing(
    bridge_channel: tuple[str, OpenFlowChannel],
) -> None:
    _bridge, channel = bridge_channel
    before = [Flow(0, 1, Match(in_port=1), [Output(2)]), Flow(0, 2, Match(in_port=2), [])]
    await commit_bundle(
        channel, [BundleEntry(ENCODER.encode(f, codec.ADD, COOKIE), f) for f in before]
    )
    bad = Flow(60, 3, Match(in_port=3), [GotoTable(24)])
    batch = [
        Flow(0, 2, Match(in_port=2), [Output(4)]),
        *[Flow(0, 5, Match(in_port=10 + i), [Output(1)]) for i in range(50)],
        bad,
        Flow(60, 4, Match(in_port=4), [Output(1)]),
    ]
    entries = [BundleEntry(ENCODER.encode(f, codec.ADD, COOKIE), f) for f in batch]
    with pytest.raises(BundleError) as caught:
        await commit_bundle(channel, entries)
    assert caught.value.flow == bad
    assert "table=60, priority=3" in str(caught.value)
    assert await dump(channel) == set(before)


async def test_ovs_would_commit_the_rest_of_a_bundle_with_a_rejected_add(
    bridge_channel: tuple[str, OpenFlowChannel],
) -> None:
    """The OVS behaviour that makes the barrier + DISCARD necessary (verified, not assumed)."""
    _bridge, channel = bridge_channel
    good = Flow(0, 1, Match(in_port=1), [Output(2)])
    bad = Flow(60, 3, Match(in_port=3), [GotoTable(24)])
    xids = channel.allocate_xids(2)
    errors: list[int] = []
    bundle_id = 77
    control = ofpp.ONFBundleCtrlMsg
    flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
    with channel.watch_errors(lambda xid, _err: errors.append(xid) is None):
        await channel.request(control(DATAPATH, bundle_id, ofp.ONF_BCT_OPEN_REQUEST, flags, []))
        entries = [BundleEntry(ENCODER.encode(f, codec.ADD, COOKIE), f) for f in (good, bad)]
        await channel.send(add_messages(bundle_id, entries, xids.start))
        await channel.barrier(within=5)
        assert errors == [xids[1]]  # the error carries the bad add's xid
        await channel.request(control(DATAPATH, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, flags, []))
    assert await dump(channel) == {good}


async def test_bundle_of_60k_pipelined_adds(bridge_channel: tuple[str, OpenFlowChannel]) -> None:
    _bridge, channel = bridge_channel
    flows = [Flow(0, 100, Match(in_port=i % 60000 + 1, reg5=i), [Output(1)]) for i in range(60_000)]
    entries = [BundleEntry(ENCODER.encode(f, codec.ADD, COOKIE), f) for f in flows]
    await commit_bundle(channel, entries, within=60)
    request = ofpp.OFPAggregateStatsRequest(
        DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, ofpp.OFPMatch()
    )
    (aggregate,) = await channel.multipart(request)
    assert aggregate.flow_count == 60_000


async def test_malformed_message_resets_and_reconnects(socket_path: Path) -> None:
    """A fake switch that sends garbage after the handshake: a reset, never a crash or hang."""
    path = socket_path
    sessions = 0

    async def fake_switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sessions
        sessions += 1
        hello = ofpp.OFPHello(DATAPATH, elements=[ofpp.OFPHelloElemVersionBitmap([4])])
        writer.write(serialize(hello, 1))
        while True:
            header = await reader.readexactly(8)
            _v, msg_type, length, xid = HEADER.unpack(header)
            await reader.readexactly(length - 8)
            if msg_type == ofp.OFPT_FEATURES_REQUEST:
                body = struct.pack("!QIBB2xII", 0xABC, 0, 254, 0, 0, 0)
                writer.write(HEADER.pack(4, ofp.OFPT_FEATURES_REPLY, 8 + len(body), xid) + body)
            elif msg_type == ofp.OFPT_BARRIER_REQUEST:
                # a barrier reply claiming 64 KB but truncated: the connection must reset
                writer.write(HEADER.pack(4, ofp.OFPT_BARRIER_REPLY, 0xFFFF, xid) + b"\x00" * 10)
                writer.close()
                return

    server = await asyncio.start_unix_server(fake_switch, str(path))
    channel = OpenFlowChannel.for_mgmt_socket(path, backoff_initial=0.01, request_timeout=5)
    events: list[object] = []
    channel.subscribe(events.append)
    try:
        await channel.start(within=5)
        assert channel.datapath_id == 0xABC
        with pytest.raises(ChannelClosedError):
            await channel.barrier(within=5)
        await asyncio.sleep(0.3)
        await channel.wait_connected(within=5)
        assert sessions >= 2
        assert events[:3] == [Connected(0xABC), events[1], Connected(0xABC)]
        assert isinstance(events[1], Disconnected)
    finally:
        await channel.close()
        server.close()


async def test_unanswered_request_times_out(socket_path: Path) -> None:
    """A switch that handshakes and then goes silent: the request fails in time, no hang."""
    path = socket_path

    async def mute_switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEADER.pack(4, ofp.OFPT_HELLO, 8, 1))
        while True:
            header = await reader.readexactly(8)
            _v, msg_type, length, xid = HEADER.unpack(header)
            await reader.readexactly(length - 8)
            if msg_type == ofp.OFPT_FEATURES_REQUEST:
                body = struct.pack("!QIBB2xII", 7, 0, 254, 0, 0, 0)
                writer.write(HEADER.pack(4, ofp.OFPT_FEATURES_REPLY, 8 + len(body), xid) + body)

    server = await asyncio.start_unix_server(mute_switch, str(path))
    channel = OpenFlowChannel.for_mgmt_socket(path)
    try:
        await channel.start(within=5)
        with pytest.raises(RequestTimeoutError, match="barrier"):
            await channel.barrier(within=0.3)
    finally:
        await channel.close()
        server.close()


async def test_version_mismatch_is_a_clear_error(
    socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = socket_path

    async def of10_switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEADER.pack(1, ofp.OFPT_HELLO, 8, 1))  # OpenFlow 1.0 only
        await reader.read(100)

    server = await asyncio.start_unix_server(of10_switch, str(path))
    channel = OpenFlowChannel.for_mgmt_socket(path, backoff_initial=0.5)
    try:
        with pytest.raises(RequestTimeoutError):
            await channel.start(within=0.5)
        assert "does not offer OpenFlow 1.3" in caplog.text
    finally:
        await channel.close()
        server.close()


async def test_listening_channel_accepts_vswitchd_as_controller(
    ovs_sandbox: OVSSandbox,
) -> None:
    bridge = new_bridge(ovs_sandbox)
    channel = OpenFlowChannel.listening("127.0.0.1", 0)
    try:
        await channel.start(wait=False)
        for _ in range(100):  # the server socket is bound on the first connect attempt
            if channel.connector.port:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        port = channel.connector.port  # type: ignore[attr-defined]
        ovs_sandbox.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{port}")
        ovs_sandbox.vsctl("set", "Controller", bridge, "connection-mode=out-of-band")
        await channel.wait_connected(within=10)
        await channel.barrier(within=5)
    finally:
        await channel.close()
        ovs_sandbox.vsctl("del-br", bridge)


async def test_concurrent_writers_never_split_a_message(socket_path: Path) -> None:
    """A big send (a bundle chunk) to a slow switch while another request is written: every
    message must arrive whole. (Slices with a drain between them let a barrier or an echo land
    inside a bundle-add under load, and ovs-vswitchd dropped the connection.)"""
    bad_headers: list[bytes] = []
    echoes = 0

    async def slow_switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal echoes
        writer.write(HEADER.pack(4, ofp.OFPT_HELLO, 8, 1))
        while True:
            header = await reader.readexactly(8)
            version, msg_type, length, xid = HEADER.unpack(header)
            if version != 4 or length < 8 or length > 2000:
                bad_headers.append(header)
                writer.close()
                return
            await reader.readexactly(length - 8)
            if msg_type == ofp.OFPT_FEATURES_REQUEST:
                body = struct.pack("!QIBB2xII", 0xABC, 0, 254, 0, 0, 0)
                writer.write(HEADER.pack(4, ofp.OFPT_FEATURES_REPLY, 8 + len(body), xid) + body)
            elif msg_type == ofp.OFPT_BARRIER_REQUEST:
                writer.write(HEADER.pack(4, ofp.OFPT_BARRIER_REPLY, 8, xid))
            elif msg_type == ofp.OFPT_ECHO_REQUEST:
                echoes += 1
                if echoes % 64 == 0:
                    await asyncio.sleep(0.001)  # a busy switch: the sender must wait to drain

    server = await asyncio.start_unix_server(slow_switch, str(socket_path))
    channel = OpenFlowChannel.for_mgmt_socket(socket_path, backoff_initial=0.01)
    try:
        await channel.start(within=5)
        size = 1000  # does not divide any power-of-two slice: a slice would end mid-message
        one = HEADER.pack(4, ofp.OFPT_ECHO_REQUEST, size, 0) + b"\x00" * (size - 8)
        count = 4000  # 4 MB, far above the transport's high-water mark
        big = asyncio.create_task(channel.send(one * count))
        await asyncio.sleep(0)
        await channel.barrier(within=30)  # written while the big send waits to drain
        await big
        await channel.barrier(within=30)
        assert not bad_headers
        assert echoes == count
    finally:
        await channel.close()
        server.close()
