"""Sends device up/down reports in the background, in the order :mod:`.reports` keeps.

Off the critical path: the agent marks and moves on; one task sends what accumulated (downs
before ups, in calls of ``batch_size``), and gives failed calls back to the queue to be sent
again after a pause, so a slow or absent neutron-server delays reports, never the dataplane.

A call that timed out may still be applied by the server later, after the newer reports that
followed it (a slow server worker), leaving a wired port DOWN or a gone one UP: once calls go
through again, the devices of such calls are reported once more, with their latest state, when
any such late call must have landed (the longest RPC timeout later).

The first pass that reports devices up after the agent starts is neutron's first rpc_loop
iteration: its calls carry ``refresh_tunnels=True`` (``agent_restarted``), so l2population
sends this host the full FDB of those ports' networks, not only the changes it would have
missed. A call of that pass that fails keeps the flag for its devices until they are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aovs.agent.reports import ReportBatch, ReportQueue
from aovs.rpc.errors import RpcError
from aovs.rpc.server_api import NeutronServerApi

LOG = logging.getLogger(__name__)


class DeviceReporter:
    def __init__(
        self, api: NeutronServerApi, *, batch_size: int = 100, retry_delay: float = 1.0
    ) -> None:
        self.api = api
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.queue = ReportQueue()
        self.sent_up = 0
        self.sent_down = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.latest: dict[str, bool] = {}  # device -> the last state asked for (True: up)
        self._in_doubt: set[str] = set()  # devices of calls that failed: maybe applied late
        self._reassert: asyncio.Task[None] | None = None
        self._first_up_pass = True  # no device-up report sent since the agent started
        self._refresh_owed: set[str] = set()  # first-pass ups the server has not accepted yet

    def report(self, device: str, up: bool) -> None:
        self.latest[device] = up
        if up:
            self.queue.up(device)
        else:
            self.queue.down(device)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="aovs-device-reporter")

    async def stop(self) -> None:
        if self._reassert is not None:
            self._reassert.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> None:
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            retry: list[ReportBatch] = []  # oldest first
            first_pass = self._first_up_pass
            for batch in self.queue.take(self.batch_size):
                if first_pass and batch.up:
                    self._refresh_owed.update(batch.up)
                    self._first_up_pass = False
                if retry:
                    retry.append(batch)
                    continue
                refresh = not self._refresh_owed.isdisjoint(batch.up)
                try:
                    result = await self.api.update_device_list(
                        up=batch.up, down=batch.down, refresh_tunnels=refresh
                    )
                except RpcError as exc:
                    LOG.warning("device report failed; will retry",
                                extra={"up": len(batch.up), "down": len(batch.down),
                                       "error": exc})  # fmt: skip
                    retry.append(batch)
                    self._in_doubt.update(batch.up, batch.down)
                    continue
                if self._in_doubt and (self._reassert is None or self._reassert.done()):
                    self._reassert = asyncio.create_task(self._reassert_later())
                self.sent_up += len(batch.up)
                self.sent_down += len(batch.down)
                retry_up = tuple(result.failed_devices_up)
                retry_down = tuple(result.failed_devices_down)
                if self._refresh_owed:
                    self._refresh_owed.difference_update(batch.down)
                    self._refresh_owed.difference_update(set(batch.up).difference(retry_up))
                if retry_up or retry_down:
                    retry.append(ReportBatch(up=retry_up, down=retry_down))
            # newest first: a VM reboot's UP (taken after its DOWN) must not be dropped as
            # superseded by its own DOWN given back before it
            for batch in reversed(retry):
                self.queue.give_back(batch)
            failed = bool(retry)
            if failed:
                await asyncio.sleep(self.retry_delay)
                self._wake.set()
            elif len(self.queue):
                self._wake.set()
            else:
                self._idle.set()

    async def _reassert_later(self) -> None:
        await asyncio.sleep(self.api.timeouts.maximum)
        doubtful, self._in_doubt = self._in_doubt, set()
        for device in sorted(doubtful):
            self.report(device, self.latest[device])
