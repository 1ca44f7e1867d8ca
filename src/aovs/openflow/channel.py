"""An asyncio OpenFlow 1.3 connection to one bridge that keeps itself up.

``OpenFlowChannel`` connects to a bridge's management socket (``<rundir>/<bridge>.mgmt``, which
ovs-vswitchd serves even while ``flow-restore-wait`` is set) or listens for ovs-vswitchd as a TCP
controller. It negotiates 1.3 (only), reads the datapath id, answers and sends echoes, matches
replies to requests by xid (every request has a timeout), reassembles multipart replies, turns
OFPT_ERROR into ``SwitchError`` naming the failed message, and reconnects with capped
exponential backoff plus jitter. Anything malformed from the switch, or a request timeout,
resets the connection: pending requests fail with ``ChannelClosedError``, never hang.

Listeners (``subscribe``) or ``events()`` see ``Connected(datapath_id)`` after each handshake
and ``Disconnected(reason)`` when a connection that was up goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.backoff import Backoff
from aovs.openflow.errors import (
    ChannelClosedError,
    OpenFlowError,
    ProtocolError,
    RequestTimeoutError,
    SwitchError,
    VersionMismatchError,
)
from aovs.openflow.messages import (
    DATAPATH,
    HEADER,
    HEADER_SIZE,
    OFP_VERSION,
    describe,
    parse,
    serialize,
)
from aovs.openflow.switch_busy import SwitchBusy

LOG = logging.getLogger(__name__)

HELLO_ELEM_VERSIONBITMAP = 1
OFPET_HELLO_FAILED = 0
OFPHFC_INCOMPATIBLE = 0
ERROR_HEADER = struct.Struct("!HH")
MULTIPART_REPLY_HEAD = struct.Struct("!8xHH4x")  # ofp_header skipped; type, flags, pad


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake with the switch completed (again)."""

    datapath_id: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection that was up went away; the channel is reconnecting."""

    reason: str


ChannelEvent = Connected | Disconnected
Listener = Callable[[ChannelEvent], None]
ErrorWatcher = Callable[[int, SwitchError], bool]
StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Connector(Protocol):
    """How the channel gets a byte stream to the switch (dial out, or accept)."""

    # after a refused connect, retry within at most this many seconds (None: the backoff's)
    refused_retry: float | None

    async def connect(self) -> StreamPair: ...

    async def close(self) -> None: ...

    def __str__(self) -> str: ...


@dataclass
class UnixConnector:
    """Dial the bridge's management socket.

    A refused or missing socket is retried every 50 ms at most, not on the backoff's growing
    delays: such a connect is a local syscall that wakes no one (ovs-vswitchd is not even
    listening), and after an OVS restart every 100 ms waited is 100 ms without flows (the
    backoff's 0.4-0.8 s step came after ovs-vswitchd answered, measured at 1000 ports)."""

    path: Path
    refused_retry: float | None = 0.05

    async def connect(self) -> StreamPair:
        return await asyncio.open_unix_connection(str(self.path), limit=1 << 20)

    async def close(self) -> None:
        return None

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass
class TcpListenConnector:
    """Be the controller ovs-vswitchd dials (``tcp:IP:PORT`` in the bridge's Controller row)."""

    host: str
    port: int
    refused_retry: float | None = None
    _server: asyncio.Server | None = None
    _accepted: asyncio.Queue[StreamPair] = field(default_factory=asyncio.Queue)

    async def connect(self) -> StreamPair:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._on_accept, self.host, self.port, limit=1 << 20
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return await self._accepted.get()

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted.put_nowait((reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        while not self._accepted.empty():
            self._accepted.get_nowait()[1].close()

    def __str__(self) -> str:
        return f"ptcp:{self.port}:{self.host}"


@dataclass
class _Pending:
    future: asyncio.Future[Any]
    what: str
    parts: list[Any] | None = None  # multipart bodies collected so far
    unparsed: bool = False  # hand the reply messages over as bytes (parsed by the requester)


class _Connection:
    """One live stream: the writer, the pending requests, liveness bookkeeping."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, _Pending] = {}
        self.last_rx = time.monotonic()
        self.closed = asyncio.Event()
        self.reason = ""
        self.was_up = False

    def reset(self, reason: str) -> None:
        if not self.closed.is_set():
            self.reason = reason
            self.closed.set()
            self.writer.close()


class OpenFlowChannel:
    """One bridge's OpenFlow 1.3 session, reconnected for ever until ``close``.

    Timeouts, as neutron's ``[ovs]`` options name them: ``request_timeout``
    (``of_request_timeout``) bounds each request; ``connect_timeout`` (``of_connect_timeout``)
    is how long :meth:`start` waits for the first handshake unless told otherwise (the channel
    keeps trying after); ``inactivity_probe`` (``of_inactivity_probe``, 0 disables) is Open
    vSwitch's probe: after that many idle seconds an echo request, and a reset when nothing
    at all arrives within that many seconds more. ``echo_interval`` / ``inactivity_timeout``
    are the same two bounds set apart (idle time before the echo, total silence allowed);
    ``inactivity_probe=P`` is ``echo_interval=P, inactivity_timeout=2P``.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        request_timeout: float = 30.0,
        handshake_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        inactivity_probe: float | None = None,
        echo_interval: float = 5.0,
        inactivity_timeout: float = 15.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        busy: SwitchBusy | None = None,
    ) -> None:
        self.connector = connector
        # shared by the channels of one ovs-vswitchd: see aovs.openflow.switch_busy
        self.busy = SwitchBusy() if busy is None else busy
        self.request_timeout = request_timeout
        self.handshake_timeout = handshake_timeout
        self.connect_timeout = connect_timeout
        if inactivity_probe is not None:
            if inactivity_probe < 0:
                raise ValueError(f"inactivity_probe {inactivity_probe} < 0 (0 disables probes)")
            echo_interval, inactivity_timeout = inactivity_probe, 2 * inactivity_probe
        elif echo_interval > 0 and inactivity_timeout <= echo_interval:
            raise ValueError("need echo_interval < inactivity_timeout")
        self.echo_interval = echo_interval  # 0: no probes (the socket's end is still noticed)
        self.inactivity_timeout = inactivity_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._backoff = Backoff(initial=backoff_initial, cap=backoff_max)
        self.datapath_id: int | None = None
        self.connections = 0  # successful handshakes so far
        self._conn: _Connection | None = None
        self._up = asyncio.Event()
        self._listeners: list[Listener] = []
        self._error_watchers: list[ErrorWatcher] = []
        self._xids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def for_mgmt_socket(cls, path: str | Path, **options: Any) -> OpenFlowChannel:
        """A channel to ``<rundir>/<bridge>.mgmt``: aovs's default."""
        return cls(UnixConnector(Path(path)), **options)

    @classmethod
    def listening(cls, host: str, port: int, **options: Any) -> OpenFlowChannel:
        """A channel that waits for ovs-vswitchd to connect (port 0 picks a free port)."""
        return cls(TcpListenConnector(host, port), **options)

    def __repr__(self) -> str:
        return f"OpenFlowChannel({self.connector})"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, wait: bool = True, within: float | None = None) -> None:
        """Start connecting; with ``wait``, return once the first handshake is done (or raise
        RequestTimeoutError after ``within`` seconds, default ``connect_timeout``; the channel
        keeps trying)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"openflow {self.connector}")
        if wait:
            await self.wait_connected(self.connect_timeout if within is None else within)

    async def close(self) -> None:
        self._closing = True
        if self._conn is not None:
            self._conn.reset("channel closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.connector.close()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, within: float | None = None) -> None:
        try:
            await asyncio.wait_for(self._up.wait(), within)
        except TimeoutError:
            raise RequestTimeoutError(f"{self}: not connected after {within} s") from None

    def reset(self, reason: str) -> None:
        """Drop the current connection (it reconnects); pending requests fail."""
        if self._conn is not None:
            LOG.warning("%s: resetting connection: %s", self, reason)
            self._conn.reset(reason)

    # -- events --------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on each Connected/Disconnected; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def events(self) -> AsyncIterator[ChannelEvent]:
        """Connection events as an async iterator (for as long as the consumer iterates)."""
        queue: asyncio.Queue[ChannelEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    def _emit(self, event: ChannelEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                LOG.exception("%s: listener %r failed on %s", self, listener, event)

    # -- sending -------------------------------------------------------------------------------
    def next_xid(self) -> int:
        return next(self._xids) & 0xFFFFFFFF or next(self._xids)

    def allocate_xids(self, count: int) -> range:
        """``count`` consecutive xids (a bundle's adds), never 0, never wrapping mid-range."""
        start = self.next_xid()
        if start + count > 0xFFFFFFFF:
            self._xids = itertools.count(1)
            start = self.next_xid()
        self._xids = itertools.count(start + count)
        return range(start, start + count)

    def _live(self) -> _Connection:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise ChannelClosedError(f"{self}: not connected")
        return conn

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Write whole raw messages, then wait for the socket to drain (backpressure).

        ``data`` goes to the transport in ONE write: the transport keeps writes in order, so no
        other writer (an echo, an echo reply, another request) can land inside a message. (An
        earlier version wrote 256 KiB slices with a drain between them; under load an echo landed
        mid-bundle and ovs-vswitchd dropped the connection: OFPBFC_MSG_BAD_XID, bad lengths.)
        Callers bound the size: bundles send their adds in chunks of whole messages."""
        conn = self._live()
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except (ConnectionError, OSError) as exc:
            conn.reset(f"write failed: {exc}")
            raise ChannelClosedError(f"{self}: write failed: {exc}") from exc
        if conn.closed.is_set():
            raise ChannelClosedError(f"{self}: connection lost while writing ({conn.reason})")

    async def request(
        self,
        msg: Any,
        *,
        within: float | None = None,
        what: str | None = None,
        multipart: bool = False,
    ) -> Any:
        """Send an os-ken message and wait for the reply with its xid (a list for multipart)."""
        xid = self.next_xid()
        data = serialize(msg, xid)
        return await self.request_raw(
            data, xid, within=within, what=what or type(msg).__name__, multipart=multipart
        )

    async def request_raw(
        self,
        data: bytes,
        xid: int,
        *,
        within: float | None = None,
        what: str = "",
        multipart: bool = False,
        unparsed: bool = False,
    ) -> Any:
        """Send encoded bytes and wait for the reply with ``xid``; with ``unparsed``, the reply
        messages come back as bytes (a list of them for ``multipart``)."""
        conn = self._live()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.pending[xid] = _Pending(
            future, what or describe(data), [] if multipart else None, unparsed
        )
        # on top of its own limit, what the switch still owes to bundles in flight (its main
        # loop answers this request only after them)
        limit = (self.request_timeout if within is None else within) + self.busy.remaining()
        try:
            await self.send(data)
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            conn.reset(f"{what or describe(data)} unanswered after {limit:.1f} s")
            raise RequestTimeoutError(
                f"{self}: no reply to {what or describe(data)} within {limit:.1f} s"
            ) from None
        finally:
            conn.pending.pop(xid, None)
            if not future.done():
                future.cancel()

    async def barrier(self, within: float | None = None) -> None:
        """Wait until the switch has processed everything sent before."""
        await self.request(ofpp.OFPBarrierRequest(DATAPATH), within=within, what="barrier")

    async def multipart(self, msg: Any, *, within: float | None = None) -> list[Any]:
        """A multipart request; returns every reply part's ``body`` items, in order."""
        replies = await self.request(msg, within=within, multipart=True)
        items: list[Any] = []
        for reply in replies:
            body = reply.body
            if isinstance(body, list):
                items.extend(body)
            else:  # single-object replies (aggregate, desc)
                items.append(body)
        return items

    async def multipart_unparsed(self, msg: Any, *, within: float | None = None) -> list[bytes]:
        """A multipart request; returns the reply messages as bytes (headers included).

        For big replies (a 60k-flow dump is ~70 messages, 10 MB): the read loop only collects
        bytes, so echoes and other replies keep flowing while the caller decodes in slices.
        """
        xid = self.next_xid()
        data = serialize(msg, xid)
        replies: list[bytes] = await self.request_raw(
            data, xid, within=within, what=type(msg).__name__, multipart=True, unparsed=True
        )
        return replies

    @contextlib.contextmanager
    def watch_errors(self, watcher: ErrorWatcher) -> Iterator[None]:
        """Route OFPT_ERRORs for xids without a pending request to ``watcher`` (bundle adds).

        The watcher returns True when it claimed the error.
        """
        self._error_watchers.append(watcher)
        try:
            yield
        finally:
            self._error_watchers.remove(watcher)

    # -- connection loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                reader, writer = await self.connector.connect()
            except OSError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                if self.connector.refused_retry is not None:
                    delay = min(delay, self.connector.refused_retry)
                LOG.debug("%s: connect failed (%s); retry in %.2f s", self, exc, delay)
                await asyncio.sleep(delay)
                continue
            conn = _Connection(reader, writer)
            try:
                await self._serve(conn)
            except VersionMismatchError as exc:
                LOG.error("%s: %s", self, exc)
                conn.reset(str(exc))
            except (OpenFlowError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                conn.reset(f"{type(exc).__name__}: {exc}")
            finally:
                self._teardown(conn)
            if conn.was_up:
                failures = 0
                self._emit(Disconnected(conn.reason or "connection closed"))
                LOG.info("%s: disconnected: %s", self, conn.reason)
            failures += 1
            if not self._closing:
                await asyncio.sleep(self._backoff.delay(failures))

    async def _serve(self, conn: _Connection) -> None:
        await asyncio.wait_for(self._hello(conn), self.handshake_timeout)
        reader_task = asyncio.create_task(self._read_loop(conn))
        keepalive = asyncio.create_task(self._keepalive(conn))
        self._conn = conn
        try:
            features = await self.request(
                ofpp.OFPFeaturesRequest(DATAPATH),
                within=self.handshake_timeout,
                what="features request",
            )
            self.datapath_id = int(features.datapath_id)
            self.connections += 1
            conn.was_up = True
            self._up.set()
            LOG.info("%s: connected, datapath id %016x", self, self.datapath_id)
            self._emit(Connected(self.datapath_id))
            await conn.closed.wait()
        except BaseException:
            conn.reset(conn.reason or "handshake failed")
            raise
        finally:
            keepalive.cancel()
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader_task
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    def _teardown(self, conn: _Connection) -> None:
        self._up.clear()
        if self._conn is conn:
            self._conn = None
        conn.reset(conn.reason or "connection closed")
        for pending in conn.pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    ChannelClosedError(f"{self}: {pending.what} lost: {conn.reason}")
                )
        conn.pending.clear()

    async def _hello(self, conn: _Connection) -> None:
        hello = ofpp.OFPHello(DATAPATH, elements=[ofpp.OFPHelloElemVersionBitmap([OFP_VERSION])])
        conn.writer.write(serialize(hello, self.next_xid()))
        await conn.writer.drain()
        version, msg_type, length, xid = HEADER.unpack(await conn.reader.readexactly(HEADER_SIZE))
        if length < HEADER_SIZE:
            raise ProtocolError(f"bad length {length} in first message")
        body = await conn.reader.readexactly(length - HEADER_SIZE)
        if msg_type != ofp.OFPT_HELLO:
            raise ProtocolError(f"expected HELLO, got message type {msg_type}")
        if not _peer_speaks_13(version, body):
            error = HEADER.pack(OFP_VERSION, ofp.OFPT_ERROR, HEADER_SIZE + 4, xid)
            conn.writer.write(error + ERROR_HEADER.pack(OFPET_HELLO_FAILED, OFPHFC_INCOMPATIBLE))
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()
            raise VersionMismatchError(
                f"{self}: switch does not offer OpenFlow 1.3 (hello version {version}); "
                "set the bridge's protocols to include OpenFlow13"
            )

    async def _read_loop(self, conn: _Connection) -> None:
        reader = conn.reader
        try:
            while True:
                header = await reader.readexactly(HEADER_SIZE)
                version, msg_type, length, xid = HEADER.unpack(header)
                if version != OFP_VERSION or length < HEADER_SIZE:
                    raise ProtocolError(
                        f"bad header version={version} type={msg_type} length={length}"
                    )
                data = header + await reader.readexactly(length - HEADER_SIZE)
                conn.last_rx = time.monotonic()
                self._dispatch(conn, msg_type, xid, data)
        except asyncio.IncompleteReadError as exc:
            conn.reset("connection closed by switch" if not exc.partial else "truncated message")
        except ProtocolError as exc:
            LOG.warning("%s: protocol error, resetting: %s", self, exc)
            conn.reset(f"protocol error: {exc}")
        except (ConnectionError, OSError) as exc:
            conn.reset(f"read failed: {exc}")
        except Exception as exc:  # a bug must not leave the connection half-alive
            LOG.exception("%s: failed handling a message, resetting", self)
            conn.reset(f"internal error: {exc!r}")

    def _dispatch(self, conn: _Connection, msg_type: int, xid: int, data: bytes) -> None:
        if msg_type == ofp.OFPT_ECHO_REQUEST:
            reply = HEADER.pack(OFP_VERSION, ofp.OFPT_ECHO_REPLY, len(data), xid)
            conn.writer.write(reply + data[HEADER_SIZE:])
            return
        pending = conn.pending.get(xid)
        if msg_type == ofp.OFPT_ERROR:
            self._on_error(conn, xid, data, pending)
            return
        if pending is None:
            if msg_type not in _ASYNC_TYPES:
                LOG.debug("%s: unsolicited message type %d xid %d", self, msg_type, xid)
            return
        if pending.future.done():
            return
        if pending.unparsed:
            self._collect_unparsed(pending, msg_type, data)
            return
        msg = parse(data)
        if pending.parts is not None and msg_type == ofp.OFPT_MULTIPART_REPLY:
            pending.parts.append(msg)
            if msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            pending.future.set_result(pending.parts)
            return
        pending.future.set_result(msg)

    @staticmethod
    def _collect_unparsed(pending: _Pending, msg_type: int, data: bytes) -> None:
        if pending.parts is None:
            pending.future.set_result(data)
            return
        if msg_type != ofp.OFPT_MULTIPART_REPLY:
            pending.future.set_exception(
                ProtocolError(f"{pending.what}: expected a multipart reply, got type {msg_type}")
            )
            return
        if len(data) < MULTIPART_REPLY_HEAD.size:
            raise ProtocolError(f"{pending.what}: multipart reply of {len(data)} bytes")
        pending.parts.append(data)
        if not MULTIPART_REPLY_HEAD.unpack_from(data)[-1] & ofp.OFPMPF_REPLY_MORE:
            pending.future.set_result(pending.parts)

    def _on_error(self, conn: _Connection, xid: int, data: bytes, pending: _Pending | None) -> None:
        if len(data) < HEADER_SIZE + 4:
            raise ProtocolError(f"truncated OFPT_ERROR (xid {xid})")
        err_type, code = ERROR_HEADER.unpack_from(data, HEADER_SIZE)
        experimenter = None
        failed_data = data[HEADER_SIZE + 4 :]
        if err_type == ofp.OFPET_EXPERIMENTER and len(data) >= HEADER_SIZE + 8:
            # type, exp_type (the code), experimenter id, then the data
            (experimenter,) = struct.unpack_from("!I", data, HEADER_SIZE + 4)
            failed_data = data[HEADER_SIZE + 8 :]
        failed = pending.what if pending is not None else describe(failed_data)
        error = SwitchError(err_type, code, xid, failed, experimenter, bytes(failed_data))
        if pending is not None and not pending.future.done():
            pending.future.set_exception(error)
            return
        for watcher in self._error_watchers:
            if watcher(xid, error):
                return
        LOG.warning("%s: switch reported %s", self, error)

    async def _keepalive(self, conn: _Connection) -> None:
        """Open vSwitch's inactivity probe: after ``echo_interval`` s with nothing received, one
        echo request; if still nothing (any message counts, the reply or other) by the time the
        line has been silent ``inactivity_timeout`` s, reset (the channel reconnects)."""
        if self.echo_interval <= 0:
            return
        answer_within = self.inactivity_timeout - self.echo_interval
        echo_sent: float | None = None  # the outstanding probe, if any
        while not conn.closed.is_set():
            now = time.monotonic()
            if echo_sent is not None and conn.last_rx >= echo_sent:
                echo_sent = None  # answered, or the switch spoke anyway
            if echo_sent is not None:
                # a bundle commit keeps the switch silent for as long as the bundle holds it
                due = max(echo_sent, self.busy.until()) + answer_within
                if now >= due:  # _run logs the reason, once
                    idle = now - conn.last_rx
                    conn.reset(f"inactivity probe unanswered: no message for {idle:.1f} s")
                    return
                await asyncio.sleep(due - now)
                continue
            idle = now - conn.last_rx
            if idle < self.echo_interval:
                await asyncio.sleep(self.echo_interval - idle)
                continue
            echo = HEADER.pack(OFP_VERSION, ofp.OFPT_ECHO_REQUEST, HEADER_SIZE, 0)
            conn.writer.write(echo)
            echo_sent = time.monotonic()


_ASYNC_TYPES = frozenset(
    {ofp.OFPT_PORT_STATUS, ofp.OFPT_PACKET_IN, ofp.OFPT_FLOW_REMOVED, ofp.OFPT_ECHO_REPLY}
)


def _peer_speaks_13(version: int, body: bytes) -> bool:
    """HELLO negotiation: a version bitmap if the peer sent one, else its header version."""
    offset = 0
    while offset + 4 <= len(body):
        elem_type, elem_len = struct.unpack_from("!HH", body, offset)
        if elem_len < 4:
            break
        if elem_type == HELLO_ELEM_VERSIONBITMAP and elem_len >= 8:
            (bitmap,) = struct.unpack_from("!I", body, offset + 4)
            return bool(bitmap & (1 << OFP_VERSION))
        offset += (elem_len + 7) // 8 * 8
    return bool(version >= OFP_VERSION)
