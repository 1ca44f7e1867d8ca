"""kill -9 ovsdb-server mid-stream: the client reconnects and reports exactly what changed,
including changes made around the restart and changes made offline with ``ovsdb-tool``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from aovs.ovsdb import (
    AGENT_TABLES,
    AGENT_WHERE,
    Backoff,
    EventKind,
    Interface,
    Monitor,
    OVSDBClient,
)
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_sandbox: OVSSandbox) -> AsyncIterator[OVSDBClient]:
    ovsdb = OVSDBClient(
        fresh_sandbox.ovsdb_connection, request_timeout=10, backoff=Backoff(initial=0.02, cap=0.2)
    )
    async with ovsdb:
        yield ovsdb


def _port(bridge: str, name: str) -> list[str]:
    return ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
            f"external_ids:iface-id=id-{name}"]  # fmt: skip


async def _vsctl(sandbox: OVSSandbox, *args: str) -> str:
    return await asyncio.to_thread(sandbox.vsctl, *args)


class Mirror:
    """Interfaces rebuilt purely from events, the way the agent consumes them."""

    def __init__(self) -> None:
        self.ifaces: dict[str, Interface] = {}
        self.kinds: list[tuple[EventKind, str]] = []

    async def drain_until(self, monitor: Monitor, done: object, within: float = 15.0) -> None:
        assert callable(done)
        async with asyncio.timeout(within):
            while not done(self):
                event = await anext(monitor)
                if event.table != "Interface":
                    continue
                name = event.row["name"]
                self.kinds.append((event.kind, name))
                if event.kind is EventKind.DELETE:
                    del self.ifaces[name]
                else:
                    assert event.new is not None
                    self.ifaces[name] = Interface.from_row(event.new)

    def ofports(self) -> dict[str, int | None]:
        return {name: iface.ofport for name, iface in self.ifaces.items()}


def _real_ofports(sandbox: OVSSandbox) -> dict[str, int | None]:
    raw = json.loads(
        sandbox.vsctl("--format=json", "--columns=name,ofport,external_ids", "list", "Interface")
    )
    out: dict[str, int | None] = {}
    for name, ofport, external_ids in raw["data"]:
        if any(key == "iface-id" for key, _ in external_ids[1]):
            out[name] = None if ofport == ["set", []] else ofport
    return out


def _all_ready(names: set[str]) -> object:
    return lambda m: set(m.ifaces) == names and all(i.ofport_ready for i in m.ifaces.values())


async def test_kill_and_restart_with_changes_around_it(
    client: OVSDBClient, fresh_sandbox: OVSSandbox
) -> None:
    sb = fresh_sandbox
    await _vsctl(sb, "add-br", "brr", "--", "set", "Bridge", "brr", "datapath_type=dummy",
                 *_port("brr", "keep"), *_port("brr", "gone"), *_port("brr", "renum"))  # fmt: skip
    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    mirror = Mirror()
    await mirror.drain_until(monitor, _all_ready({"keep", "gone", "renum"}))
    sessions = client.connects

    # right before the kill: a change the update stream may or may not deliver in time
    await _vsctl(sb, "--no-wait", *_port("brr", "racer"))
    sb.kill("ovsdb-server")
    sb.start_ovsdb()
    # right after the restart, probably before the client is back
    await _vsctl(sb, "--no-wait", "del-port", "gone")
    await client.wait_connected(10)
    await _vsctl(sb, *_port("brr", "late"))
    await _vsctl(sb, "set", "Interface", "renum", "ofport_request=77")

    await mirror.drain_until(
        monitor,
        lambda m: (
            _all_ready({"keep", "renum", "racer", "late"})(m) and m.ifaces["renum"].ofport == 77
        ),
    )
    assert client.connects > sessions
    assert mirror.ofports() == _real_ofports(sb)
    assert (EventKind.DELETE, "gone") in mirror.kinds
    assert {(EventKind.INSERT, "racer"), (EventKind.INSERT, "late")} <= set(mirror.kinds)
    assert mirror.kinds.count((EventKind.INSERT, "keep")) == 1  # no duplicate insert on resync


async def test_database_changed_offline(client: OVSDBClient, fresh_sandbox: OVSSandbox) -> None:
    """While ovsdb-server is down, edit its file with ``ovsdb-tool transact``; on reconnect the
    client reports the removed port as a delete and the added one as an insert."""
    sb = fresh_sandbox
    await _vsctl(sb, "add-br", "bro", "--", "set", "Bridge", "bro", "datapath_type=dummy",
                 *_port("bro", "stays"), *_port("bro", "offdel"))  # fmt: skip
    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    mirror = Mirror()
    await mirror.drain_until(monitor, _all_ready({"stays", "offdel"}))
    doomed = sb.vsctl("get", "Port", "offdel", "_uuid").strip()
    stays_before = mirror.ifaces["stays"]
    seen_before = len(mirror.kinds)

    sb.kill("ovsdb-server")
    ops = [
        "Open_vSwitch",
        {"op": "insert", "table": "Interface", "uuid-name": "i",
         "row": {"name": "offadd", "type": "dummy",
                 "external_ids": ["map", [["iface-id", "id-offadd"]]]}},
        {"op": "insert", "table": "Port", "uuid-name": "p",
         "row": {"name": "offadd", "interfaces": ["named-uuid", "i"]}},
        {"op": "mutate", "table": "Bridge", "where": [["name", "==", "bro"]],
         "mutations": [["ports", "insert", ["named-uuid", "p"]],
                       ["ports", "delete", ["uuid", doomed]]]},
    ]  # fmt: skip
    await asyncio.to_thread(
        sb.run, "ovsdb-tool", "transact", str(sb.directory / "conf.db"), json.dumps(ops)
    )
    sb.start_ovsdb()

    await mirror.drain_until(monitor, _all_ready({"stays", "offadd"}))
    since = mirror.kinds[seen_before:]
    assert {(EventKind.DELETE, "offdel"), (EventKind.INSERT, "offadd")} <= set(since)
    assert all(name == "offadd" for kind, name in since if kind is not EventKind.DELETE)
    assert mirror.ifaces["stays"] == stays_before  # unchanged across the restart: no event
    assert mirror.ofports() == _real_ofports(sb)
