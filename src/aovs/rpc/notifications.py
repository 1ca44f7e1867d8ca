"""neutron-server's notifications to OVS agents, consumed as oslo declares them, as typed events.

For each topic (``q-agent-notifier-<resource>-<action>``) the consumer declares what an oslo
RPC server with ``server=host`` declares: queue ``T`` (shared by all agents), ``T.<host>``
(directed casts, e.g. l2population to one host) and a private queue on the ``T_fanout``
exchange. Each message becomes one :mod:`aovs.rpc.events` value on an unbounded queue, in the
order of delivery: consuming never waits for the agent, so a slow agent cannot block the
broker's queues. A malformed message is logged on one line and dropped (it was acked on receipt).

    consumer = NotificationConsumer(transport, host="compute-1")
    await consumer.start()
    async for event in consumer:
        match event:
            case PortUpdate(port_id=port_id): ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aovs.rpc import events
from aovs.rpc.amqp import RpcServer, RpcTransport
from aovs.rpc.events import AgentEvent

LOG = logging.getLogger(__name__)

PREFIX = "q-agent-notifier"
PORT_UPDATE_TOPIC = f"{PREFIX}-port-update"
PORT_DELETE_TOPIC = f"{PREFIX}-port-delete"
NETWORK_UPDATE_TOPIC = f"{PREFIX}-network-update"
NETWORK_DELETE_TOPIC = f"{PREFIX}-network-delete"
SECURITY_GROUP_UPDATE_TOPIC = f"{PREFIX}-security_group-update"
TUNNEL_UPDATE_TOPIC = f"{PREFIX}-tunnel-update"
TUNNEL_DELETE_TOPIC = f"{PREFIX}-tunnel-delete"
L2POPULATION_UPDATE_TOPIC = f"{PREFIX}-l2population-update"
BINDING_ACTIVATE_TOPIC = f"{PREFIX}-binding-activate"  # live migration (AgentNotifierApi 1.5)
BINDING_DEACTIVATE_TOPIC = f"{PREFIX}-binding-deactivate"

AGENT_TOPICS: tuple[str, ...] = (
    PORT_UPDATE_TOPIC,
    PORT_DELETE_TOPIC,
    NETWORK_UPDATE_TOPIC,
    NETWORK_DELETE_TOPIC,
    SECURITY_GROUP_UPDATE_TOPIC,
    TUNNEL_UPDATE_TOPIC,
    TUNNEL_DELETE_TOPIC,
    L2POPULATION_UPDATE_TOPIC,
    BINDING_ACTIVATE_TOPIC,
    BINDING_DEACTIVATE_TOPIC,
)

# What neutron's OVSNeutronAgent endpoint exposes (its oslo Target version).
AGENT_RPC_VERSION = "1.7"

_END = object()


class _AgentEndpoint:
    """The methods neutron-server calls on agents; each turns its arguments into an event."""

    rpc_version = AGENT_RPC_VERSION

    def __init__(self, deliver: Callable[[AgentEvent], None], on_malformed: Callable[[], None]):
        self._deliver = deliver
        self._on_malformed = on_malformed

    def __getattr__(self, method: str) -> Callable[..., None]:
        parse = events.PARSERS.get(method)
        if parse is None:
            raise AttributeError(method)

        def handle(_context: Mapping[str, Any], **args: Any) -> None:
            try:
                event = parse(args)
            except (ValueError, TypeError) as exc:
                self._on_malformed()
                LOG.warning("dropped malformed %s notification: %s", method, exc)
                return
            self._deliver(event)

        return handle


class NotificationConsumer:
    """Typed agent events from neutron-server; an async iterator (or read ``.events``)."""

    def __init__(
        self, transport: RpcTransport, host: str, *, topics: Sequence[str] = AGENT_TOPICS
    ) -> None:
        self.transport = transport
        self.host = host
        self.topics = tuple(topics)
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.delivered = 0
        self.malformed = 0
        self._servers: list[RpcServer] = []
        self._endpoint = _AgentEndpoint(self._deliver, self._count_malformed)

    def _deliver(self, event: AgentEvent) -> None:
        self.delivered += 1
        self.events.put_nowait(event)

    def _count_malformed(self) -> None:
        self.malformed += 1

    async def start(self) -> None:
        for topic in self.topics:
            self._servers.append(await self.transport.serve(topic, self.host, [self._endpoint]))

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers.clear()
        self.events.put_nowait(_END)

    @property
    def fanout_queues(self) -> tuple[str, ...]:
        return tuple(server.fanout_queue for server in self._servers)

    def __aiter__(self) -> NotificationConsumer:
        return self

    async def __anext__(self) -> AgentEvent:
        event = await self.events.get()
        if event is _END:
            raise StopAsyncIteration
        result: AgentEvent = event
        return result
