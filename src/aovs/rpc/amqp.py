"""oslo.messaging-compatible RPC over RabbitMQ with aio-pika: call, cast, fanout cast, serve.

One :class:`RpcTransport` per process holds one AMQP connection, supervised by a task that
connects to the brokers of ``transport_url`` and, after any loss (a broker or cluster node
stopped, ``rabbitmqctl close_all_connections``, a channel error, a consumer cancelled by the
broker because its queue went away with a cluster node, a broker that stopped answering),
connects again and re-runs every declaration and consumer (the reply queue and each
:class:`RpcServer`: notification, fanout and resource push queues). Brokers are tried as
oslo.messaging tries them: the list shuffled once, then the next one after a loss
(``kombu_failover_strategy``); when every broker failed once, the next round waits
``rabbit_retry_interval`` (+ ``rabbit_retry_backoff`` per round, at most
``rabbit_interval_max``), forever, so the transport comes back as soon as any broker does.
Calls in flight when the connection drops fail at once with :class:`RpcConnectionLost` (the
caller's retry policy decides; :class:`NeutronServerApi` retries), nothing hangs: every call has
a deadline covering the wait for a connection, the publish and the reply.

``[oslo_messaging_rabbit]`` (:class:`aovs.rpc.options.RabbitOptions`, overridden by the URL's
query parameters) gives TLS (:mod:`aovs.rpc.tls`), the heartbeat (negotiated with the broker,
plus a liveness probe every ``heartbeat_timeout_threshold / heartbeat_rate`` s: a broker silent
for ``heartbeat_timeout_threshold`` s is lost), the reconnect delays, and the durability of the
queues. Queues and exchanges are declared exactly as oslo's rabbit driver declares them with the
same options (any other argument makes RabbitMQ refuse the declaration with PRECONDITION_FAILED
when a real neutron peer declared it first), on a channel of their own, with oslo's two
fallbacks: an exchange or queue that exists non-durable is used non-durable, and a queue stuck
on a cluster node that is down (NOT_FOUND) is deleted and declared again. A durable classic
queue cannot be while its node is down: the other consumers (and calls) run meanwhile and the
missing ones are declared again in the background until the node is back. Session setup has a
deadline (``setup_timeout``): a declaration a hung node never answers fails the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from aovs.rpc import wire
from aovs.rpc.backoff import RetryIntervals
from aovs.rpc.dispatch import Dispatcher
from aovs.rpc.errors import RpcConnectionLost, RpcError, RpcTimeout
from aovs.rpc.options import (
    ExchangeSpec,
    QueueSpec,
    RabbitOptions,
    control_exchange,
    fanout_exchange,
    ignored_query,
    topic_queue,
    transient_queue,
)
from aovs.rpc.tls import (
    TlsConfigError,
    client_context,
    closed_during_handshake,
    describe_tls_error,
)
from aovs.rpc.url import BrokerAddress, parse_transport

LOG = logging.getLogger(__name__)

CONTROL_EXCHANGE = "neutron"
PUBLISH_TIMEOUT = 10.0  # casts and replies: how long to wait for a connection and a confirm
CLOSE_TIMEOUT = 2.0  # closing a lost connection must not wait on a dead peer
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,  # aio-pika: "channel closed" / "connection closed" on a dead session
)

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*_BROKER_ERRORS, TimeoutError, TlsConfigError)
_DECLARE_ERRORS: tuple[type[BaseException], ...] = (*_BROKER_ERRORS, TimeoutError)

SessionHook = Callable[["Session"], Awaitable[None]]
Consumer = Callable[[AbstractIncomingMessage], Awaitable[None]]


class _DropTransportErrors(logging.Filter):
    """aiormq logs every failed connection attempt itself ("error when creating transport");
    aovs logs each attempt once, naming the broker, so that line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_DropTransportErrors())


