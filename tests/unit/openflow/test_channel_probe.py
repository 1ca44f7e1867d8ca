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
    path: Path, switch: FakeSwitch, seconds: float, probe: float, hold: float = 0.0
) -> tuple[OpenFlowChannel, list[object], float]:
    """Connect, then stay ``seconds``; with ``hold``, the switch is held busy that long from
    the start (a bundle commit in flight, :mod:`aovs.openflow.switch_busy`)."""
    server = await asyncio.start_unix_server(switch.serve, str(path))
    channel = OpenFlowChannel.for_mgmt_socket(path, inactivity_probe=probe, backoff_initial=0.01)
    events: list[object] = []
    channel.subscribe(events.append)
    try:
        await channel.start(within=2)
        started = time.monotonic()
        with channel.busy.holding(hold):
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


async def test_a_switch_held_busy_by_a_bundle_is_not_reset_until_the_hold_is_over(
    socket_path: Path,
) -> None:
    """ovs-vswitchd answers nothing while it commits a big bundle: the probe waits for the
    bundle's allowance, then still catches a switch that stays silent."""
    switch = FakeSwitch(answer_echo=False)
    _channel, events, started = await _run(socket_path, switch, 7.5 * PROBE, PROBE, 5 * PROBE)
    assert isinstance(events[1], Disconnected), events
    assert "inactivity probe unanswered" in events[1].reason
    assert switch.echoes[0] - started < 2 * PROBE  # the echo: after one idle interval
    # unheld, a reset every 2 intervals (3 in 7.5); held 5, one at 6, the next not before 8
    assert sum(isinstance(e, Disconnected) for e in events) == 1, events


async def test_a_request_behind_a_held_switch_gets_its_limit_after_the_hold(
    socket_path: Path,
) -> None:
    switch = FakeSwitch()  # answers no barrier: the request can only time out
    server = await asyncio.start_unix_server(switch.serve, str(socket_path))
    channel = OpenFlowChannel.for_mgmt_socket(socket_path, request_timeout=0.2)
    reconnected = asyncio.Event()
    channel.subscribe(lambda event: channel.connections > 1 and reconnected.set())
    try:
        await channel.start(within=2)
        began = time.monotonic()
        with channel.busy.holding(0.6), pytest.raises(RequestTimeoutError, match=r"within 0\.8 s"):
            await channel.barrier()
        assert 0.75 <= time.monotonic() - began < 1.5
        await asyncio.wait_for(reconnected.wait(), 2)  # the timeout reset the connection
        began = time.monotonic()
        with pytest.raises(RequestTimeoutError, match=r"within 0\.2 s"):  # no hold: its own limit
            await channel.barrier()
        assert time.monotonic() - began < 0.6
    finally:
        await channel.close()
        server.close()


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
