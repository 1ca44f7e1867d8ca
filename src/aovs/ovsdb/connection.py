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
import ipaddress
import itertools
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb.errors import ConnectionLost, JsonRpcError, OVSDBError, ProtocolError
from aovs.ovsdb.stream import JsonStream
from aovs.ovsdb.tls import TLSFiles, describe_tls_error

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
_LATE_REPLIES_REMEMBERED = 1024

NotificationHandler = Callable[[str, Any], None]
ResultCallback = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where ovsdb-server listens: ``unix:PATH``, ``tcp:IP:PORT`` or ``ssl:IP:PORT`` (an IPv6
    address in brackets: ``tcp:[::1]:6640``), as neutron's ``[ovs] ovsdb_connection``."""

    kind: str
    address: str
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", rest)
        if kind in ("tcp", "ssl"):
            host, port = _host_port(rest)
            if host is not None:
                return cls(kind, host, port)
        raise ValueError(
            f"bad OVSDB connection {text!r}: expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT "
            "(an IPv6 address in brackets: tcp:[::1]:6640)"
        )

    @property
    def secure(self) -> bool:
        return self.kind == "ssl"

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.kind}:{host}:{self.port}"


def _host_port(text: str) -> tuple[str | None, int]:
    """``IP:PORT`` or ``[IPv6]:PORT``; (None, 0) if it is neither."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None, 0
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address without brackets: ambiguous, refused
        return None, 0
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None, 0
    return host, int(port)


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
        tls: TLSFiles | None = None,
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
        self._tls = tls

    @classmethod
    async def open(
        cls,
        target: Target,
        on_notification: NotificationHandler,
        *,
        timeout: float,  # noqa: ASYNC109 -- a per-request bound
        probe_interval: float,
        tls: tuple[TLSFiles, ssl.SSLContext] | None = None,
    ) -> Connection:
        """Connect (and, for ``ssl:``, complete the TLS handshake) within ``timeout``.

        A TLS failure raises ``ssl.SSLError`` (an ``OSError``); :func:`describe_tls_error`
        says it in one line."""
        if target.kind == "unix":
            opening = asyncio.open_unix_connection(target.address, limit=READ_SIZE)
        elif tls is not None:
            opening = asyncio.open_connection(
                target.address, target.port, limit=READ_SIZE, ssl=tls[1],
                ssl_handshake_timeout=timeout,
            )  # fmt: skip
        else:
            opening = asyncio.open_connection(target.address, target.port, limit=READ_SIZE)
        # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as the
        # attempt fails (a quick TLS refusal), and the client's close() would then wait for ever
        async with asyncio.timeout(timeout):
            reader, writer = await opening
        return cls(
            reader, writer, on_notification, name=str(target), probe_interval=probe_interval,
            tls=tls[0] if tls is not None else None,
        )  # fmt: skip

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
        received = False
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    pending = self._stream.pending
                    self.close(
                        f"truncated: closed mid-message, {pending} chars pending"
                        if pending
                        else self._refused_after_handshake(received) or "closed by peer"
                    )
                    break
                received = True
                self._last_received = time.monotonic()
                for message in self._stream.feed(data):
                    self._dispatch(message)
        except ProtocolError as exc:  # the owner logs the reason this returns, once
            self.close(f"protocol error: {exc}")
        except (ConnectionError, OSError) as exc:
            # TLS 1.3: the server checks our certificate after our side of the handshake, so
            # its refusal (an alert, or only the connection closed) arrives here, not at connect
            quiet = not received and isinstance(exc, ConnectionError)
            refused = self._refused_after_handshake(not quiet)
            self.close(describe_tls_error(exc, self._tls) or refused or f"socket error: {exc}")
        except asyncio.CancelledError:
            self.close("cancelled")
            raise
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        return self._closed_reason or "closed"

    def _refused_after_handshake(self, received: bool) -> str | None:
        """A TLS session the server closed before saying anything: it refused our certificate,
        and its alert was lost (our first request raced it: the server's reset discards it)."""
        if self._tls is None or received:
            return None
        where = f"[ovs] ssl_cert_file {self._tls.cert_file}"
        return f"TLS: the server refused our certificate ({where}; it closed the session at once)"

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
