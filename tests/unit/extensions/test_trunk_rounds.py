"""The ``trunk`` extension's shell, one round at a time: every trunk bridge that appeared in a
round wired together (one ``bulk_pull``, the bindings and statuses concurrent, ONE OVSDB
transaction), and one bad trunk kept from spoiling the others (bridge by bridge on failure)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from aovs.extensions.trunk import ACTIVE, DEGRADED, ERROR, trunk_bridge_name
from aovs.extensions.trunk_wiring import RPC_CONCURRENCY, TrunkWiring
from aovs.ovsdb import ConnectionLost, OVSDBClient
from aovs.ovsdb.commands import AddPort, DeleteBridge, DeletePort, UpdateMapKeys
from aovs.ovsdb.errors import TransactionError
from aovs.ovsdb.monitor import Monitor
from aovs.rpc.errors import RemoteError
from aovs.rpc.resources import TrunkPush

BR_INT = "br-int"


def uid(kind: str, n: int) -> str:
    """A neutron-like id whose first 8 characters name its kind and number."""
    return f"{kind}{n:0{8 - len(kind)}d}-2222-4333-8444-555555555555"


def trunk_primitive(n: int, subports: int) -> dict[str, Any]:
    """``Trunk`` 1.1 as neutron's server sends it (its subports ``SubPort`` 1.0)."""
    subs = [{"versioned_object.name": "SubPort", "versioned_object.namespace": "neutron",
             "versioned_object.version": "1.0",
             "versioned_object.data": {"port_id": uid(f"s{n}", k), "trunk_id": uid("t", n),
                                       "segmentation_type": "vlan", "segmentation_id": 100 + k}}
            for k in range(subports)]  # fmt: skip
    data = {"id": uid("t", n), "port_id": uid("p", n), "sub_ports": subs, "status": "DOWN"}
    return {"versioned_object.name": "Trunk", "versioned_object.namespace": "neutron",
            "versioned_object.version": "1.1", "versioned_object.data": data}  # fmt: skip


class FakeMonitor:
    """The monitor's rows of the trunk bridges (each with its VM's tap)."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {"Bridge": {}, "Port": {},
                                                             "Interface": {}}  # fmt: skip

    def plug(self, n: int) -> str:
        """What os-vif does for trunk ``n``'s VM: its bridge, the tap on it."""
        bridge, tap = trunk_bridge_name(uid("t", n)), f"tap{n:011d}"
        self.tables["Interface"][f"i-{tap}"] = {"name": tap, "external_ids": {
            "iface-id": uid("p", n), "attached-mac": f"fa:16:3e:00:00:{n:02x}"}}  # fmt: skip
        self.tables["Port"][f"p-{tap}"] = {"name": tap, "interfaces": [f"i-{tap}"]}
        self.tables["Bridge"][f"b-{bridge}"] = {"name": bridge, "ports": [f"p-{tap}"]}
        return bridge

    def unplug(self, bridge: str) -> None:
        del self.tables["Bridge"][f"b-{bridge}"]

    def rows(self, table: str) -> Mapping[str, Mapping[str, Any]]:
        return self.tables[table]


class FakeOvsdb:
    """Records transactions; refuses those touching a bridge in ``refuse``, or all (``lost``)."""

    def __init__(self) -> None:
        self.transactions: list[tuple[Any, ...]] = []
        self.refuse: set[str] = set()
        self.lost = False

    async def transact(self, *commands: Any) -> None:
        self.transactions.append(commands)
        if self.lost:
            raise ConnectionLost("OVSDB gone")
        if any(getattr(c, "bridge", None) in self.refuse for c in commands):
            raise TransactionError("constraint violation", "refused")


class FakeServer:
    """neutron-server's side: ``bulk_pull`` of Trunk by parent, the trunk RPCs; counts how many
    calls are in flight at once."""

    def __init__(self, trunks: Mapping[int, int]) -> None:
        self.trunks = {uid("p", n): trunk_primitive(n, subs) for n, subs in trunks.items()}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.statuses: dict[str, str] = {}
        self.in_flight = self.most_in_flight = 0
        self.fail_bindings_of: set[str] = set()  # trunk ids

    async def call(self, topic: str, method: str, args: dict[str, Any], **_: Any) -> Any:
        self.calls.append((method, args))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return self._answer(method, args)
        finally:
            self.in_flight -= 1

    def _answer(self, method: str, args: dict[str, Any]) -> Any:
        if method == "bulk_pull":
            assert args["resource_type"] == "Trunk" and set(args["filter_kwargs"]) == {"port_id"}
            return [t for p, t in self.trunks.items() if p in args["filter_kwargs"]["port_id"]]
        if method == "update_subport_bindings":
            trunk_id = args["subports"][0]["trunk_id"]
            if trunk_id in self.fail_bindings_of:
                raise RemoteError("DBError", "oslo_db.exception", "deadlock")
            return {trunk_id: [{"id": s["port_id"], "mac_address": "fa:16:3e:11:11:11"}
                               for s in args["subports"]]}  # fmt: skip
        if method == "update_trunk_status":
            self.statuses[args["trunk_id"]] = args["status"]
            return None
        raise AssertionError(f"unexpected call {method}")

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


