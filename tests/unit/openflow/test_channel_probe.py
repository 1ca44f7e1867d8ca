"""``[ovs] of_inactivity_probe`` on the OpenFlow channel, against a fake switch on a unix socket:
an echo request only after a whole idle interval, the connection reset (and re-made) when the
switch stays silent for another interval, nothing at all with 0; ``of_connect_timeout`` bounds
``start``. The options reach the channel (and the OVSDB client) by ``[ovs]``'s own mapping."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from aovs.config import OVSSection
from aovs.openflow.channel import Connected, Disconnected, OpenFlowChannel
from aovs.openflow.errors import RequestTimeoutError
from aovs.openflow.messages import HEADER
from aovs.ovsdb import OVSDBClient

PROBE = 0.2


@dataclass
class FakeSwitch:
    """Handshakes; answers echo requests while ``answer_echo``; records when each came."""

    answer_echo: bool = True
    echoes: list[float] = field(default_factory=list)
    sessions: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(HEADER.pack(4, ofp.OFPT_HELLO, 8, 1))
        try:
            while True:
                header = await reader.readexactly(8)
                _v, msg_type, length, xid = HEADER.unpack(header)
                body = await reader.readexactly(length - 8)
                if msg_type == ofp.OFPT_FEATURES_REQUEST:
                    reply = struct.pack("!QIBB2xII", 0x42, 0, 254, 0, 0, 0)
                    writer.write(HEADER.pack(4, ofp.OFPT_FEATURES_REPLY, 8 + len(reply), xid)
                                 + reply)  # fmt: skip
                elif msg_type == ofp.OFPT_ECHO_REQUEST:
                    self.echoes.append(time.monotonic())
                    if self.answer_echo:
                        writer.write(HEADER.pack(4, ofp.OFPT_ECHO_REPLY, length, xid) + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
def socket_path() -> Iterator[Path]:
    path = Path(f"/tmp/aovs-probe-{uuid.uuid4().hex[:8]}.sock")
    yield path
    path.unlink(missing_ok=True)


async def _run(
    path: Path, switch: FakeSwitch, seconds: float, probe: float
) -> tuple[OpenFlowChannel, list[object], float]:
    server = await asyncio.start_unix_server(switch.serve, str(path))
    channel = OpenFlowChannel.for_mgmt_socket(path, inactivity_probe=probe, backoff_initial=0.01)
    events: list[object] = []
    channel.subscribe(events.append)
    try:
        await channel.start(within=2)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        return channel, events, started
    finally:
        await channel.close()
        server.close()


async def test_an_idle_switch_that_answers_gets_one_echo_per_interval(socket_path: Path) -> None:
    switch = FakeSwitch()
    _channel, events, started = await _run(socket_path, switch, 6.5 * PROBE, PROBE)
    assert events == [Connected(0x42)], "answered probes never reset the connection"
    assert 5 <= len(switch.echoes) <= 7, switch.echoes
    assert switch.echoes[0] - started >= PROBE * 0.9, "not before a whole idle interval"
    gaps = [b - a for a, b in zip(switch.echoes, switch.echoes[1:], strict=False)]
    assert min(gaps) >= PROBE * 0.9


async def test_a_silent_switch_is_reset_after_the_probe_goes_unanswered(
    socket_path: Path,
) -> None:
    switch = FakeSwitch(answer_echo=False)
    _channel, events, started = await _run(socket_path, switch, 3.2 * PROBE, PROBE)
    assert isinstance(events[1], Disconnected), events
    assert "inactivity probe unanswered" in events[1].reason
    assert switch.echoes[0] - started >= PROBE * 0.9
    assert Connected(0x42) in events[2:], "and it connects again"
    assert switch.sessions >= 2


async def test_probe_zero_sends_no_echo(socket_path: Path) -> None:
    switch = FakeSwitch(answer_echo=False)
    _channel, events, _ = await _run(socket_path, switch, 5 * PROBE, 0)
    assert (switch.echoes, events) == ([], [Connected(0x42)])


async def test_connect_timeout_bounds_start(socket_path: Path) -> None:
    channel = OpenFlowChannel.for_mgmt_socket(socket_path, connect_timeout=0.3)  # nobody there
    began = time.monotonic()
    try:
        with pytest.raises(RequestTimeoutError, match=r"not connected after 0\.3 s"):
            await channel.start()
    finally:
        await channel.close()
    assert 0.25 <= time.monotonic() - began < 2


def test_ovs_section_options_reach_the_channel_and_the_client() -> None:
    ovs = OVSSection(of_request_timeout=7, of_connect_timeout=9, of_inactivity_probe=4,
                     ovsdb_timeout=3)  # fmt: skip
    channel = OpenFlowChannel.for_mgmt_socket("/nonexistent", **ovs.openflow_channel_options)
    assert (channel.request_timeout, channel.connect_timeout) == (7, 9)
    assert (channel.echo_interval, channel.inactivity_timeout) == (4, 8)
    client = OVSDBClient(ovs.ovsdb_connection, **ovs.ovsdb_client_options)
    assert client.request_timeout == 3
    defaults = OpenFlowChannel.for_mgmt_socket("/x", **OVSSection().openflow_channel_options)
    assert (defaults.connect_timeout, defaults.echo_interval) == (30, 10)  # neutron's probe: 10


def test_a_negative_probe_is_refused() -> None:
    with pytest.raises(ValueError, match="0 disables"):
        OpenFlowChannel.for_mgmt_socket("/x", inactivity_probe=-1)
