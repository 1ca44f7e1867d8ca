"""oslo.messaging-compatible RPC over RabbitMQ with aio-pika: call, cast, fanout cast, serve.

One :class:`RpcTransport` per process holds one AMQP connection, supervised by a task that
connects to the brokers of ``transport_url`` in turn and, after any loss (broker restart,
``rabbitmqctl close_all_connections``, a channel error), reconnects and re-runs every declaration
and consumer (the reply queue and each :class:`RpcServer`). Calls in flight when the connection
drops fail at once with :class:`RpcConnectionLost`: the caller's retry policy decides, nothing
hangs. Every call has a deadline covering the wait for a connection, the publish and the reply.

Queues and exchanges are declared exactly as oslo's rabbit driver declares them (any other
argument makes RabbitMQ refuse the declaration with PRECONDITION_FAILED when a real neutron
peer declared it first).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
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

from aovs.backoff import Backoff
from aovs.rpc import wire
from aovs.rpc.dispatch import Dispatcher
from aovs.rpc.errors import RpcConnectionLost, RpcError, RpcTimeout
from aovs.rpc.url import BrokerAddress, parse_transport_url

LOG = logging.getLogger(__name__)

CONTROL_EXCHANGE = "neutron"
TRANSIENT_QUEUE_EXPIRES_MS = 1_800_000  # oslo's rabbit_transient_queues_ttl (1800 s)
PUBLISH_TIMEOUT = 10.0  # casts and replies: how long to wait for a connection and a confirm
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,  # aio-pika: "channel closed" / "connection closed" on a dead session
)

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*_BROKER_ERRORS, TimeoutError)

SessionHook = Callable[["Session"], Awaitable[None]]


@dataclass
class Session:
    """Everything that lives and dies with one AMQP connection."""

    broker: BrokerAddress
    connection: AbstractConnection
    publish_channel: AbstractChannel
    consume_channel: AbstractChannel
    control_exchange: AbstractExchange
    lost: asyncio.Future[BaseException | None]
    _fanout_exchanges: dict[str, AbstractExchange] = field(default_factory=dict)

    async def fanout_exchange(self, topic: str, channel: AbstractChannel) -> AbstractExchange:
        """``<topic>_fanout`` as oslo declares it; publishing to an undeclared exchange would
        close the channel, so it is declared (idempotently) before first use per session."""
        name = f"{topic}_fanout"
        key = f"{id(channel)}:{name}"
        exchange = self._fanout_exchanges.get(key)
        if exchange is None:
            exchange = await channel.declare_exchange(
                name, aio_pika.ExchangeType.FANOUT, durable=False, auto_delete=True
            )
            self._fanout_exchanges[key] = exchange
        return exchange


class RpcTransport:
    """The process's link to RabbitMQ, speaking oslo.messaging's wire format.

    ``await transport.start()`` connects (raising :class:`RpcConnectionLost` if no broker
    answers within ``connect_timeout``); afterwards the supervisor keeps reconnecting forever.
    """

    def __init__(
        self,
        transport_url: str,
        *,
        control_exchange: str = CONTROL_EXCHANGE,
        connect_timeout: float = 5.0,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 10.0,
    ) -> None:
        self.brokers = parse_transport_url(transport_url)
        self.control_exchange_name = control_exchange
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reply_queue = f"reply_{wire.new_id()}"
        self.connections_made = 0  # observable: tests and metrics see reconnects
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
            with contextlib.suppress(*_BROKER_ERRORS):
                await session.connection.close()

    async def __aenter__(self) -> RpcTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        return self._session is not None

    async def wait_connected(self, within: float) -> Session:
        """The live session; :class:`RpcConnectionLost` if none comes ``within`` seconds."""
        if self._closed:
            raise RpcConnectionLost("transport closed")
        if self._session is None:
            try:
                async with asyncio.timeout(within):
                    await self._connected.wait()
            except TimeoutError:
                raise RpcConnectionLost(
                    f"no broker connection within {within:g} s "
                    f"({', '.join(map(str, self.brokers))})"
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
                    exchange = await session.fanout_exchange(topic, session.publish_channel)
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
        queue = await session.consume_channel.declare_queue(
            self.reply_queue,
            durable=False,
            auto_delete=False,
            arguments={"x-expires": TRANSIENT_QUEUE_EXPIRES_MS},
        )
        await queue.consume(self._on_reply, no_ack=True)

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

    async def _supervise(self) -> None:
        attempt = 0
        backoff = Backoff(self.reconnect_delay, self.reconnect_max_delay, jitter=False)
        while not self._closed:
            broker = self.brokers[attempt % len(self.brokers)]
            attempt += 1
            session = await self._open_session(broker)
            if session is None:
                if attempt % len(self.brokers) == 0:  # a full round failed: wait, then retry
                    await asyncio.sleep(backoff.next_delay())
                continue
            attempt -= 1  # stay on the broker that worked
            backoff.reset()
            self.connections_made += 1
            self._session = session
            self._connected.set()
            LOG.info("connected to broker %s", broker)
            reason = await session.lost
            self._connected.clear()
            self._session = None
            self._fail_pending(RpcConnectionLost(f"connection to {broker} lost: {reason}"))
            LOG.warning("broker connection %s lost (%s); reconnecting", broker, reason)
            with contextlib.suppress(*_BROKER_ERRORS):
                await session.connection.close()
            await asyncio.sleep(self.reconnect_delay)

    async def _open_session(self, broker: BrokerAddress) -> Session | None:
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[BaseException | None] = loop.create_future()

        def mark_lost(_sender: object, exc: BaseException | None = None, *_: object) -> None:
            if not lost.done():
                lost.set_result(exc)

        connection: AbstractConnection | None = None
        try:
            connection = await aio_pika.connect(
                host=broker.host,
                port=broker.port,
                login=broker.username,
                password=broker.password,
                virtualhost=broker.virtual_host,
                timeout=self.connect_timeout,
                client_properties={"connection_name": f"aovs:{self.reply_queue}"},
            )
            connection.close_callbacks.add(mark_lost)
            publish_channel = await connection.channel(publisher_confirms=True)
            consume_channel = await connection.channel(publisher_confirms=False)
            publish_channel.close_callbacks.add(mark_lost)
            consume_channel.close_callbacks.add(mark_lost)
            control_exchange = await publish_channel.declare_exchange(
                self.control_exchange_name,
                aio_pika.ExchangeType.TOPIC,
                durable=False,
                auto_delete=False,
            )
            session = Session(
                broker, connection, publish_channel, consume_channel, control_exchange, lost
            )
            for hook in list(self._hooks):
                await hook(session)
            return session
        except _CONNECT_ERRORS as exc:
            LOG.warning("cannot connect to broker %s: %s", broker, exc or type(exc).__name__)
            if connection is not None:
                with contextlib.suppress(*_BROKER_ERRORS):
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
        self._consumers: list[tuple[AbstractQueue, str]] = []

    async def start(self) -> None:
        self.transport.add_session_hook(self._declare)
        session = self.transport._session
        if session is not None:
            try:
                await self._declare(session)
            except _BROKER_ERRORS as exc:
                # the supervisor notices the dead session and re-runs the hook on reconnect
                LOG.warning("declaring consumers for %s failed: %s", self.topic, exc)

    async def stop(self) -> None:
        self.transport.remove_session_hook(self._declare)
        for queue, tag in self._consumers:
            with contextlib.suppress(*_BROKER_ERRORS):
                await queue.cancel(tag)
        self._consumers.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _declare(self, session: Session) -> None:
        channel = session.consume_channel
        exchange = await channel.declare_exchange(
            self.transport.control_exchange_name,
            aio_pika.ExchangeType.TOPIC,
            durable=False,
            auto_delete=False,
        )
        consumers: list[tuple[AbstractQueue, str]] = []
        for name in (self.topic, f"{self.topic}.{self.server}"):
            queue = await channel.declare_queue(name, durable=False, auto_delete=False)
            await queue.bind(exchange, routing_key=name)
            consumers.append((queue, await queue.consume(self._on_message, no_ack=True)))
        fanout = await session.fanout_exchange(self.topic, channel)
        queue = await channel.declare_queue(
            self.fanout_queue,
            durable=False,
            auto_delete=False,
            arguments={"x-expires": TRANSIENT_QUEUE_EXPIRES_MS},
        )
        await queue.bind(fanout, routing_key="")
        consumers.append((queue, await queue.consume(self._on_message, no_ack=True)))
        self._consumers = consumers

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