class World:
    def __init__(self, trunks: Mapping[int, int]) -> None:
        self.monitor, self.ovsdb, self.server = FakeMonitor(), FakeOvsdb(), FakeServer(trunks)
        self.delivered: list[TrunkPush] = []
        self.wiring = TrunkWiring(cast(OVSDBClient, self.ovsdb), cast(Monitor, self.monitor),
                                  lambda: cast(Any, self.server), self.delivered.append,
                                  BR_INT)  # fmt: skip


def added_ports(commands: Sequence[Any], bridge: str) -> set[str]:
    return {c.name for c in commands if isinstance(c, AddPort) and c.bridge == bridge}


async def test_a_round_wires_every_new_trunk_together() -> None:
    world = World({1: 2, 2: 0, 3: 4})
    bridges = [world.monitor.plug(n) for n in (1, 2, 3, 4)]  # 4: a VM on a bridge, no trunk
    await world.wiring._round()
    server, ovsdb = world.server, world.ovsdb
    # ONE pull for the four parents; trunk 4's parent has none: skipped, not asked again
    assert server.count("bulk_pull") == 1
    parents = sorted(uid("p", n) for n in (1, 2, 3, 4))
    assert server.calls[0][1]["filter_kwargs"] == {"port_id": parents}
    assert server.count("update_subport_bindings") == 2  # trunk 2 has no subports to bind
    assert len(ovsdb.transactions) == 1  # every trunk's ports: ONE transaction
    (commands,) = ovsdb.transactions
    assert len(added_ports(commands, BR_INT)) == 3 + 1 + 5  # parents and subports, br-int side
    assert added_ports(commands, bridges[2]) == {"tpt-p0000003-22"} | {
        f"spt-s3{k:06d}-22" for k in range(4)}  # fmt: skip
    assert not added_ports(commands, bridges[3])
    metadata = [c for c in commands if isinstance(c, UpdateMapKeys)]
    assert sorted(c.set["trunk_id"] for c in metadata) == [uid("t", n) for n in (1, 2, 3)]
    assert server.statuses == {uid("t", n): ACTIVE for n in (1, 2, 3)}
    assert sorted(world.wiring.wired) == sorted(bridges[:3])
    (push,) = world.delivered  # the agent's cache learns the three trunks at once
    assert sorted(t.id for t in push.trunks) == [uid("t", n) for n in (1, 2, 3)]
    await world.wiring._round()  # nothing new: nothing asked, nothing written
    assert server.count("bulk_pull") == 1 and len(ovsdb.transactions) == 1


async def test_bindings_and_statuses_go_out_concurrently_within_a_bound() -> None:
    world = World({n: 1 for n in range(RPC_CONCURRENCY + 8)})
    for n in range(RPC_CONCURRENCY + 8):
        world.monitor.plug(n)
    await world.wiring._round()
    assert world.server.count("update_subport_bindings") == RPC_CONCURRENCY + 8
    assert world.server.count("update_trunk_status") == RPC_CONCURRENCY + 8
    # not one after the other, nor all at once
    assert world.server.most_in_flight == RPC_CONCURRENCY


async def test_a_refused_batch_is_written_bridge_by_bridge() -> None:
    world = World({1: 1, 2: 1, 3: 1})
    good1, bad, good3 = (world.monitor.plug(n) for n in (1, 2, 3))
    world.ovsdb.refuse = {bad}
    with pytest.raises(TransactionError):  # the round fails: the agent tries again later
        await world.wiring._round()
    # the batch, then each bridge on its own: the bad one cannot keep the others unwired
    assert len(world.ovsdb.transactions) == 1 + 3
    assert sorted(world.wiring.wired) == sorted([good1, good3])
    assert world.server.statuses == {uid("t", 1): ACTIVE, uid("t", 2): ERROR, uid("t", 3): ACTIVE}
    world.ovsdb.refuse = set()
    world.server.calls.clear()
    await world.wiring._round()  # the retry: only the trunk left
    assert world.server.calls[0][1]["filter_kwargs"] == {"port_id": [uid("p", 2)]}
    assert added_ports(world.ovsdb.transactions[-1], bad) == {"tpt-p0000002-22", "spt-s2000000-22"}
    assert sorted(world.wiring.wired) == sorted([good1, bad, good3])
    assert world.server.statuses[uid("t", 2)] == ACTIVE


