"""The shell's half of the local snapshot: the debounced, atomic writer.

The value and its parsing are :mod:`aovs.agent.snapshot` (pure, used by the core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from aovs.agent.snapshot import FILE_NAME, LocalSnapshot

LOG = logging.getLogger(__name__)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, whole, even across a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class SnapshotWriter:
    """Debounced writer: ``changed()`` is cheap; the file is written ``delay`` s after the first
    change of a burst (in a thread: fsync must not stall the event loop)."""

    def __init__(
        self, directory: Path, build: Callable[[], LocalSnapshot], delay: float = 0.2
    ) -> None:
        self.path = directory / FILE_NAME
        self.build = build
        self.delay = delay
        self.writes = 0
        self._task: asyncio.Task[None] | None = None
        self._dirty = False  # changed since the last build: a change during a write is not lost

    def changed(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_later(), name="aovs-snapshot")

    async def flush(self) -> None:
        """Write now if a write is due (on shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self._write()

    async def _write_later(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.delay)
            await self._write()

    async def _write(self) -> None:
        started = time.monotonic()
        self._dirty = False
        text = self.build().to_json()
        try:
            await asyncio.to_thread(write_atomically, self.path, text)
        except OSError as exc:
            LOG.error("snapshot not written", extra={"path": self.path, "error": exc})
            return
        self.writes += 1
        LOG.debug(
            "snapshot written",
            extra={"path": self.path, "bytes": len(text), "ms": (time.monotonic() - started) * 1e3},
        )
