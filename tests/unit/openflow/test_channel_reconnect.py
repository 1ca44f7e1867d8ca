"""A missing management socket is retried at once, not on the backoff's growing delays."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aovs.openflow.channel import OpenFlowChannel, StreamPair, UnixConnector


@dataclass
class CountingConnector(UnixConnector):
    attempts: int = 0

    async def connect(self) -> StreamPair:
        self.attempts += 1
        return await super().connect()


async def _attempts_in(connector: CountingConnector, seconds: float) -> int:
    channel = OpenFlowChannel(connector, backoff_initial=0.05, backoff_max=5.0)
    await channel.start(wait=False)
    await asyncio.sleep(seconds)
    await channel.close()
    return connector.attempts


async def test_a_missing_unix_socket_is_retried_every_50_ms(tmp_path: Path) -> None:
    # ~20 tries in a second at 50 ms; the backoff alone (0.1, 0.2, 0.4, 0.8 s...) makes 4-6
    fast = await _attempts_in(CountingConnector(tmp_path / "br-int.mgmt"), 1.0)
    assert fast >= 10


async def test_without_refused_retry_the_backoff_grows(tmp_path: Path) -> None:
    slow = CountingConnector(tmp_path / "br-int.mgmt", refused_retry=None)
    assert await _attempts_in(slow, 1.0) <= 7