async def test_ovsdb_gone_fails_every_trunk_without_retrying_each() -> None:
    world = World({1: 1, 2: 1})
    world.monitor.plug(1)
    world.monitor.plug(2)
    world.ovsdb.lost = True
    with pytest.raises(ConnectionLost):
        await world.wiring._round()
    assert len(world.ovsdb.transactions) == 1 and not world.wiring.wired
    assert world.server.statuses == {uid("t", 1): ERROR, uid("t", 2): ERROR}


async def test_a_failed_binding_keeps_only_its_trunk_for_the_next_round() -> None:
    world = World({1: 2, 2: 2})
    first, second = world.monitor.plug(1), world.monitor.plug(2)
    world.server.fail_bindings_of = {uid("t", 2)}
    with pytest.raises(RemoteError):
        await world.wiring._round()
    assert list(world.wiring.wired) == [first]
    assert world.server.statuses == {uid("t", 1): ACTIVE}  # trunk 2: nothing said yet
    world.server.fail_bindings_of = set()
    await world.wiring._round()
    assert sorted(world.wiring.wired) == sorted([first, second])
    assert world.server.statuses[uid("t", 2)] == ACTIVE


async def test_an_unbound_subport_makes_its_trunk_degraded() -> None:
    world = World({1: 2})
    world.monitor.plug(1)

    async def bind_one(topic: str, method: str, args: dict[str, Any], **kw: Any) -> Any:
        if method == "update_subport_bindings":  # the server bound only the first subport
            first = args["subports"][0]
            return {first["trunk_id"]: [{"id": first["port_id"], "mac_address": "m"}]}
        return await FakeServer.call(world.server, topic, method, args, **kw)

    world.server.call = bind_one  # type: ignore[method-assign]
    await world.wiring._round()
    assert world.server.statuses == {uid("t", 1): DEGRADED}


async def test_bridges_gone_are_unwired_in_one_transaction() -> None:
    world = World({1: 1, 2: 3, 3: 0})
    bridges = [world.monitor.plug(n) for n in (1, 2, 3)]
    await world.wiring._round()
    world.monitor.unplug(bridges[0])
    world.monitor.unplug(bridges[1])
    await world.wiring._round()
    assert len(world.ovsdb.transactions) == 2
    removed = world.ovsdb.transactions[-1]
    deleted = {c.name for c in removed if isinstance(c, DeletePort) and c.bridge == BR_INT}
    assert deleted == {"tpi-p0000001-22", "spi-s1000000-22", "tpi-p0000002-22"} | {
        f"spi-s2{k:06d}-22" for k in range(3)}  # fmt: skip
    assert not [c for c in removed if isinstance(c, DeleteBridge)]  # the bridges are gone
    assert list(world.wiring.wired) == [bridges[2]]


def test_off_br_int_follows_the_trunk_bridges_rows() -> None:
    world = World({})
    tables, off_br_int = world.monitor.tables, world.wiring.off_br_int
    trunk_bridge = "b-" + world.monitor.plug(1)
    tables["Port"]["p-vm"] = {"name": "tapvm", "interfaces": ["i-vm"]}
    tables["Bridge"]["b-int"] = {"name": BR_INT, "ports": ["p-vm"]}
    assert off_br_int("i-tap00000000001") and not off_br_int("i-vm")
    # the port moves to the trunk bridge (rows are replaced, as the monitor's cache does)
    moved = [*tables["Bridge"][trunk_bridge]["ports"], "p-vm"]
    tables["Bridge"][trunk_bridge] = {**tables["Bridge"][trunk_bridge], "ports": moved}
    tables["Bridge"]["b-int"] = {"name": BR_INT, "ports": []}
    assert off_br_int("i-vm")
    # a trunk bridge's port given another interface, its bridge's row unchanged
    tables["Port"]["p-vm"] = {"name": "tapvm", "interfaces": ["i-other"]}
    assert off_br_int("i-other") and not off_br_int("i-vm")
    del tables["Bridge"][trunk_bridge]
    assert not off_br_int("i-other") and not off_br_int("i-tap00000000001")
