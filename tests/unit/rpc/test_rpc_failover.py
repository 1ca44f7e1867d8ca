"""Which broker the transport connects to, and when: oslo.messaging's order (the hosts shuffled
once, the next one after a loss, rounds with growing waits while none answers, back as soon as
one does). The AMQP sessions are stand-ins; the supervisor is the real one."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from aovs.rpc import amqp
from aovs.rpc.amqp import RpcTransport, Session
from aovs.rpc.backoff import RetryIntervals
from aovs.rpc.errors import RpcConnectionLost
from aovs.rpc.options import RabbitOptions
from aovs.rpc.url import BrokerAddress

URL = "rabbit://u:p@h0:5672,u:p@h1:5672,u:p@h2:5672/v"


@dataclass
class FakeConnection:
    closed: int = 0

    async def close(self) -> None:
        self.closed += 1


@dataclass
class FakeSession:
    broker: BrokerAddress
    lost: asyncio.Future[BaseException | None]
    connection: FakeConnection = field(default_factory=FakeConnection)
    control_exchange: object = None

    def mark_lost(self, reason: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)


class Brokers:
    """Which hosts answer; every attempt recorded."""

    def __init__(self, up: set[str]) -> None:
        self.up = up
        self.attempts: list[str] = []
        self.sessions: list[FakeSession] = []
        self.attempted = asyncio.Event()

    async def open(self, broker: BrokerAddress) -> Session | None:
        self.attempts.append(broker.host)
        self.attempted.set()
        if broker.host not in self.up:
            return None
        session = FakeSession(broker, asyncio.get_running_loop().create_future())
        self.sessions.append(session)
        return cast(Session, session)


class Waits:
    """RetryIntervals that records the waits it hands out and does not make anyone wait."""

    given: list[float] = []

    def __init__(self, interval: float, step: float, maximum: float) -> None:
        self.inner = RetryIntervals(interval, step, maximum)

    def next_wait(self) -> float:
        Waits.given.append(self.inner.next_wait())
        return 0.0

    def reset(self) -> None:
        self.inner.reset()


def transport(
    brokers: Brokers, monkeypatch: pytest.MonkeyPatch, seed: int = 7, **options: Any
) -> RpcTransport:
    Waits.given = []
    monkeypatch.setattr(amqp, "RetryIntervals", Waits)
    rabbit = RabbitOptions(kombu_reconnect_delay=0, heartbeat_timeout_threshold=0, **options)
    made = RpcTransport(URL, options=rabbit, rng=random.Random(seed))
    monkeypatch.setattr(made, "_open_session", brokers.open)

    async def publish(*_: object, **__: object) -> None:
        return None  # the request is "on the wire"; no reply will come

    monkeypatch.setattr(made, "_publish", publish)
    return made


def shuffled(seed: int) -> list[str]:
    order = ["h0", "h1", "h2"]
    random.Random(seed).shuffle(order)
    return order


async def until(predicate: Any, what: str) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # noqa: ASYNC110 -- a predicate over the transport's state
            await asyncio.sleep(0)
    assert predicate(), what


async def test_shuffled_once_then_the_next_broker_after_each_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    brokers = Brokers({"h0", "h1", "h2"})
    order = shuffled(7)
    assert order != ["h0", "h1", "h2"]  # the seed does shuffle (else the test proves nothing)
    async with transport(brokers, monkeypatch) as rpc:
        assert brokers.attempts == [order[0]]
        current = rpc.current_broker
        assert current is not None and current.host == order[0]
        for expected in (order[1], order[2], order[0]):
            brokers.sessions[-1].mark_lost(ConnectionError("node stopped"))
            await until(lambda e=expected: rpc.current_broker is not None
                        and rpc.current_broker.host == e, f"on {expected}")  # fmt: skip
        assert brokers.attempts == [order[0], order[1], order[2], order[0]]
        assert rpc.connections_made == 4 and Waits.given == []


async def test_a_dead_broker_is_skipped_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    order = shuffled(7)
    brokers = Brokers({order[0], order[2]})
    async with transport(brokers, monkeypatch) as rpc:
        brokers.sessions[-1].mark_lost(ConnectionError("node stopped"))
        await until(lambda: rpc.connections_made == 2, "reconnected")
        assert brokers.attempts == [order[0], order[1], order[2]]  # order[1] refused: next
        assert Waits.given == []  # within a round, no wait


async def test_rounds_wait_longer_until_a_broker_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = shuffled(7)
    brokers = Brokers(set(order))
    rpc = transport(brokers, monkeypatch, rabbit_retry_interval=1, rabbit_retry_backoff=2,
                    rabbit_interval_max=4)  # fmt: skip
    async with rpc:
        in_flight = asyncio.create_task(rpc.call("q-plugin", "m", {}, version="1.0", timeout=9))
        await asyncio.sleep(0)
        brokers.up.clear()
        brokers.sessions[-1].mark_lost(ConnectionError("cluster down"))
        with pytest.raises(RpcConnectionLost, match="lost: cluster down"):
            await in_flight  # failed at once, not at its timeout
        await until(lambda: len(brokers.attempts) >= 1 + 3 * 4, "four rounds")
        assert Waits.given[:4] == [1, 3, 4, 4]  # interval + n * backoff, capped
        assert not rpc.is_connected
        brokers.up.add(order[2])
        await until(lambda: rpc.is_connected, "back")
        current = rpc.current_broker
        assert current is not None and current.host == order[2]
        brokers.sessions[-1].mark_lost(ConnectionError("again"))
        brokers.up.add(order[0])
        await until(lambda: rpc.connections_made == 3, "again")
        assert Waits.given[-1] in (1, 3, 4)  # reset after the success: starts over
        assert brokers.attempts[-1] == order[0]  # the one after order[2]


async def test_shuffle_strategy_picks_another_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    brokers = Brokers({"h0", "h1", "h2"})
    async with transport(brokers, monkeypatch, kombu_failover_strategy="shuffle") as rpc:
        for _ in range(6):
            before = rpc.current_broker
            brokers.sessions[-1].mark_lost(ConnectionError("x"))
            await until(lambda b=before: rpc.current_broker not in (None, b), "moved")


async def test_start_fails_with_the_last_error_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    brokers = Brokers(set())
    rpc = transport(brokers, monkeypatch)
    rpc.connect_timeout = 0.01
    rpc.last_error = "h0: TLS: the broker's certificate was rejected"
    with pytest.raises(RpcConnectionLost, match="last error: h0: TLS") as info:
        await rpc.start()
    assert ":p@" not in str(info.value)


def test_a_single_host_url_is_not_shuffled() -> None:
    rpc = RpcTransport("rabbit://u:p@h9:5672/", rng=random.Random(1))
    assert [b.host for b in rpc._order] == ["h9"] and rpc._next_index(0) == 0
