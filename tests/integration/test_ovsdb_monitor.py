"""Monitors against the real ovsdb-server: events for bulk adds, VM reboots, external_ids edits,
and the cache cross-checked against ``ovs-vsctl list Interface``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aovs.ovsdb import (
    AGENT_TABLES,
    AGENT_WHERE,
    EventKind,
    Includes,
    Interface,
    Monitor,
    OVSDBClient,
    RowEvent,
)
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(ovs_sandbox: OVSSandbox) -> AsyncIterator[OVSDBClient]:
    async with OVSDBClient(ovs_sandbox.ovsdb_connection, request_timeout=20) as ovsdb:
        yield ovsdb


def _add_ports(bridge: str, names: list[str]) -> list[str]:
    args = [
        "--", "--may-exist", "add-br", bridge,
        "--", "set", "Bridge", bridge, "datapath_type=dummy", "fail-mode=secure",
    ]  # fmt: skip
    for name in names:
        args += ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=dummy",
                 f"external_ids:iface-id=id-{name}", "external_ids:attached-mac=fa:16:3e:00:00:01",
                 f"external_ids:vm-uuid=vm-{name}"]  # fmt: skip
    return args


class Fold:
    """The state events describe, by Interface name: what a consumer would rebuild."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ifaces: dict[str, Interface] = {}
        self.events: list[RowEvent] = []

    def add(self, event: RowEvent) -> None:
        if event.table != "Interface" or not event.row["name"].startswith(self.prefix):
            return
        self.events.append(event)
        if event.kind is EventKind.DELETE:
            self.ifaces.pop(event.row["name"])
        else:
            assert event.new is not None
            self.ifaces[event.row["name"]] = Interface.from_row(event.new)

    async def until(self, monitor: Monitor, done: Any, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not done(self):
                self.add(await anext(monitor))
                for event in monitor.pending():
                    self.add(event)


async def test_thousand_ports_in_one_transaction(
    client: OVSDBClient, ovs_sandbox: OVSSandbox
) -> None:
    names = [f"k{i:04d}" for i in range(1000)]
    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    fold = Fold("k")
    await asyncio.to_thread(ovs_sandbox.vsctl, *_add_ports("brk", names), timeout=120)
    try:
        await fold.until(
            monitor,
            lambda f: len(f.ifaces) == 1000 and all(i.ofport_ready for i in f.ifaces.values()),
        )
        inserts = [e for e in fold.events if e.kind is EventKind.INSERT]
        assert sorted(e.row["name"] for e in inserts) == names
        ofports = {i.ofport for i in fold.ifaces.values()}
        assert len(ofports) == 1000  # distinct, all assigned
        sample = fold.ifaces["k0042"]
        assert (sample.iface_id, sample.attached_mac, sample.vm_uuid, sample.type) == (
            "id-k0042", "fa:16:3e:00:00:01", "vm-k0042", "dummy",
        )  # fmt: skip
        assert _vsctl_interfaces(ovs_sandbox, "k") == _cached_interfaces(monitor, "k")
    finally:
        await asyncio.to_thread(ovs_sandbox.vsctl, "--if-exists", "del-br", "brk", timeout=120)


async def test_vm_reboot_and_external_ids_change(
    client: OVSDBClient, ovs_sandbox: OVSSandbox
) -> None:
    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    fold = Fold("rb")
    await asyncio.to_thread(ovs_sandbox.vsctl, *_add_ports("brrb", ["rb1", "rb2"]))
    try:
        await fold.until(
            monitor, lambda f: all(f.ifaces.get(n, _NO).ofport_ready for n in ("rb1", "rb2"))
        )
        first = fold.ifaces["rb1"]
        fold.events.clear()

        # a VM reboot: nova deletes and re-adds the tap
        await asyncio.to_thread(ovs_sandbox.vsctl, "del-port", "rb1")
        await asyncio.to_thread(ovs_sandbox.vsctl, *_add_ports("brrb", ["rb1"]))
        await fold.until(
            monitor,
            lambda f: (
                f.ifaces.get("rb1", first).uuid != first.uuid and f.ifaces["rb1"].ofport_ready
            ),
        )
        kinds = [e.kind for e in fold.events if e.row["name"] == "rb1"]
        assert kinds[:2] == [EventKind.DELETE, EventKind.INSERT]
        again = fold.ifaces["rb1"]
        assert again.uuid != first.uuid and again.ofport != first.ofport
        fold.events.clear()

        await asyncio.to_thread(
            ovs_sandbox.vsctl, "set", "Interface", "rb2", "external_ids:iface-id=moved"
        )
        await fold.until(monitor, lambda f: f.ifaces["rb2"].iface_id == "moved")
        [modify] = fold.events
        assert modify.kind is EventKind.MODIFY and modify.changed == {"external_ids"}
        assert modify.old is not None and modify.old["external_ids"]["iface-id"] == "id-rb2"

        # losing the key makes the row leave the view: a delete
        await asyncio.to_thread(
            ovs_sandbox.vsctl, "remove", "Interface", "rb2", "external_ids", "iface-id"
        )
        await fold.until(monitor, lambda f: "rb2" not in f.ifaces)
        assert fold.events[-1].kind is EventKind.DELETE
    finally:
        await asyncio.to_thread(ovs_sandbox.vsctl, "--if-exists", "del-br", "brrb")


async def test_server_side_map_condition(client: OVSDBClient, ovs_sandbox: OVSSandbox) -> None:
    """``includes`` with a map is evaluated by ovsdb-server 3.1 in monitor_cond."""
    await asyncio.to_thread(ovs_sandbox.vsctl, *_add_ports("brmc", ["mc1", "mc2"]))
    try:
        monitor = await client.monitor(
            {"Interface": ["name"]},
            where={"Interface": Includes("external_ids", {"iface-id": "id-mc2"})},
        )
        assert [r["name"] for r in monitor.rows("Interface").values()] == ["mc2"]
    finally:
        await asyncio.to_thread(ovs_sandbox.vsctl, "--if-exists", "del-br", "brmc")


class _Never:
    ofport_ready = False


_NO: Any = _Never()


def _cached_interfaces(monitor: Monitor, prefix: str) -> dict[str, dict[str, Any]]:
    return {
        row["name"]: {"uuid": str(row.uuid), "ofport": row["ofport"], "type": row["type"],
                      "external_ids": dict(row["external_ids"])}
        for row in monitor.rows("Interface").values()
        if row["name"].startswith(prefix)
    }  # fmt: skip


def _vsctl_interfaces(sandbox: OVSSandbox, prefix: str) -> dict[str, dict[str, Any]]:
    """``ovs-vsctl --format=json list Interface``, decoded independently of the client."""
    raw = json.loads(
        sandbox.vsctl(
            "--format=json", "--columns=_uuid,name,ofport,type,external_ids", "list", "Interface"
        )
    )
    out = {}
    for values in raw["data"]:
        row = dict(zip(raw["headings"], values, strict=True))
        if not row["name"].startswith(prefix):
            continue
        ofport = row["ofport"]
        out[row["name"]] = {
            "uuid": row["_uuid"][1],
            "ofport": None if ofport == ["set", []] else ofport,
            "type": row["type"],
            "external_ids": dict(row["external_ids"][1]),
        }
    return out
