"""The OVSDB client: initial monitor dump of 1000 interfaces, and change-to-event latency.

Run: ``python -m benchmarks.bench_ovsdb [--ports 1000] [--dumps 7] [--changes 200]``; writes
benchmarks/results/ovsdb.json. On a private sandbox (dummy datapath) with ``--ports`` VM-like
interfaces (name, ofport, type, external_ids with iface-id/attached-mac/vm-uuid):

- initial_dump_1000_ms / initial_dump_1000_wall_ms: client CPU (``time.process_time``) and wall
  time of ``client.monitor(AGENT_TABLES, where=AGENT_WHERE)``: request, receive, decode, cache and
  queue the insert events (median of ``--dumps``, each a new monitor on the same session);
  baseline_json_loads_ms: CPU of ``json.loads`` alone on the same reply bytes (the floor);
- event_latency_p50/p99_ms: from just before ``ovs-vsctl --no-wait set Interface .. external_ids``
  to our consumer receiving the modify event, over ``--changes`` changes;
  raw_latency_p50/p99_ms: the same change seen by a minimal raw-socket reader in ANOTHER process
  (blocking recv, no decoding): OVSDB's own notification time plus ovs-vsctl;
  beyond_raw_p50/p99_ms: per change, our event time minus the raw reader's (CLOCK_MONOTONIC is
  shared by processes), i.e. what aovs adds on top of OVSDB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from aovs.ovsdb import AGENT_TABLES, AGENT_WHERE, EventKind, OVSDBClient
from aovs.ovsdb.cache import RowCache
from aovs.sandbox import OVSSandbox, running_sandbox

RESULTS = Path(__file__).parent / "results" / "ovsdb.json"
BRIDGE = "br-bench"
WATCHED = "bp0000"  # the interface whose external_ids change in the latency run


def add_ports(sandbox: OVSSandbox, count: int) -> None:
    args = ["--", "add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=dummy"]
    for i in range(count):
        name = f"bp{i:04d}"
        args += ["--", "add-port", BRIDGE, name, "--", "set", "Interface", name, "type=dummy",
                 f"external_ids:iface-id=3f0c{i:04d}-6c1a-4d6e-9f4e-0b8e4e37a1{i:04d}"[:36],
                 f"external_ids:attached-mac=fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
                 "external_ids:vm-uuid=9b1f9c1e-2f7a-4c55-8f0e-3a2d6c7b8e90",
                 "external_ids:iface-status=active"]  # fmt: skip
    sandbox.vsctl(*args, timeout=300)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the raw baseline: another process, a blocking socket, timestamps only ----------------------
RAW_READER = r"""
import json, socket, sys, time
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX); s.connect(path)
req = {"id": 1, "method": "monitor_cond", "params": ["Open_vSwitch", "raw",
       {"Interface": [{"columns": ["external_ids"], "where": [["name", "==", name]]}]}]}
s.sendall(json.dumps(req).encode())
seen, buf = {}, b""
print("ready", flush=True)
while len(seen) < count:
    data = s.recv(1 << 20)
    now = time.monotonic()
    buf += data
    while True:  # a marker is "bench","<n>" inside the update; find each new one
        i = buf.find(b'"bench","')
        if i < 0:
            buf = buf[-32:]
            break
        j = buf.index(b'"', i + 9)
        seen.setdefault(int(buf[i + 9 : j]), now)
        buf = buf[j:]
