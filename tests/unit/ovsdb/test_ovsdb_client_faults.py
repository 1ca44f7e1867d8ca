"""The client against a fake server: echo, probes, resync-as-events, and garbage of every kind
resetting the connection without ever raising out of the client or losing the monitor."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ovsdb_fake import FakeOVSDB

from aovs.ovsdb import Backoff, EventKind, Monitor, OVSDBClient, RowEvent

COLUMNS = {"Interface": ["name", "ofport", "external_ids"]}


@asynccontextmanager
async def _client(fake: FakeOVSDB, probe: float = 5.0) -> AsyncIterator[OVSDBClient]:
    client = OVSDBClient(
        f"unix:{fake.path}", request_timeout=2.0, probe_interval=probe, backoff=Backoff(0.01, 0.05)
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _next(monitor: Monitor, within: float = 3.0) -> RowEvent:
    async with asyncio.timeout(within):
        return await anext(monitor)


async def _events_until(monitor: Monitor, name: str, within: float = 3.0) -> list[RowEvent]:
    """Events up to and including the first one about the row called ``name``."""
    events = []
    while True:
        event = await _next(monitor, within)
        events.append(event)
        if event.row["name"] == name:
            return events


async def test_initial_rows_are_inserts_and_updates_follow(fake_ovsdb: FakeOVSDB) -> None:
    fake_ovsdb.rows["u1"] = {"name": "tap1", "ofport": 1}
    async with _client(fake_ovsdb) as client:
        monitor = await client.monitor(COLUMNS)
        first = await _next(monitor)
        assert (first.kind, first.row["name"], first.row["ofport"]) == (EventKind.INSERT, "tap1", 1)
        fake_ovsdb.insert("u2", {"name": "tap2"})
        fake_ovsdb.update({"u2": {"modify": {"ofport": 2}}})
        inserted, modified = await _next(monitor), await _next(monitor)
        assert (inserted.kind, inserted.row["ofport"]) == (EventKind.INSERT, None)
        assert (modified.kind, modified.row["ofport"]) == (EventKind.MODIFY, 2)


async def test_server_echo_is_answered(fake_ovsdb: FakeOVSDB) -> None:
    async with _client(fake_ovsdb) as client:
        await client.monitor(COLUMNS)
        fake_ovsdb.send_raw(b'{"id": "ping-7", "method": "echo", "params": ["x"]}')
        await fake_ovsdb.wait_until(
            lambda: any(r.get("id") == "ping-7" for r in fake_ovsdb.requests)
        )
        [reply] = [r for r in fake_ovsdb.requests if r.get("id") == "ping-7"]
        assert reply == {"id": "ping-7", "result": ["x"], "error": None}


async def test_reconnect_reports_what_changed_while_disconnected(fake_ovsdb: FakeOVSDB) -> None:
    fake_ovsdb.rows.update({"a": {"name": "a", "ofport": 1}, "b": {"name": "b", "ofport": 2}})
    async with _client(fake_ovsdb) as client:
        monitor = await client.monitor(COLUMNS)
        assert {(await _next(monitor)).row["name"] for _ in range(2)} == {"a", "b"}
        fake_ovsdb.drop()
        fake_ovsdb.rows.pop("a")
        fake_ovsdb.rows["b"] = {"name": "b", "ofport": 9}
        fake_ovsdb.rows["c"] = {"name": "c", "ofport": 3}
        await fake_ovsdb.wait_session(2)
        events = {(e.kind, e.row["name"]) for e in [await _next(monitor) for _ in range(3)]}
        assert events == {(EventKind.DELETE, "a"), (EventKind.MODIFY, "b"), (EventKind.INSERT, "c")}
        assert {r["name"]: r["ofport"] for r in monitor.rows("Interface").values()} == {
            "b": 9,
            "c": 3,
        }


GARBAGE = [
    b"this is not json",
    b'{"id": 999, "result": [], "error": null}',  # a reply to an id never used
    b'{"id": null, "method": "surprise", "params": []}',  # an unknown method
    b'{"id": null, "method": "update2", "params": ["no-such-monitor", {}]}',
    b'{"id": null, "method": "update2", "params": ["aovs-1", {"Interface": {"zz": {"modify": {"ofport": 1}}}}]}',  # noqa: E501
    b"[1, 2, 3]",
    b"\xc3\x28",  # invalid UTF-8
    b'{"id": null, "method": "update2",'
    b' "params": ["aovs-1", {"Interface": {"x": {"insert": {"ofport": "five"}}}}]}',
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_resets_and_the_monitor_comes_back(
    fake_ovsdb: FakeOVSDB, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with _client(fake_ovsdb) as client:
        monitor = await client.monitor(COLUMNS)
        fake_ovsdb.send_raw(garbage)
        fake_ovsdb.rows["u5"] = {"name": "after", "ofport": 5}  # the fresh state has it
        await fake_ovsdb.wait_session(2)
        events = await _events_until(monitor, "after")
        assert [(e.kind, e.row["ofport"]) for e in events] == [(EventKind.INSERT, 5)]
        assert fake_ovsdb.connections == 2
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "protocol" in r.getMessage()
    ]
    assert len(warnings) == 1  # logged once, with what was wrong


async def test_silent_server_is_detected_by_the_probe(fake_ovsdb: FakeOVSDB) -> None:
    async with _client(fake_ovsdb, probe=0.1) as client:
        await client.monitor(COLUMNS)
        fake_ovsdb.answer_echo = False
        await fake_ovsdb.wait_session(2, within=3)
        assert any(r.get("method") == "echo" for r in fake_ovsdb.requests)


async def test_truncated_stream_then_close_reconnects(fake_ovsdb: FakeOVSDB) -> None:
    async with _client(fake_ovsdb) as client:
        monitor = await client.monitor(COLUMNS)
        fake_ovsdb.send_raw(b'{"id": null, "method": "upd')
        fake_ovsdb.rows["u1"] = {"name": "later", "ofport": 4}
        fake_ovsdb.drop()
        await fake_ovsdb.wait_session(2)
        assert [e.row["name"] for e in await _events_until(monitor, "later")] == ["later"]


async def test_request_without_reply_times_out(fake_ovsdb: FakeOVSDB) -> None:
    async with _client(fake_ovsdb) as client:
        fake_ovsdb.answer_echo = False
        with pytest.raises(TimeoutError, match="echo"):
            await client.request("echo", [], timeout=0.1)


async def test_late_reply_to_a_cancelled_request_keeps_the_session(fake_ovsdb: FakeOVSDB) -> None:
    """A caller's own timeout cancels the request; its reply arriving later is no protocol
    error (it reset the session under load: a 1000-port VM reboot storm)."""
    async with _client(fake_ovsdb) as client:
        fake_ovsdb.answer_echo = False
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.request("echo", [], timeout=10.0)
        late = fake_ovsdb.requests[-1]["id"]
        fake_ovsdb.send_raw(json.dumps({"id": late, "result": [], "error": None}).encode())
        fake_ovsdb.answer_echo = True
        assert await client.request("echo", ["x"], timeout=2.0) == ["x"]
        assert client.connects == 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(min_size=1, max_size=40) | st.sampled_from(GARBAGE), min_size=1, max_size=4)
)
def test_fuzz_never_escapes_the_client(payloads: list[bytes]) -> None:
    asyncio.run(_fuzz(payloads))


async def _fuzz(payloads: list[bytes]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="aovs-fz-", dir="/tmp"))
    fake = FakeOVSDB(directory / "db.sock")
    await fake.start()
    try:
        async with _client(fake, probe=0.1) as client:
            monitor = await client.monitor(COLUMNS)
            for payload in payloads:
                fake.send_raw(payload)
                await asyncio.sleep(0)
            fake.insert("uz", {"name": "canary", "ofport": 7})  # by update, or by the resync
            events = await _events_until(monitor, "canary", within=5)
            assert events[-1].row["ofport"] == 7
            assert client._supervisor is not None and not client._supervisor.done()
    finally:
        await fake.stop()
        shutil.rmtree(directory, ignore_errors=True)