class _Declarer:
    """Declarations on a channel of their own, as oslo declares them.

    RabbitMQ answers a refused declaration by closing the channel: here that closes only this
    channel (reopened for the next declaration), so oslo's fallbacks can be applied without
    losing the session, and the publish and consume channels close only when the connection
    does.
    """

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._exchanges: set[str] = set()

    async def channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        return self._channel

    async def exchange(self, name: str, kind: aio_pika.ExchangeType, spec: ExchangeSpec) -> None:
        """Declare once per session (publishing to an undeclared exchange closes the channel)."""
        if name in self._exchanges:
            return
        try:
            await (await self.channel()).declare_exchange(
                name, kind, durable=spec.durable, auto_delete=spec.auto_delete
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if not (spec.durable and "inequivalent arg 'durable'" in str(exc)):
                raise
            LOG.warning(
                "exchange %s exists non-durable; using it non-durable (oslo's fallback)", name
            )
            await (await self.channel()).declare_exchange(
                name, kind, durable=False, auto_delete=spec.auto_delete
            )
        self._exchanges.add(name)

    async def queue(self, name: str, spec: QueueSpec) -> None:
        def declare(channel: AbstractChannel, durable: bool) -> Awaitable[AbstractQueue]:
            return channel.declare_queue(
                name, durable=durable, auto_delete=spec.auto_delete, arguments=dict(spec.arguments)
            )

        try:
            await declare(await self.channel(), spec.durable)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if not (spec.durable and "inequivalent arg 'durable'" in str(exc)):
                raise
            LOG.warning("queue %s exists non-durable; using it non-durable (oslo's fallback)", name)
            await declare(await self.channel(), False)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            # oslo (LP 2068630): a queue whose cluster node is down cannot be declared again
            # until it is deleted; the new one lives on a node that is up
            LOG.warning(
                "queue %s is stuck on a node that is down (%s); deleting and declaring it again",
                name,
                exc,
            )
            # (a DURABLE classic queue cannot be: RabbitMQ keeps it for its node's return, and
            # this raises NOT_FOUND again; RpcServer then consumes the rest meanwhile)
            with contextlib.suppress(*_BROKER_ERRORS):
                await (await self.channel()).queue_delete(name)
            await declare(await self.channel(), spec.durable)

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        channel = await self.channel()
        handle = await channel.get_queue(queue, ensure=False)
        await handle.bind(exchange, routing_key=routing_key)


@dataclass
class Session:
    """Everything that lives and dies with one AMQP connection."""

    broker: BrokerAddress
    connection: AbstractConnection
    publish_channel: AbstractChannel
    consume_channel: AbstractChannel
    declarer: _Declarer
    options: RabbitOptions
    lost: asyncio.Future[BaseException | None]
    control_exchange: AbstractExchange
    _publish_exchanges: dict[str, AbstractExchange] = field(default_factory=dict)

    def mark_lost(self, reason: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)

    async def fanout_exchange(self, topic: str) -> str:
        """``<topic>_fanout``, declared as oslo declares it (once per session); its name."""
        name = f"{topic}_fanout"
        await self.declarer.exchange(
            name, aio_pika.ExchangeType.FANOUT, fanout_exchange(self.options)
        )
        return name

    async def publish_exchange(self, name: str) -> AbstractExchange:
        """A handle to publish on exchange ``name`` (declared beforehand) with confirms."""
        exchange = self._publish_exchanges.get(name)
        if exchange is None:
            exchange = await self.publish_channel.get_exchange(name, ensure=False)
            self._publish_exchanges[name] = exchange
        return exchange

    async def consume(self, queue: str, callback: Consumer) -> tuple[AbstractQueue, str]:
        """Consume (no ack, as oslo's RPC listener acks on receipt) from a declared queue."""
        handle = await self.consume_channel.get_queue(queue, ensure=False)
        return handle, await handle.consume(callback, no_ack=True)


class RpcTransport:
    """The process's link to RabbitMQ, speaking oslo.messaging's wire format.

    ``await transport.start()`` connects (raising :class:`RpcConnectionLost` if no broker
    answers within a round of ``connect_timeout`` per broker); afterwards the supervisor keeps
    reconnecting forever. ``options`` is ``[oslo_messaging_rabbit]`` (the URL's query parameters
    override it); ``reconnect_delay`` / ``reconnect_max_delay``, when given, override its
    ``kombu_reconnect_delay`` / ``rabbit_interval_max`` (tests use short ones).
    """

    def __init__(
        self,
        transport_url: str,
        *,
        options: RabbitOptions | None = None,
        control_exchange: str = CONTROL_EXCHANGE,
        connect_timeout: float = 5.0,
        setup_timeout: float = 15.0,
        reconnect_delay: float | None = None,
        reconnect_max_delay: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        url = parse_transport(transport_url)
        self.brokers = url.brokers
        self.options = (options or RabbitOptions()).with_query(url.query)
        ignored = ignored_query(url.query)
        if ignored:
            LOG.info("transport_url query parameters ignored: %s", ", ".join(ignored))
        self.control_exchange_name = control_exchange
        self.connect_timeout = connect_timeout
        self.setup_timeout = setup_timeout  # the declarations after connecting: never a hang
        self.reconnect_delay = (
            self.options.kombu_reconnect_delay if reconnect_delay is None else reconnect_delay
        )
        maximum = self.options.rabbit_interval_max
        self.reconnect_max_delay = float(
            maximum if reconnect_max_delay is None else reconnect_max_delay
        )
        self._rng = rng or random.Random()
        # oslo shuffles the hosts once, so that a fleet of agents spreads over a cluster
        self._order = list(self.brokers)
        if len(self._order) > 1:
            self._rng.shuffle(self._order)
        self.reply_queue = f"reply_{wire.new_id()}"
        self.connections_made = 0  # observable: tests and metrics see reconnects
        self.last_error: str | None = None  # why the last connection attempt failed
        self._tls: ssl.SSLContext | None = None
        self._session: Session | None = None
        self._connected = asyncio.Event()
        self._hooks: list[SessionHook] = [self._declare_reply_queue]
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._reply_dedup = wire.DuplicateFilter()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        self._supervisor = asyncio.create_task(self._supervise(), name="aovs-rpc-supervisor")
        try:
            await self.wait_connected(self.connect_timeout * len(self.brokers) + 1.0)
        except RpcConnectionLost:
            await self.close()
            raise

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        session, self._session = self._session, None
        self._connected.clear()
        self._fail_pending(RpcConnectionLost("transport closed"))
        if session is not None:
            await self._close_connection(session)

    async def __aenter__(self) -> RpcTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        return self._session is not None

    @property
    def current_broker(self) -> BrokerAddress | None:
        """The broker of the live session (None while disconnected)."""
        return None if self._session is None else self._session.broker

    async def wait_connected(self, within: float) -> Session:
        """The live session; :class:`RpcConnectionLost` if none comes ``within`` seconds."""
        if self._closed:
            raise RpcConnectionLost("transport closed")
        if self._session is None:
            try:
                async with asyncio.timeout(within):
                    await self._connected.wait()
            except TimeoutError:
                last = f"; last error: {self.last_error}" if self.last_error else ""
                raise RpcConnectionLost(
                    f"no broker connection within {within:g} s "
                    f"({', '.join(map(str, self.brokers))}){last}"
                ) from None
        assert self._session is not None
        return self._session

    def add_session_hook(self, hook: SessionHook) -> None:
        """Run ``hook(session)`` now (if connected) and after every reconnect."""
        self._hooks.append(hook)

    def remove_session_hook(self, hook: SessionHook) -> None:
        with contextlib.suppress(ValueError):
            self._hooks.remove(hook)

    # ---- client side -----------------------------------------------------------------------

    async def call(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        version: str,
        timeout: float,  # noqa: ASYNC109 -- it is also on the wire (the message's expiration)
        server: str | None = None,
        namespace: str | None = None,
        context: wire.Context | None = None,
    ) -> Any:
        """Send a request and wait for its reply (matched by ``_msg_id`` on the reply queue).

        Raises :class:`RpcTimeout`, :class:`RpcConnectionLost` or :class:`RemoteError`.
        """
        loop = asyncio.get_running_loop()
        msg_id = wire.new_id()
        future: asyncio.Future[Any] = loop.create_future()
        routing_key = topic if server is None else f"{topic}.{server}"
        try:
            async with asyncio.timeout(timeout):
                session = await self.wait_connected(timeout)
                self._pending[msg_id] = future
                inner = wire.request(
                    method,
                    args,
                    version,
                    context or wire.admin_context(),
                    msg_id=msg_id,
                    reply_q=self.reply_queue,
                    namespace=namespace,
                )
                await self._publish(
                    session,
                    session.control_exchange,
                    routing_key,
                    wire.encode(inner),
                    expiration=timeout,
                )
                return await future
        except RpcConnectionLost:
            raise
        except TimeoutError:
            raise RpcTimeout(method, timeout, routing_key) from None
        finally:
            self._pending.pop(msg_id, None)

    async def cast(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        version: str,
        server: str | None = None,
        namespace: str | None = None,
        context: wire.Context | None = None,
    ) -> None:
        """Fire and forget to one consumer of ``topic`` (or ``topic.server``)."""
        routing_key = topic if server is None else f"{topic}.{server}"
        inner = wire.request(
            method, args, version, context or wire.admin_context(), namespace=namespace
        )
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                session = await self.wait_connected(PUBLISH_TIMEOUT)
                await self._publish(
                    session, session.control_exchange, routing_key, wire.encode(inner)
                )
        except TimeoutError:
            raise RpcTimeout(method, PUBLISH_TIMEOUT, routing_key) from None

    async def fanout_cast(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        version: str,
        namespace: str | None = None,
        context: wire.Context | None = None,
    ) -> None:
        """Fire and forget to every consumer of ``topic`` (exchange ``<topic>_fanout``)."""
        inner = wire.request(
            method, args, version, context or wire.admin_context(), namespace=namespace
        )
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                session = await self.wait_connected(PUBLISH_TIMEOUT)
                try:
                    exchange = await session.publish_exchange(await session.fanout_exchange(topic))
                except _BROKER_ERRORS as exc:
                    raise RpcConnectionLost(f"declare {topic}_fanout: {exc}") from exc
                await self._publish(session, exchange, "", wire.encode(inner))
        except TimeoutError:
            raise RpcTimeout(method, PUBLISH_TIMEOUT, f"{topic}_fanout") from None

    # ---- serving side ----------------------------------------------------------------------

    async def serve(self, topic: str, server: str, endpoints: Sequence[object]) -> RpcServer:
        """Consume ``topic``, ``topic.server`` and ``topic_fanout`` and dispatch to endpoints.

        Returns once the consumers are declared (or, when disconnected, once registered: they
        are declared on the next connection).
        """
        rpc_server = RpcServer(self, topic, server, Dispatcher(endpoints))
        await rpc_server.start()
        return rpc_server

    async def send_reply(self, reply_q: str, body: bytes) -> None:
        """Publish an encoded reply on the default exchange to the caller's reply queue."""
        session = await self.wait_connected(PUBLISH_TIMEOUT)
        await self._publish(session, session.publish_channel.default_exchange, reply_q, body)

    # ---- internals -------------------------------------------------------------------------

    async def _publish(
        self,
        session: Session,
        exchange: AbstractExchange,
        routing_key: str,
        body: bytes,
        *,
        expiration: float | None = None,
    ) -> None:
        message = aio_pika.Message(
            body,
            content_type=wire.CONTENT_TYPE,
            content_encoding=wire.CONTENT_ENCODING,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            expiration=expiration,
            priority=0,
        )
        try:
            await exchange.publish(message, routing_key=routing_key, mandatory=False)
        except _BROKER_ERRORS as exc:
            raise RpcConnectionLost(
                f"publish to {exchange.name or 'default exchange'}/{routing_key} on "
                f"{session.broker}: {exc or type(exc).__name__}"
            ) from exc

    async def _declare_reply_queue(self, session: Session) -> None:
        await session.declarer.queue(self.reply_queue, transient_queue(self.options))
        await session.consume(self.reply_queue, self._on_reply)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            inner = wire.decode(message.body)
        except RpcError as exc:
            LOG.warning("dropped malformed reply on %s: %s", self.reply_queue, exc)
            return
        if self._reply_dedup.is_duplicate(inner.get("_unique_id")):
            return
        msg_id = inner.get("_msg_id")
        future = self._pending.get(msg_id) if isinstance(msg_id, str) else None
        if future is None or future.done():
            LOG.debug("reply for no pending call (late, after a timeout?) msg_id=%s", msg_id)
            return
        failure = inner.get("failure")
        if failure:
            future.set_exception(wire.remote_error_from_failure(failure))
        elif inner.get("ending", True):
            future.set_result(inner.get("result"))
        # else: a call-monitor heartbeat (we never set _timeout, so none should come)

    def _fail_pending(self, error: RpcConnectionLost) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    def _next_index(self, index: int) -> int:
        """The broker to try first after losing ``index`` (kombu_failover_strategy)."""
        count = len(self._order)
        if count == 1:
            return 0
        if self.options.kombu_failover_strategy == "shuffle":
            return self._rng.choice([i for i in range(count) if i != index])
        return (index + 1) % count

    async def _supervise(self) -> None:
        index = 0
        waits = RetryIntervals(
            self.options.rabbit_retry_interval,
            self.options.rabbit_retry_backoff,
            self.reconnect_max_delay,
        )
        while not self._closed:
            session: Session | None = None
            for step in range(len(self._order)):  # one round: every broker once
                candidate = (index + step) % len(self._order)
                session = await self._open_session(self._order[candidate])
                if session is not None:
                    index = candidate
                    break
            if session is None:
                await asyncio.sleep(waits.next_wait())
                continue
            waits.reset()
            self.connections_made += 1
            self.last_error = None
            self._session = session
            self._connected.set()
            LOG.info(
                "connected to broker %s%s", session.broker, " (TLS)" if self.options.ssl else ""
            )
            watchdog = asyncio.create_task(self._watch(session), name="aovs-rpc-liveness")
            try:
                reason = await session.lost
            finally:
                watchdog.cancel()
            self._connected.clear()
            self._session = None
            self._fail_pending(RpcConnectionLost(f"connection to {session.broker} lost: {reason}"))
            index = self._next_index(index)
            LOG.warning(
                "broker connection %s lost (%s); reconnecting in %g s (next: %s)",
                session.broker,
                reason,
                self.reconnect_delay,
                self._order[index],
            )
            await self._close_connection(session)
            splay = self._rng.uniform(0, self.options.kombu_reconnect_splay)
            await asyncio.sleep(self.reconnect_delay + splay)

    async def _watch(self, session: Session) -> None:
        """oslo's heartbeat check: a broker that has not answered a probe (a basic.qos round
        trip) within heartbeat_timeout_threshold seconds is lost, even if TCP says nothing."""
        interval = self.options.heartbeat_check_interval
        if interval is None:
            return
        threshold = self.options.heartbeat_timeout_threshold
        while not session.lost.done():
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(threshold):
                    await session.publish_channel.set_qos(prefetch_count=0)
            except TimeoutError:
                session.mark_lost(
                    TimeoutError(
                        f"no answer from the broker within {threshold} s "
                        "(heartbeat_timeout_threshold)"
                    )
                )
            except _BROKER_ERRORS as exc:
                session.mark_lost(exc)

    async def _close_connection(self, session: Session) -> None:
        with contextlib.suppress(*_BROKER_ERRORS, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await session.connection.close()

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.options.ssl and self._tls is None:
            self._tls = client_context(self.options)  # TlsConfigError: a failed attempt
        return self._tls

    async def _open_session(self, broker: BrokerAddress) -> Session | None:
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[BaseException | None] = loop.create_future()

        def mark_lost(_sender: object, exc: BaseException | None = None, *_: object) -> None:
            if not lost.done():
                lost.set_result(exc)

        def consumer_cancelled(frame: Any) -> None:
            # the broker cancelled a consumer: its queue was deleted (its cluster node went
            # down, or someone deleted it); oslo reconnects, which declares it again
            if not lost.done():
                tag = getattr(frame, "consumer_tag", "?")
                lost.set_result(ConnectionError(f"consumer {tag} cancelled by the broker"))

        connection: AbstractConnection | None = None
        try:
            tls = self._tls_context()
            connection = await aio_pika.connect(
                host=broker.host,
                port=broker.port,
                login=broker.username,
                password=broker.password,
                virtualhost=broker.virtual_host,
                ssl=tls is not None,
                ssl_context=tls,
                timeout=self.connect_timeout,
                client_properties={"connection_name": f"aovs:{self.reply_queue}"},
                heartbeat=self.options.heartbeat_timeout_threshold,
            )
            connection.close_callbacks.add(mark_lost)
            publish_channel = await connection.channel(publisher_confirms=True)
            consume_channel = await connection.channel(publisher_confirms=False)
            publish_channel.close_callbacks.add(mark_lost)
            consume_channel.close_callbacks.add(mark_lost)
            underlay = await consume_channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(consumer_cancelled)
            declarer = _Declarer(connection)
            try:
                async with asyncio.timeout(self.setup_timeout):
                    await declarer.exchange(
                        self.control_exchange_name,
                        aio_pika.ExchangeType.TOPIC,
                        control_exchange(self.options),
                    )
                    session = Session(
                        broker,
                        connection,
                        publish_channel,
                        consume_channel,
                        declarer,
                        self.options,
                        lost,
                        await publish_channel.get_exchange(
                            self.control_exchange_name, ensure=False
                        ),
                    )
                    for hook in list(self._hooks):
                        await hook(session)
            except TimeoutError:
                # e.g. a queue whose cluster node hangs: RabbitMQ answers once it has noticed
                raise TimeoutError(
                    f"declarations not answered within {self.setup_timeout:g} s"
                ) from None
            return session
        except _CONNECT_ERRORS as exc:
            reason = describe_tls_error(exc) or str(exc) or type(exc).__name__
            if self.options.ssl and connection is None and closed_during_handshake(exc):
                reason += (
                    " (TLS: the broker closed the connection at the handshake: does it require "
                    "a client certificate, [oslo_messaging_rabbit] ssl_cert_file/ssl_key_file?)"
                )
            self.last_error = f"{broker}: {reason}"
            LOG.warning("cannot connect to broker %s: %s", broker, reason)
            if connection is not None:
                with contextlib.suppress(*_BROKER_ERRORS, TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await connection.close()
            return None


class RpcServer:
    """Consumers of one topic for one server name, as an oslo RPC server declares them.

    Messages are acknowledged on receipt, as oslo's RPC listener does. A method that returns
    an awaitable runs as its own task (so a slow call does not hold the queue); plain methods
    run inline, in arrival order (notification handlers rely on that). Malformed messages and
    failing casts are logged on one line and dropped.
    """

    def __init__(
        self, transport: RpcTransport, topic: str, server: str, dispatcher: Dispatcher
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.server = server
        self.dispatcher = dispatcher
        self.fanout_queue = f"{topic}_fanout_{wire.new_id()}"
        self.received = 0
        self._dedup = wire.DuplicateFilter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}  # by queue, this session
        self._consumed_on: Session | None = None
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.transport.add_session_hook(self._declare)
        session = self.transport._session
        if session is not None:
            try:
                async with asyncio.timeout(self.transport.setup_timeout):
                    await self._declare(session)
            except _DECLARE_ERRORS as exc:
                # as when it fails at connect: a new session (after the waits) declares again
                reason = str(exc) or type(exc).__name__
                LOG.warning("declaring consumers for %s failed: %s", self.topic, reason)
                session.mark_lost(exc)

    async def stop(self) -> None:
        self.transport.remove_session_hook(self._declare)
        if self._retry is not None:
            self._retry.cancel()
        for queue, tag in self._consumers.values():
            with contextlib.suppress(*_BROKER_ERRORS):
                await queue.cancel(tag)
        self._consumers.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _declare(self, session: Session) -> None:
        """The session hook: declare and consume every queue. A queue RabbitMQ cannot give
        (NOT_FOUND: a durable classic queue whose cluster node is down) does not stop the
        others, nor the session: it is declared again in the background until it is back."""
        missing = await self._declare_queues(session)
        if missing:
            LOG.warning("queues %s cannot be declared now (%s); consuming the others, retrying",
                        ", ".join(missing), "their cluster node is down?")  # fmt: skip
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._keep_declaring(session))

    async def _declare_queues(self, session: Session) -> list[str]:
        if session is not self._consumed_on:
            self._consumed_on, self._consumers = session, {}
        options = self.transport.options
        exchange = self.transport.control_exchange_name
        declarer = session.declarer
        await declarer.exchange(exchange, aio_pika.ExchangeType.TOPIC, control_exchange(options))
        fanout = await session.fanout_exchange(self.topic)
        direct = f"{self.topic}.{self.server}"
        wanted = (
            (self.topic, topic_queue(options), exchange, self.topic),
            (direct, topic_queue(options), exchange, direct),
            (self.fanout_queue, transient_queue(options), fanout, self.topic),
        )
        missing = []
        for name, spec, source, key in wanted:
            if name in self._consumers:
                continue
            try:
                await declarer.queue(name, spec)
            except aiormq.exceptions.ChannelNotFoundEntity:
                missing.append(name)
                continue
            await declarer.bind(name, source, routing_key=key)
            self._consumers[name] = await session.consume(name, self._on_message)
        return missing

    async def _keep_declaring(self, session: Session) -> None:
        options = self.transport.options
        waits = RetryIntervals(options.rabbit_retry_interval, options.rabbit_retry_backoff,
                               self.transport.reconnect_max_delay)  # fmt: skip
        while self.transport._session is session and not session.lost.done():
            await asyncio.sleep(waits.next_wait())
            if self.transport._session is not session:
                return  # a new session declares everything itself
            try:
                async with asyncio.timeout(self.transport.setup_timeout):
                    missing = await self._declare_queues(session)
            except _DECLARE_ERRORS as exc:
                session.mark_lost(exc)
                return
            if not missing:
                LOG.info("every queue of %s is declared again and consumed", self.topic)
                return

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # no await before dispatch: aiormq starts one task per delivery, in order, so inline
        # handlers see messages in the order the broker delivered them
        self.received += 1
        try:
            request = wire.parse_request(wire.decode(message.body))
        except RpcError as exc:
            LOG.warning(
                "dropped malformed message topic=%s routing_key=%s: %s",
                self.topic,
                message.routing_key,
                exc,
            )
            return
        if self._dedup.is_duplicate(request.unique_id):
            LOG.debug("dropped duplicate message %s", request.unique_id)
            return
        try:
            method = self.dispatcher.resolve(request)
            outcome = method(request.context, **request.args)
        except Exception as exc:
            await self._finish(request, None, exc)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.create_task(self._await_and_finish(request, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            await self._finish(request, outcome, None)

    async def _await_and_finish(self, request: wire.Request, outcome: Awaitable[Any]) -> None:
        try:
            result = await outcome
        except Exception as exc:
            await self._finish(request, None, exc)
        else:
            await self._finish(request, result, None)

    async def _finish(
        self, request: wire.Request, result: Any, error: BaseException | None
    ) -> None:
        if not request.wants_reply:
            if error is not None:
                LOG.warning(
                    "cast %s on %s failed: %s: %s",
                    request.method,
                    self.topic,
                    type(error).__name__,
                    error,
                )
            return
        assert request.msg_id is not None and request.reply_q is not None
        if error is None:
            try:
                body = wire.encode(wire.reply(request.msg_id, result))
            except (TypeError, ValueError) as exc:
                error = exc
        if error is not None:
            failure = wire.failure_from_exception(error)
            body = wire.encode(wire.reply(request.msg_id, None, failure))
        try:
            await self.transport.send_reply(request.reply_q, body)
        except RpcError as exc:
            LOG.warning("reply to %s (%s) not sent: %s", request.method, request.msg_id, exc)
