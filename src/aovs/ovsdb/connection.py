"""One JSON-RPC session over one socket: requests mapped to futures, echo answered, probes sent.

A :class:`Connection` lives as long as its socket. Everything received is handled in order by a
single reader task: replies resolve futures (after an optional inline ``on_result`` callback, so a
monitor's initial state is applied before any update that follows it), notifications go to the
owner's callback, the server's ``echo`` is answered. Anything the peer gets wrong closes the
connection; ``run`` returns why, and the owner (:class:`aovs.ovsdb.client.OVSDBClient`) logs
it once and reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb.errors import ConnectionLost, JsonRpcError, OVSDBError, ProtocolError
from aovs.ovsdb.stream import JsonStream

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
_LATE_REPLIES_REMEMBERED = 1024

NotificationHandler = Callable[[str, Any], None]
ResultCallback = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where ovsdb-server listens: ``unix:PATH`` or ``tcp:IP:PORT``."""

    kind: str
    address: str
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", rest)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if host and port.isdigit():
                return cls("tcp", host.strip("[]"), int(port))
        raise ValueError(f"bad OVSDB connection {text!r}: expected unix:PATH or tcp:IP:PORT")

    def __str__(self) -> str:
        return f"unix:{self.address}" if self.kind == "unix" else f"tcp:{self.address}:{self.port}"


@dataclass(slots=True)
class _Pending:
    method: str
    future: asyncio.Future[Any]
    on_result: ResultCallback | None


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_notification: NotificationHandler,
        *,
        name: str,
        probe_interval: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_notification = on_notification
        self.name = name
        self._probe_interval = probe_interval
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: collections.deque[int] = collections.deque(maxlen=_LATE_REPLIES_REMEMBERED)
        self._stream = JsonStream()
        self._last_received = time.monotonic()
        self._closed_reason: str | None = None

    @classmethod
    async def open(
        cls,
        target: Target,
        on_notification: NotificationHandler,
        *,
        timeout: float,  # noqa: ASYNC109 -- a per-request bound
        probe_interval: float,
    ) -> Connection:
        if target.kind == "unix":
            opening = asyncio.open_unix_connection(target.address, limit=READ_SIZE)
        else:
            opening = asyncio.open_connection(target.address, target.port, limit=READ_SIZE)
        reader, writer = await asyncio.wait_for(opening, timeout)
        return cls(reader, writer, on_notification, name=str(target), probe_interval=probe_interval)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    # -- sending ----------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        if self._closed_reason is not None:
            raise ConnectionLost(f"{self.name}: {self._closed_reason}")
        self._writer.write(json.dumps(message, separators=(",", ":")).encode())

    async def request(
        self,
        method: str,
        params: list[Any],
        *,
        timeout: float,  # noqa: ASYNC109 -- a per-request bound
        on_result: ResultCallback | None = None,
    ) -> Any:
        """Send a request and wait for its reply (``TimeoutError`` after ``timeout`` seconds).

        ``on_result`` runs in the reader, in stream order, before any later message is handled.
        """
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send({"id": request_id, "method": method, "params": params})
        self._pending[request_id] = _Pending(method, future, on_result)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no reply to {method} within {timeout}s") from None
        finally:
            self._pending.pop(request_id, None)
            if future.cancelled() or not future.done():
                # timed out, or the caller was cancelled (an outer timeout): the reply may still
                # come, and is no reason to reset the session
                self._abandoned.append(request_id)

    # -- receiving --------------------------------------------------------------------------
    async def run(self) -> str:
        """Read until the socket closes or the peer misbehaves; returns why it stopped."""
        prober = asyncio.create_task(self._probe(), name=f"ovsdb-probe {self.name}")
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    pending = self._stream.pending
                    self.close(
                        f"truncated: closed mid-message, {pending} chars pending"
                        if pending
                        else "closed by peer"
                    )
                    break
                self._last_received = time.monotonic()
                for message in self._stream.feed(data):
                    self._dispatch(message)
        except ProtocolError as exc:  # the owner logs the reason this returns, once
            self.close(f"protocol error: {exc}")
        except (ConnectionError, OSError) as exc:
            self.close(f"socket error: {exc}")
        except asyncio.CancelledError:
            self.close("cancelled")
            raise
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        return self._closed_reason or "closed"

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise ProtocolError(f"not a JSON-RPC object: {_short(message)}")
        method = message.get("method")
        if method is not None:
            self._handle_request(method, message)
            return
        if "id" not in message or ("result" not in message and "error" not in message):
            raise ProtocolError(f"neither request nor reply: {_short(message)}")
        self._handle_reply(message)

    def _handle_request(self, method: Any, message: dict[str, Any]) -> None:
        params = message.get("params")
        if method == "echo":
            self._send({"id": message.get("id"), "result": params, "error": None})
        elif method in ("update2", "update") and message.get("id") is None:
            self._on_notification(method, params)
        else:
            raise ProtocolError(f"unknown method {method!r}: {_short(message)}")

    def _handle_reply(self, message: dict[str, Any]) -> None:
        request_id = message["id"]
        pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is None:
            if request_id in self._abandoned:
                log.debug("late reply ignored", extra={"remote": self.name, "id": request_id})
                return
            raise ProtocolError(f"reply to unknown id {request_id!r}: {_short(message)}")
        if pending.future.done():  # the requester was cancelled
            return
        error = message.get("error")
        if error is not None:
            pending.future.set_exception(JsonRpcError(pending.method, error))
            return
        result = message.get("result")
        if pending.on_result is not None:
            try:
                pending.on_result(result)
            except OVSDBError as exc:
                pending.future.set_exception(exc)
                return
        pending.future.set_result(result)

    async def _probe(self) -> None:
        """Send our own ``echo`` when the line has been quiet for a whole probe interval."""
        while True:
            idle = time.monotonic() - self._last_received
            if idle < self._probe_interval:
                await asyncio.sleep(self._probe_interval - idle)
                continue
            try:
                await self.request("echo", ["aovs-probe"], timeout=self._probe_interval)
            except TimeoutError:
                log.warning(
                    "ovsdb inactivity probe unanswered; resetting",
                    extra={"remote": self.name, "seconds": self._probe_interval},
                )
                self.close("inactivity probe unanswered")
                return
            except ConnectionLost:
                return

    # -- closing ----------------------------------------------------------------------------
    def close(self, reason: str = "closed by client") -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self._writer.close()
        self._reader.feed_eof()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionLost(f"{self.name}: {reason}"))
        self._pending.clear()


def _short(message: Any) -> str:
    text = json.dumps(message) if not isinstance(message, str) else message
    return text if len(text) <= 200 else f"{text[:200]}..."
