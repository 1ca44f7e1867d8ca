"""Every fault the suite injects: each one starts the fault, lets it last, and ends it.

A fault returns what it did (one line, for the record) and, for bad input, the log line the
agent must write about it (a regular expression on the JSON record's message and fields):
malformed input must be one clear line, never a crash. The world's proxy, simulator, broker
vhost and sandbox are the levers; nothing here looks inside the agent.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from fault_world import FaultWorld, rabbitmqctl

from aovs.agent.snapshot import FILE_NAME, LocalSnapshot
from aovs.rpc import wire
from aovs.rpc.notifications import AGENT_TOPICS, PORT_UPDATE_TOPIC

OVSDB_SOCKET = "db.sock"
MGMT_SOCKETS = ("br-int.mgmt", "br-phys.mgmt")


@dataclass(frozen=True)
class Injected:
    """What a fault did; ``log`` (a regex) must match one of the agent's lines after it."""

    what: str
    log: re.Pattern[str] | None = None
    violations: tuple[str, ...] = ()  # broken on the spot (e.g. a torn snapshot)


FaultFn = Callable[[FaultWorld, random.Random], Awaitable[Injected]]


async def _pause(rng: random.Random, low: float, high: float) -> float:
    seconds = round(rng.uniform(low, high), 2)
    await asyncio.sleep(seconds)
    return seconds


# ---- OVS daemons -----------------------------------------------------------------------------


async def kill_vswitchd(world: FaultWorld, rng: random.Random) -> Injected:
    await asyncio.to_thread(world.sandbox.kill, "ovs-vswitchd")
    down = await _pause(rng, 0.2, 2.0)
    await asyncio.to_thread(world.sandbox.start_vswitchd)
    return Injected(f"kill -9 ovs-vswitchd, {down} s down")


async def kill_ovsdb(world: FaultWorld, rng: random.Random) -> Injected:
    await asyncio.to_thread(world.sandbox.kill, "ovsdb-server")
    down = await _pause(rng, 0.2, 2.0)
    await asyncio.to_thread(world.sandbox.start_ovsdb)
    return Injected(f"kill -9 ovsdb-server, {down} s down")


async def kill_both(world: FaultWorld, rng: random.Random) -> Injected:
    first, second = rng.sample(["ovs-vswitchd", "ovsdb-server"], 2)
    await asyncio.to_thread(world.sandbox.kill, first)
    await asyncio.to_thread(world.sandbox.kill, second)
    down = await _pause(rng, 0.2, 2.0)
    await asyncio.to_thread(world.sandbox.start_ovsdb)
    await asyncio.to_thread(world.sandbox.start_vswitchd)
    return Injected(f"kill -9 {first} and {second}, {down} s down")


# ---- RabbitMQ and neutron-server -------------------------------------------------------------


async def broker_closes_connections(world: FaultWorld, rng: random.Random) -> Injected:
    limit = rng.randint(1, 4)
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "--vhost", world.vhost,
                            "--limit", str(limit), "aovs fault injection")  # fmt: skip
    return Injected(f"broker closed up to {limit} connections")


async def server_hung(world: FaultWorld, rng: random.Random) -> Injected:
    world.simulator.answering = False
    try:
        down = await _pause(rng, 1.0, 6.0)
    finally:
        world.simulator.answering = True
    return Injected(f"server not answering for {down} s")


async def server_slow(world: FaultWorld, rng: random.Random) -> Injected:
    late = world.settings().rpc_response_max_timeout + 1.0  # every reply after the timeout
    world.simulator.reply_delay = late
    try:
        lasted = await _pause(rng, 1.0, 6.0)
    finally:
        world.simulator.reply_delay = 0.0
    return Injected(f"server replying after {late} s for {lasted} s")


