"""A live view of some tables: the row cache plus an async stream of its events.

Created by :meth:`aovs.ovsdb.client.OVSDBClient.monitor`. The client feeds it from the socket's
reader task (so updates are applied in stream order) and re-establishes it after every reconnect;
the consumer only sees ordinary insert/modify/delete events either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aovs.ovsdb.cache import RowCache
from aovs.ovsdb.datum import Uuid
from aovs.ovsdb.errors import OVSDBError
from aovs.ovsdb.rows import Row, RowEvent

_CLOSED = object()


class Monitor:
    def __init__(self, monitor_id: str, cache: RowCache, *, emit_events: bool = True) -> None:
        self.id = monitor_id
        self.cache = cache
        self._emit = emit_events
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()
        self._failure: OVSDBError | None = None
        self._closed = False

    # -- what the consumer uses -----------------------------------------------------------------
    def rows(self, table: str) -> Mapping[Uuid, Row]:
        """The rows shown now (matching the monitor's condition), by UUID. Do not mutate."""
        return self.cache.visible(table)

    @property
    def synced(self) -> bool:
        """True once the initial state has been received (stays true across reconnects)."""
        return self._synced.is_set()

    def pending(self) -> list[RowEvent]:
        """Every event queued now, without waiting: lets a consumer handle a burst as a batch."""
        events = []
        while not self._events.empty():
            item = self._events.get_nowait()
            if item is _CLOSED:
                self._events.put_nowait(item)
                break
            events.append(item)
        return events

    def __aiter__(self) -> Monitor:
        return self

    async def __anext__(self) -> RowEvent:
        if self._failure is not None and self._events.empty():
            raise self._failure
        item = await self._events.get()
        if item is _CLOSED:
            self._events.put_nowait(item)
            raise StopAsyncIteration
        if isinstance(item, OVSDBError):
            raise item
        event: RowEvent = item
        return event

    async def wait_for(self, predicate: Callable[[Monitor], bool], timeout: float) -> None:  # noqa: ASYNC109 -- a per-request bound
        """Wait until ``predicate(self)`` holds on the cache (e.g. an Interface got its ofport)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self._failure is not None:
                    raise self._failure
                if self._closed:
                    raise OVSDBError(f"monitor {self.id} closed")
                self._changed.clear()
                await self._changed.wait()

    # -- what the client calls, from the reader task ---------------------------------------------
    def on_state(self, state: Any) -> None:
        self._publish(self.cache.replace(state))
        self._synced.set()

    def on_update(self, updates: Any) -> None:
        self._publish(self.cache.apply(updates))

    def fail(self, error: OVSDBError) -> None:
        """The monitor cannot be re-established: its consumer gets ``error``, not silence."""
        self._failure = error
        self._events.put_nowait(error)
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._events.put_nowait(_CLOSED)
        self._changed.set()

    def _publish(self, events: list[RowEvent]) -> None:
        if self._emit:
            for event in events:
                self._events.put_nowait(event)
        self._changed.set()
