"""``refresh_tunnels`` (neutron's agent_restarted): on the first device-up reports after start.

The reporter's only peer is NeutronServerApi.update_device_list; a scripted stand-in records
each call's arguments and fails the ones the test asks it to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from aovs.agent.reporter import DeviceReporter
from aovs.rpc.backoff import BackingOffTimeouts
from aovs.rpc.errors import RpcTimeout
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.server_replies import DeviceListResult


@dataclass
class Call:
    up: tuple[str, ...]
    down: tuple[str, ...]
    refresh_tunnels: bool


@dataclass
class ScriptedServer:
    """update_device_list that records its calls; the first ``time_out`` calls time out and
    devices in ``fail_up`` are failed by the server."""

    time_out: int = 0
    fail_up: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    timeouts: BackingOffTimeouts = field(default_factory=lambda: BackingOffTimeouts(0.01, 0.01))

    async def update_device_list(
        self, up: Iterable[str] = (), down: Iterable[str] = (), *, refresh_tunnels: bool = False
    ) -> DeviceListResult:
        call = Call(tuple(up), tuple(down), refresh_tunnels)
        self.calls.append(call)
        if len(self.calls) <= self.time_out:
            raise RpcTimeout("update_device_list", 0.01, "q-plugin")
        failed = tuple(d for d in call.up if d in self.fail_up)
        self.fail_up.difference_update(failed)  # fails once
        accepted = tuple(d for d in call.up if d not in failed)
        return DeviceListResult(devices_up=accepted, failed_devices_up=failed)


def reporter_for(server: ScriptedServer, batch_size: int = 100) -> DeviceReporter:
    return DeviceReporter(cast(NeutronServerApi, server), batch_size=batch_size, retry_delay=0.01)


async def drained(reporter: DeviceReporter) -> None:
    reporter.start()
    try:
        async with asyncio.timeout(5):
            await reporter.drain()
    finally:
        await reporter.stop()


async def test_first_up_report_refreshes_tunnels_later_ones_do_not() -> None:
    server = ScriptedServer()
    reporter = reporter_for(server)
    reporter.report("a", up=True)
    reporter.report("b", up=True)
    await drained(reporter)
    reporter.report("c", up=True)
    reporter.report("a", up=False)
    await drained(reporter)
    assert [(c.down, c.up, c.refresh_tunnels) for c in server.calls] == [
        ((), ("a", "b"), True),
        (("a",), (), False),
        ((), ("c",), False),
    ]


async def test_every_batch_of_the_first_pass_refreshes_tunnels() -> None:
    """neutron's first iteration splits its ups in batches; each one carries the flag, so
    every network of the restarted agent's ports gets its full FDB."""
    server = ScriptedServer()
    reporter = reporter_for(server, batch_size=2)
    for device in "abcde":
        reporter.report(device, up=True)
    await drained(reporter)
    assert sorted(d for c in server.calls for d in c.up) == list("abcde")
    assert len(server.calls) == 3
    assert all(c.refresh_tunnels for c in server.calls)


async def test_a_failed_first_report_keeps_the_flag_until_accepted() -> None:
    server = ScriptedServer(time_out=1, fail_up={"b"})
    reporter = reporter_for(server)
    reporter.report("a", up=True)
    reporter.report("b", up=True)
    await drained(reporter)
    # timed out; then accepted for a but failed for b by the server; then b accepted
    assert [(c.up, c.refresh_tunnels) for c in server.calls] == [
        (("a", "b"), True),
        (("a", "b"), True),
        (("b",), True),
    ]
    reporter.report("a", up=True)
    reporter.report("a", up=False)
    reporter.report("a", up=True)
    await drained(reporter)
    assert server.calls[-1].refresh_tunnels is False


async def test_downs_alone_do_not_use_up_the_first_pass() -> None:
    """At start the agent may first report ports unplugged while it was down."""
    server = ScriptedServer()
    reporter = reporter_for(server)
    reporter.report("gone", up=False)
    await drained(reporter)
    reporter.report("a", up=True)
    await drained(reporter)
    assert [(c.down, c.up, c.refresh_tunnels) for c in server.calls] == [
        (("gone",), (), False),
        ((), ("a",), True),
    ]