async def server_fails_devices(world: FaultWorld, rng: random.Random) -> Injected:
    good = [vm.iface_id for vm in world.vms if vm.iface_id.startswith("good-")]
    failing = set(rng.sample(good, max(1, len(good) // 3)))
    world.simulator.fail_devices = failing
    try:
        for device in sorted(failing):  # make the agent ask about them now
            await world.simulator.notify_port_update(device)
        lasted = await _pause(rng, 1.0, 4.0)
    finally:
        world.simulator.fail_devices = set()
    return Injected(f"server failing {len(failing)} devices for {lasted} s")


# ---- the agent itself ------------------------------------------------------------------------


def snapshot_problem(world: FaultWorld) -> str | None:
    """A torn or invalid snapshot, in one line (None: absent or whole)."""
    path = world.state_path / FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        LocalSnapshot.from_json(text)
    except ValueError as exc:
        return f"snapshot {path} unreadable after SIGKILL: {exc}"
    return None


async def kill_agent(world: FaultWorld, rng: random.Random) -> Injected:
    await world.kill_agent()
    torn = snapshot_problem(world)
    down = await _pause(rng, 0.0, 2.0)
    await world.spawn_agent()
    return Injected(f"kill -9 the agent, {down} s down", violations=(torn,) if torn else ())


# ---- malformed input: OVSDB and OpenFlow through the proxy -----------------------------------

OVSDB_GARBAGE: dict[str, tuple[bytes, bool]] = {  # name -> (bytes, hang up after)
    "binary": (bytes(range(256)) * 4, False),
    "not an object": (b'[1, 2, 3]', False),
    "unknown method": (b'{"id": 7, "method": "transact", "params": []}', False),
    "reply to nobody": (b'{"id": 987654321, "result": [], "error": null}', False),
    "update2 wrong types": (b'{"id": null, "method": "update2", "params": [5, {"Interface": 7}]}',
                            False),
    "truncated": (b'{"id": null, "method": "update2", "params": ["x", {"Interf', True),
}  # fmt: skip


async def ovsdb_garbage(world: FaultWorld, rng: random.Random) -> Injected:
    kind = rng.choice(sorted(OVSDB_GARBAGE))
    data, hang_up = OVSDB_GARBAGE[kind]
    await world.proxy.wait_connected(OVSDB_SOCKET)  # not while it reconnects: nobody to lie to
    sent = world.proxy.inject(OVSDB_SOCKET, data, hang_up)
    await asyncio.sleep(0.3)
    said = re.compile(r"ovsdb (connection lost|session setup failed|monitor)")
    return Injected(f"ovsdb-server sent {kind} ({sent} connections)", said)


def _of_header(msg_type: int, length: int, xid: int, version: int = 4) -> bytes:
    return struct.pack("!BBHI", version, msg_type, length, xid)


OPENFLOW_GARBAGE: dict[str, tuple[bytes, bool]] = {
    "wrong version": (_of_header(0, 8, 1, version=1), False),
    "length below the header": (_of_header(2, 4, 2), False),
    "truncated": (_of_header(19, 200, 3) + b"\x00" * 40, True),
    "binary": (bytes(range(255, -1, -1)) * 2, False),
}


async def openflow_garbage(world: FaultWorld, rng: random.Random) -> Injected:
    kind = rng.choice(sorted(OPENFLOW_GARBAGE))
    socket = rng.choice(MGMT_SOCKETS)
    data, hang_up = OPENFLOW_GARBAGE[kind]
    await world.proxy.wait_connected(socket)
    sent = world.proxy.inject(socket, data, hang_up)
    await asyncio.sleep(0.3)
    said = re.compile(r"OpenFlow connection lost.*(protocol error|truncated)")
    return Injected(f"{socket} sent {kind} ({sent} connections)", said)


# ---- malformed input: AMQP -------------------------------------------------------------------


def _cast(method: str, args: object) -> bytes:
    inner = wire.request(method, {"x": 0}, "1.0", wire.admin_context())
    inner["args"] = args
    return wire.encode(inner)


# Built per injection: a cast carries a fresh _unique_id, and receivers (oslo.messaging and
# aovs alike) silently drop a repeat of one of the last 16 ids, which is not malformed input.
AMQP_NOTIFICATIONS: dict[str, Callable[[], bytes]] = {
    "not JSON": lambda: b"\xff\xfe{{{ not json",
    "JSON array": lambda: b"[1, 2]",
    "envelope without message": lambda: json.dumps({"oslo.version": "2.0"}).encode(),
    "port_update, port is a number": lambda: _cast("port_update", {"port": 5}),
    "port_delete, no port_id": lambda: _cast("port_delete", {"network_id": []}),
    "args not an object": lambda: _cast("port_update", ["port"]),
}
AMQP_REPLIES: dict[str, bytes] = {
    "not JSON": b"}}}",
    "JSON string": b'"reply"',
    "oslo.message not JSON": json.dumps({"oslo.version": "2.0", "oslo.message": "{"}).encode(),
}


async def _publish(world: FaultWorld, body: bytes, exchange: str | None, key: str) -> None:
    connection = await aio_pika.connect(world.transport_url.replace("rabbit://", "amqp://"),
                                        timeout=10)  # fmt: skip
    async with connection:
        channel = await connection.channel()
        target = (channel.default_exchange if exchange is None
                  else await channel.get_exchange(exchange, ensure=False))  # fmt: skip
        await target.publish(aio_pika.Message(body), routing_key=key)


async def amqp_bad_notification(world: FaultWorld, rng: random.Random) -> Injected:
    kind = rng.choice(sorted(AMQP_NOTIFICATIONS))
    topic = PORT_UPDATE_TOPIC if "port_" in kind else rng.choice(AGENT_TOPICS)
    if rng.random() < 0.5:  # to every agent (fanout), or to this host's queue
        await _publish(world, AMQP_NOTIFICATIONS[kind](), f"{topic}_fanout", "")
    else:
        await _publish(world, AMQP_NOTIFICATIONS[kind](), None, f"{topic}.{world.settings().host}")
    return Injected(f"notification on {topic}: {kind}",
                    re.compile(r"dropped malformed (message|\w+ notification)"))  # fmt: skip


async def amqp_bad_reply(world: FaultWorld, rng: random.Random) -> Injected:
    kind = rng.choice(sorted(AMQP_REPLIES))
    listed = await asyncio.to_thread(rabbitmqctl, "list_queues", "-p", world.vhost, "name")
    mine = world.simulator.transport.reply_queue
    queues = [q for q in listed.split() if q.startswith("reply_") and q != mine]
    for queue in queues:  # the live agent's, and any a killed one left behind
        await _publish(world, AMQP_REPLIES[kind], None, queue)
    return Injected(f"reply queue(s) got {kind} ({len(queues)} queues)",
                    re.compile(r"dropped malformed reply"))  # fmt: skip


FAULTS: dict[str, FaultFn] = {
    "kill_vswitchd": kill_vswitchd,
    "kill_ovsdb": kill_ovsdb,
    "kill_ovs_both": kill_both,
    "broker_closes_connections": broker_closes_connections,
    "server_hung": server_hung,
    "server_slow": server_slow,
    "server_fails_devices": server_fails_devices,
    "kill_agent": kill_agent,
    "ovsdb_garbage": ovsdb_garbage,
    "openflow_garbage": openflow_garbage,
    "amqp_bad_notification": amqp_bad_notification,
    "amqp_bad_reply": amqp_bad_reply,
}
