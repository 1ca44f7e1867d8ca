"""The OVSDB client: one connection kept alive, monitors re-established, transactions run.

A supervisor task owns the connection: connect, ``get_schema``, re-send every monitor's
``monitor_cond`` (each reply is diffed into ordinary events by the monitor's cache), then read
until the connection ends; wait a jittered, capped, exponential delay; repeat. A failure to
connect or to set the session up is logged once (again only when the reason changes) until a
session is up; an ``ssl:`` connection's TLS failure is one line naming the option to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aovs.backoff import Backoff
from aovs.ovsdb.cache import RowCache
from aovs.ovsdb.conditions import Condition
from aovs.ovsdb.connection import Connection, Target
from aovs.ovsdb.errors import ConnectionLost, JsonRpcError, OVSDBError, ProtocolError
from aovs.ovsdb.monitor import Monitor
from aovs.ovsdb.schema import DatabaseSchema
from aovs.ovsdb.tls import TLSConfigError, TLSFiles, describe_tls_error
from aovs.ovsdb.transaction import Command, TransactionResult, run_transaction

log = logging.getLogger(__name__)


class OVSDBClient:
    def __init__(
        self,
        connection: str,
        *,
        database: str = "Open_vSwitch",
        request_timeout: float = 10.0,
        probe_interval: float = 5.0,
        backoff: Backoff | None = None,
        ssl_key_file: str | Path | None = None,
        ssl_cert_file: str | Path | None = None,
        ssl_ca_cert_file: str | Path | None = None,
    ) -> None:
        """``connection`` is neutron's ``[ovs] ovsdb_connection``; for ``ssl:`` the three
        ``ssl_*`` files are required (ignored otherwise, as by neutron) and read at once: a bad
        one raises :class:`~aovs.ovsdb.tls.TLSConfigError`. ``request_timeout`` bounds every
        request and each connection attempt (neutron's ``[ovs] ovsdb_timeout``)."""
        self.target = Target.parse(connection)
        self._tls: TLSFiles | None = None
        self._tls_context: tuple[object, ssl.SSLContext] | None = None
        if self.target.secure:
            self._tls = TLSFiles.required(ssl_key_file, ssl_cert_file, ssl_ca_cert_file,
                                          str(self.target))  # fmt: skip
            self._tls_context = (self._tls.fingerprint(), self._tls.context())
        self.database = database
        self.request_timeout = request_timeout
        self.probe_interval = probe_interval
        self._backoff = backoff or Backoff()
        self._monitors: dict[str, Monitor] = {}
        self._monitor_ids = itertools.count(1)
        self._conn: Connection | None = None
        self._schema: DatabaseSchema | None = None
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False  # close() called: the supervisor stops even if a cancel was lost
        self._cfg_monitor: Monitor | None = None
        self.connects = 0  # sessions established so far (for tests and logs)
        self.last_failure: str | None = None  # why the last attempt failed (None once up)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 -- a per-request bound
        """Start connecting (in the background, forever); wait up to ``timeout`` for the first
        session (``None``: the request timeout)."""
        if self._supervisor is None:
            self._closing = False
            self._supervisor = asyncio.create_task(self._supervise(), name="ovsdb-client")
        await self.wait_connected(self.request_timeout if timeout is None else timeout)

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 -- a per-request bound
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            last = f" ({self.last_failure})" if self.last_failure else ""
            raise ConnectionLost(f"{self.target}: not connected after {timeout}s{last}") from None

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def schema(self) -> DatabaseSchema:
        if self._schema is None:
            raise ConnectionLost(f"{self.target}: never connected")
        return self._schema

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for monitor in self._monitors.values():
            monitor.close()
        self._monitors.clear()

    async def __aenter__(self) -> OVSDBClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def reset(self, reason: str = "reset requested") -> None:
        """Drop the current connection (the supervisor reconnects). For tests and operators."""
        if self._conn is not None:
            self._conn.close(reason)

    # -- the supervisor ------------------------------------------------------------------------
    def _tls_for_connect(self) -> tuple[TLSFiles, ssl.SSLContext] | None:
        """The TLS files and context for the next attempt: read again if a file changed on disk
        (a rotated certificate); raises :class:`TLSConfigError` if they became unusable."""
        if self._tls is None or self._tls_context is None:
            return None
        fingerprint = self._tls.fingerprint()
        if fingerprint != self._tls_context[0]:
            self._tls_context = (fingerprint, self._tls.context())
        return self._tls, self._tls_context[1]

    async def _supervise(self) -> None:
        logged: str | None = None  # the failure logged in this outage: a repeat is not logged

        def failed(what: str, exc: BaseException) -> None:
            nonlocal logged
            reason = describe_tls_error(exc, self._tls) or str(exc) or type(exc).__name__
            if self._tls is not None and what == "connect" and isinstance(exc, ConnectionError):
                closed = str(exc) or "the server closed the connection"
                reason = f"TLS handshake: {closed} (is the server's remote pssl:?)"
            self.last_failure = f"{what} failed: {reason}"
            line = f"ovsdb {self.last_failure}"
            # the same failure again, its details aside (a refused certificate's alert may be
            # read or lost; a connect error names the address): logged once per outage
            kind = line.split(" (", 1)[0]
            level = logging.DEBUG if kind == logged else logging.WARNING
            log.log(level, line, extra={"remote": str(self.target)})
            logged = kind

        while not self._closing:
            try:
                conn = await Connection.open(
                    self.target,
                    self._on_notification,
                    timeout=self.request_timeout,
                    probe_interval=self.probe_interval,
                    tls=self._tls_for_connect(),
                )
            except TimeoutError:
                failed("connect", TimeoutError(f"no connection within {self.request_timeout}s"))
                await asyncio.sleep(self._backoff.next_delay())
                continue
            except (OSError, TLSConfigError) as exc:
                failed("connect", exc)
                await asyncio.sleep(self._backoff.next_delay())
                continue
            reader = asyncio.create_task(conn.run(), name=f"ovsdb-reader {conn.name}")
            try:
                await self._establish(conn)
            except (OVSDBError, TimeoutError) as exc:
                conn.close(f"setup failed: {exc}")
                reason = await reader
                # a refused client certificate surfaces in the reader, at the first read: its
                # reason is the TLS one, the request only saw the connection go
                failed("session setup", exc if reason.startswith("setup failed") else
                       ConnectionLost(reason))  # fmt: skip
                await asyncio.sleep(self._backoff.next_delay())
                continue
            except asyncio.CancelledError:
                conn.close("client closed")
                await asyncio.shield(reader)
                raise
            logged = self.last_failure = None
            self._backoff.reset()
            self.connects += 1
            self._conn = conn
            self._ready.set()
            log.info("ovsdb connected", extra={"remote": conn.name, "session": self.connects})
            try:
                reason = await asyncio.shield(reader)
            except asyncio.CancelledError:
                conn.close("client closed")
                await reader
                raise
            finally:
                self._ready.clear()
                self._conn = None
            log.warning("ovsdb connection lost: %s", reason, extra={"remote": conn.name})
            await asyncio.sleep(self._backoff.next_delay())

    async def _establish(self, conn: Connection) -> None:
        raw = await conn.request("get_schema", [self.database], timeout=self.request_timeout)
        self._schema = DatabaseSchema.parse(raw)
        for monitor in list(self._monitors.values()):
            try:
                await self._send_monitor(conn, monitor)
            except JsonRpcError as exc:  # the schema changed under a monitor: tell its consumer
                log.error("ovsdb monitor refused: %s", exc, extra={"monitor": monitor.id})
                self._monitors.pop(monitor.id, None)
                monitor.fail(exc)

    async def _send_monitor(self, conn: Connection, monitor: Monitor) -> None:
        monitor.cache.bind(self.schema)
        params = [self.database, monitor.id, monitor.cache.request()]
        await conn.request(
            "monitor_cond", params, timeout=self.request_timeout, on_result=monitor.on_state
        )

    def _on_notification(self, method: str, params: Any) -> None:
        if method != "update2" or not isinstance(params, list) or len(params) != 2:
            raise ProtocolError(f"unexpected notification {method} {params!r:.200}")
        monitor = self._monitors.get(params[0]) if isinstance(params[0], str) else None
        if monitor is None:
            raise ProtocolError(f"update2 for unknown monitor {params[0]!r:.80}")
        monitor.on_update(params[1])

    # -- monitors ----------------------------------------------------------------------------
    async def monitor(
        self,
        tables: Mapping[str, Sequence[str]],
        where: Mapping[str, Condition] | None = None,
        *,
        emit_events: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 -- a per-request bound
    ) -> Monitor:
        """Monitor ``tables`` (name -> columns); returns once the initial rows are cached and
        queued as insert events. ``where`` filters rows per table (see :mod:`.conditions`)."""
        timeout = self.request_timeout if timeout is None else timeout
        monitor = Monitor(
            f"aovs-{next(self._monitor_ids)}", RowCache(tables, where), emit_events=emit_events
        )
        async with asyncio.timeout(timeout):
            await self._ready.wait()
            monitor.cache.bind(self.schema)  # unknown table/column: SchemaError, nothing sent
            self._monitors[monitor.id] = monitor
            while not monitor.synced:
                conn = self._conn
                if conn is None:
                    await self._ready.wait()
                    continue
                try:
                    await self._send_monitor(conn, monitor)
                except ConnectionLost:
                    await asyncio.sleep(0.01)  # let the supervisor notice; it re-sends the monitor
                    continue
                except BaseException:
                    self._monitors.pop(monitor.id, None)
                    raise
        return monitor

    async def cancel_monitor(self, monitor: Monitor) -> None:
        """Stop a monitor (``monitor_cancel``); its iterator ends after the queued events."""
        if self._monitors.pop(monitor.id, None) is None:
            return
        monitor.close()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ConnectionLost, JsonRpcError, TimeoutError):
                await conn.request("monitor_cancel", [monitor.id], timeout=self.request_timeout)

    # -- transactions --------------------------------------------------------------------------
    async def request(self, method: str, params: list[Any], timeout: float | None = None) -> Any:  # noqa: ASYNC109 -- a per-request bound
        """One raw JSON-RPC request on the current session (waits for one to exist)."""
        timeout = self.request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.wait_connected(timeout)
        conn = self._conn
        if conn is None:
            raise ConnectionLost(f"{self.target}: not connected")
        return await conn.request(method, params, timeout=max(0.0, deadline - loop.time()))

    async def transact_ops(
        self,
        ops: Sequence[Mapping[str, Any]],
        timeout: float | None = None,  # noqa: ASYNC109 -- a per-request bound
    ) -> list[Any]:
        """Run raw RFC 7047 operations as one transaction; returns the raw result list."""
        result = await self.request("transact", [self.database, *ops], timeout)
        if not isinstance(result, list):
            raise ProtocolError(f"transact result is not a list: {result!r:.200}")
        return result

    async def transact(
        self,
        *commands: Command,
        wait_applied: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 -- a per-request bound
    ) -> TransactionResult:
        """Run ``commands`` as ONE transaction (see :mod:`.transaction`). With ``wait_applied``,
        also wait until ovs-vswitchd has applied it (``cur_cfg`` reaches our ``next_cfg``)."""
        timeout = self.request_timeout if timeout is None else timeout
        async with asyncio.timeout(timeout):
            await self._ready.wait()
            result = await run_transaction(self, commands, bump_cfg=wait_applied)
            if wait_applied and result.next_cfg is not None:
                await self._wait_cur_cfg(result.next_cfg, timeout)
            return result

    async def _wait_cur_cfg(self, next_cfg: int, timeout: float) -> None:  # noqa: ASYNC109 -- a per-request bound
        if self._cfg_monitor is None:
            self._cfg_monitor = await self.monitor({"Open_vSwitch": ["cur_cfg"]}, emit_events=False)

        def applied(monitor: Monitor) -> bool:
            return any(row["cur_cfg"] >= next_cfg for row in monitor.rows("Open_vSwitch").values())

        await self._cfg_monitor.wait_for(applied, timeout)
