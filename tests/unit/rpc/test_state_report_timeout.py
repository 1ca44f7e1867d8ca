"""A heartbeat the server lost is retried at the next interval, not after rpc_response_timeout:
``StateReporter`` gives ``report_state`` its interval as a fixed limit, and ``NeutronServerApi``
then neither waits longer nor backs off (neutron's other calls still do)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aovs.rpc.errors import RpcTimeout
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.state_report import StateReporter


class LosingServer:
    """The first report is taken and never answered (an RPC server stopping after taking it)."""

    host = "compute-1"

    def __init__(self) -> None:
        self.calls: list[tuple[float, float | None]] = []

    async def report_state(self, state: dict[str, Any], *, within: float | None = None) -> str:
        self.calls.append((time.monotonic(), within))
        if len(self.calls) == 1:
            assert within is not None, "a heartbeat must not wait rpc_response_timeout"
            await asyncio.sleep(within)
            raise RpcTimeout("report_state", within, "q-reports-plugin")
        return "alive"


async def test_a_lost_heartbeat_is_retried_one_interval_later() -> None:
    server = LosingServer()
    reporter = StateReporter(server, interval=0.2, configurations=dict,  # type: ignore[arg-type]
                             device_count=lambda: 0)  # fmt: skip
    reporter.start()
    try:
        async with asyncio.timeout(3):
            while reporter.last_status != "alive":  # noqa: ASYNC110 -- the reporter's own record
                await asyncio.sleep(0.02)
    finally:
        await reporter.stop()
    (first, limit), (second, _) = server.calls[:2]
    assert limit == 0.2
    assert second - first < 0.5, "the next heartbeat went out about one interval later"


class SilentTransport:
    """Every call times out at once, as the real transport does after ``timeout``."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def call(self, topic: str, method: str, args: object, **kw: Any) -> object:
        self.timeouts.append(kw["timeout"])
        raise RpcTimeout(method, kw["timeout"], topic)


async def test_a_fixed_limit_is_used_as_it_is_without_back_off() -> None:
    transport = SilentTransport()
    api = NeutronServerApi(transport, "compute-1", rpc_response_timeout=60)  # type: ignore[arg-type]
    began = time.monotonic()
    for _ in range(2):
        with contextlib.suppress(RpcTimeout):
            await api.report_state({}, within=0.2)
    assert transport.timeouts == [0.2, 0.2]  # not doubled
    assert time.monotonic() - began < 0.5  # and no back-off sleep between
