"""Reporting ports up/down to neutron-server off the dataplane's critical path.

A real neutron-server spends ~0.1 s per port in update_device_list, so the agent only marks
ports here and goes on; a background task sends what accumulated in one batched call, a newer
mark superseding an older one for the same port (up then down before sending: only down is
sent). Devices the server failed, or whole calls that failed, are sent again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aovs.rpc.errors import RpcError
from aovs.rpc.server_api import NeutronServerApi

LOG = logging.getLogger(__name__)

UP, DOWN = "up", "down"


class DeviceStatusReporter:
    def __init__(self, api: NeutronServerApi, *, retry_delay: float = 1.0) -> None:
        self.api = api
        self.retry_delay = retry_delay
        self.reported: dict[str, str] = {}  # device -> last status the server acknowledged
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def mark_up(self, devices: Iterable[str]) -> None:
        self._mark(devices, UP)

    def mark_down(self, devices: Iterable[str]) -> None:
        self._mark(devices, DOWN)

    def _mark(self, devices: Iterable[str], status: str) -> None:
        for device in devices:
            self._pending[device] = status
        if self._pending:
            self._idle.clear()
            self._wake.set()

    @property
    def pending(self) -> dict[str, str]:
        return dict(self._pending)

    async def drain(self) -> None:
        """Wait until everything marked so far has been acknowledged by the server."""
        await self._idle.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="aovs-device-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if not batch:
                continue
            up = [d for d, s in batch.items() if s == UP]
            down = [d for d, s in batch.items() if s == DOWN]
            retry: list[str] = []
            try:
                result = await self.api.update_device_list(up=up, down=down)
            except RpcError as exc:
                LOG.warning(
                    "update_device_list (%d up, %d down) failed: %s", len(up), len(down), exc
                )
                retry = list(batch)
            else:
                for device in result.devices_up:
                    self.reported[device] = UP
                for device in (*result.devices_down, *result.unknown_down):
                    self.reported[device] = DOWN
                retry = [*result.failed_devices_up, *result.failed_devices_down]
                if retry:
                    LOG.warning("server failed %d device status updates; retrying", len(retry))
            for device in retry:
                if device in batch:  # a newer mark made meanwhile wins over the failed one
                    self._pending.setdefault(device, batch[device])
            if retry:
                await asyncio.sleep(self.retry_delay)
                self._wake.set()
            elif not self._pending:
                self._idle.set()
            else:
                self._wake.set()
