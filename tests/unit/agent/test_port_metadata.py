"""The lazy Port row writer: batched after a delay, latest config wins, nothing lost when
OVSDB goes away. OVSDB itself is a fake here (what it is sent is all that matters); the agent's
integration tests read the written rows back from a real ovsdb-server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from aovs.agent.port_metadata import PortMetadataWriter, port_commands
from aovs.agent.state import PortConfig
from aovs.ovsdb import Command, ConnectionLost, OVSDBClient, RowNotFound, SetPort


class FakeOvsdb:
    """Records each transaction's commands; fails as told."""

    def __init__(self) -> None:
        self.transactions: list[tuple[Command, ...]] = []
        self.failures: list[Exception] = []

    async def transact(self, *commands: Command, **_: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.transactions.append(commands)


def writer(delay: float | None) -> tuple[PortMetadataWriter, FakeOvsdb]:
    fake = FakeOvsdb()
    return PortMetadataWriter(cast(OVSDBClient, fake), delay), fake


def tags(transaction: tuple[Command, ...]) -> dict[str, object]:
    return {c.name: c.tag for c in transaction if isinstance(c, SetPort)}


async def test_changes_within_the_delay_are_one_transaction_and_the_latest_wins() -> None:
    meta, fake = writer(0.05)
    meta.changed({"tap1": PortConfig.dead()})
    meta.changed({"tap2": PortConfig(tag=3)})
    meta.changed({"tap1": PortConfig(tag=2)})  # wired before the write: no dead tag at all
    assert fake.transactions == []  # nothing before the delay
    await asyncio.wait_for(meta.wait_idle(), 2)
    assert [tags(t) for t in fake.transactions] == [{"tap1": 2, "tap2": 3}]
    assert meta.transactions == 1


async def test_other_config_keys_are_merged_not_replaced() -> None:
    config = PortConfig(tag=2, other_config=(("net_uuid", "n"), ("tag", "2")))
    set_port, update = port_commands("tap1", config)
    assert isinstance(set_port, SetPort) and set_port.tag == 2
    assert "net_uuid" in repr(update) and "other_config" in repr(update)


async def test_a_lost_connection_keeps_the_batch_and_newer_configs_win() -> None:
    meta, fake = writer(0.0)
    fake.failures.append(ConnectionLost("ovsdb-server went away"))
    meta.changed({"tap1": PortConfig(tag=2), "tap2": PortConfig(tag=3)})
    await asyncio.sleep(0.01)  # the first try failed; the retry waits RETRY_DELAY
    assert meta.pending == 2
    meta.changed({"tap2": PortConfig(tag=4)})
    await meta.flush()
    assert [tags(t) for t in fake.transactions] == [{"tap1": 2, "tap2": 4}]


async def test_a_vanished_port_fails_alone() -> None:
    meta, fake = writer(0.0)
    fake.failures += [RowNotFound("no Port tap1"), RowNotFound("no Port tap1")]
    meta.changed({"tap1": PortConfig(tag=2), "tap2": PortConfig(tag=3)})
    await asyncio.wait_for(meta.wait_idle(), 2)
    assert [tags(t) for t in fake.transactions] == [{"tap2": 3}]  # one by one after the batch
    assert meta.pending == 0


async def test_flush_writes_now() -> None:
    meta, fake = writer(60.0)
    meta.changed({"tap1": PortConfig(tag=2)})
    await meta.flush()
    assert [tags(t) for t in fake.transactions] == [{"tap1": 2}]
    await meta.flush()  # nothing pending: nothing sent
    assert len(fake.transactions) == 1


@pytest.mark.parametrize("configs", [{}, None])
async def test_nothing_changed_starts_nothing(configs: dict[str, PortConfig] | None) -> None:
    meta, fake = writer(0.0)
    meta.changed(configs or {})
    await asyncio.wait_for(meta.wait_idle(), 1)
    assert fake.transactions == []


async def test_without_a_delay_nothing_is_written_before_the_stop() -> None:
    meta, fake = writer(None)
    meta.changed({"tap1": PortConfig.dead()})
    meta.changed({"tap1": PortConfig(tag=2), "tap2": PortConfig(tag=3)})
    await asyncio.wait_for(meta.wait_idle(), 1)  # idle at once: nothing scheduled
    await asyncio.sleep(0.05)
    assert fake.transactions == [] and meta.pending == 2
    await meta.flush()  # the agent stops: everything owed, in one transaction
    assert [tags(t) for t in fake.transactions] == [{"tap1": 2, "tap2": 3}]