print(json.dumps(seen), flush=True)
"""


async def measure_dumps(client: OVSDBClient, dumps: int, ports: int) -> dict[str, float]:
    cpu, wall = [], []
    for _ in range(dumps):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
        wall.append((time.perf_counter() - wall0) * 1000)
        cpu.append((time.process_time() - cpu0) * 1000)
        assert len(monitor.rows("Interface")) == ports, len(monitor.rows("Interface"))
        assert len(monitor.pending()) >= ports
        await client.cancel_monitor(monitor)
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall)}


def json_loads_floor(sandbox: OVSSandbox, repeats: int = 7) -> tuple[float, int]:
    """CPU of json.loads on the raw reply to the same monitor_cond, fetched with a raw socket."""
    cache = RowCache(AGENT_TABLES, AGENT_WHERE)  # the same request the client sends
    request = {
        "id": 1,
        "method": "monitor_cond",
        "params": ["Open_vSwitch", "floor", cache.request()],
    }
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sandbox.db_sock))
        s.sendall(json.dumps(request).encode())
        decoder, buf = json.JSONDecoder(), ""
        while True:
            buf += s.recv(1 << 20).decode()
            try:
                decoder.raw_decode(buf)
                break
            except json.JSONDecodeError:
                continue
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        json.loads(buf)
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times), len(buf)


def start_raw_reader(sandbox: OVSSandbox, changes: int) -> subprocess.Popen[str]:
    raw = subprocess.Popen(
        [sys.executable, "-c", RAW_READER, str(sandbox.db_sock), WATCHED, str(changes)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert raw.stdout is not None
    assert raw.stdout.readline().strip() == "ready"
    return raw


async def measure_latency(client: OVSDBClient, sandbox: OVSSandbox, changes: int) -> dict[str, Any]:
    raw = await asyncio.to_thread(start_raw_reader, sandbox, changes)
    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    monitor.pending()  # the initial inserts
    seen: dict[int, float] = {}

    async def consume() -> None:
        async for event in monitor:
            if event.kind is EventKind.MODIFY and event.row["name"] == WATCHED:
                marker = event.row["external_ids"].get("bench")
                if marker is not None:
                    seen.setdefault(int(marker), time.monotonic())
                    if len(seen) == changes:
                        return

    gc_pauses: list[float] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        elif info["generation"] == 2:
            gc_pauses.append((time.perf_counter() - gc_start[0]) * 1000)

    gc.callbacks.append(on_gc)
    consumer = asyncio.create_task(consume())
    started: dict[int, float] = {}
    for n in range(changes):
        started[n] = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "ovs-vsctl", "--no-wait", "set", "Interface", WATCHED, f"external_ids:bench={n}",
            env=sandbox.env,
        )  # fmt: skip
        await proc.wait()
        await asyncio.sleep(0.005)
    await asyncio.wait_for(consumer, 30)
    gc.callbacks.remove(on_gc)
    out, _ = await asyncio.to_thread(raw.communicate, timeout=30)
    raw_seen = {int(k): v for k, v in json.loads(out.splitlines()[-1]).items()}
    ours = [(seen[n] - started[n]) * 1000 for n in range(changes)]
    base = [(raw_seen[n] - started[n]) * 1000 for n in range(changes)]
    beyond = [(seen[n] - raw_seen[n]) * 1000 for n in range(changes)]
    return {"ours": ours, "raw": base, "beyond": beyond, "gc2_pauses_ms": gc_pauses}


async def run(ports: int, dumps: int, changes: int) -> dict[str, Any]:
    with running_sandbox(Path(tempfile.mkdtemp(prefix="aovs-bo-", dir="/tmp"))) as sandbox:
        add_ports(sandbox, ports)
        async with OVSDBClient(sandbox.ovsdb_connection, request_timeout=60) as client:
            dump = await measure_dumps(client, dumps, ports)
            floor_ms, reply_chars = json_loads_floor(sandbox)
            latency = await measure_latency(client, sandbox, changes)
    return {
        "ports": ports,
        "loop": "uvloop",
        f"initial_dump_{ports}_ms": round(dump["cpu"], 2),
        f"initial_dump_{ports}_wall_ms": round(dump["wall"], 2),
        "baseline_json_loads_ms": round(floor_ms, 2),
        "initial_reply_chars": reply_chars,
        "changes": changes,
        "event_latency_p50_ms": round(percentile(latency["ours"], 0.5), 3),
        "event_latency_p99_ms": round(percentile(latency["ours"], 0.99), 3),
        "raw_latency_p50_ms": round(percentile(latency["raw"], 0.5), 3),
        "raw_latency_p99_ms": round(percentile(latency["raw"], 0.99), 3),
        "beyond_raw_p50_ms": round(percentile(latency["beyond"], 0.5), 3),
        "beyond_raw_p99_ms": round(percentile(latency["beyond"], 0.99), 3),
        "beyond_raw_max_ms": round(max(latency["beyond"]), 3),
        "gc_gen2_pauses_during_latency_ms": [round(p, 2) for p in latency["gc2_pauses_ms"]],
        "targets": {f"initial_dump_{ports}_ms": "< 50 (client CPU)", "beyond_raw_p99_ms": "< 5"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--dumps", type=int, default=7)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    result = uvloop.run(run(args.ports, args.dumps, args.changes))
    if args.ports == 1000:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
