"""RPC benchmark: device details for 1000 ports, and fanout notification latency.

Runs against the simulator in its own process (``aovs simulate-server``, as a real server is
another process) on a private vhost it creates and deletes. Measures:

- get_devices_details for 1000 devices, end to end (publish, server, reply, JSON, pydantic),
  swept over batch size x concurrency; the baseline is neutron's own way: one call carrying
  all devices. ``details_1000_ms`` is the median with the defaults of NeutronServerApi.
- fanout notification latency (port_delete): publish by a separate connection -> typed event
  out of the NotificationConsumer, p50/p99.

    python -m benchmarks.bench_rpc [--ports 1000] [--runs 7] [--notifications 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

from aovs.rpc.amqp import RpcTransport
from aovs.rpc.notifications import PORT_DELETE_TOPIC, NotificationConsumer
from aovs.rpc.server_api import DEFAULT_DETAILS_BATCH, DEFAULT_DETAILS_CONCURRENCY, NeutronServerApi
from aovs.testing.cloud import SimulatedCloud

RESULTS = Path(__file__).parent / "results" / "rpc.json"
BATCHES = (25, 50, 100, 200, 250, 500, 1000)
CONCURRENCY = (1, 2, 4, 8)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def start_simulator(topology_path: Path, url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aovs.cli", "simulate-server", "--topology", str(topology_path),
         "--transport-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("simulate-server ready"):
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("simulator did not start")


async def time_details(api: NeutronServerApi, devices: list[str], runs: int) -> list[float]:
    await api.get_devices_details(devices)  # warm-up: caches, connection, JIT-free but still
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        details = await api.get_devices_details(devices)
        samples.append((time.perf_counter() - started) * 1000)
        if len(details.ports) != len(devices):
            raise RuntimeError(
                f"only {len(details.ports)} of {len(devices)} ports: {details.failed}"
            )
    return samples


async def fanout_latency(url: str, count: int) -> list[float]:
    async with RpcTransport(url) as sender, RpcTransport(url) as receiver:
        consumer = NotificationConsumer(receiver, "bench-host", topics=[PORT_DELETE_TOPIC])
        await consumer.start()
        sent: dict[str, float] = {}
        latencies: list[float] = []

        async def receive() -> None:
            async for event in consumer:
                latencies.append((time.perf_counter() - sent[event.port_id]) * 1000)  # type: ignore[union-attr]
                if len(latencies) == count:
                    return

        receiving = asyncio.create_task(receive())
        for index in range(count):
            port_id = f"port-{index}"
            sent[port_id] = time.perf_counter()
            await sender.fanout_cast(
                PORT_DELETE_TOPIC, "port_delete", {"port_id": port_id}, version="1.0"
            )
            await asyncio.sleep(0.002)  # latency, not throughput: one at a time
        async with asyncio.timeout(30):
            await receiving
        await consumer.stop()
        return latencies


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(url: str, topology: SimulatedCloud, runs: int, notifications: int) -> dict[str, Any]:
    devices = [port.port_id for port in topology.ports]
    sweep: list[dict[str, Any]] = []
    async with RpcTransport(url) as transport:
        for concurrency in CONCURRENCY:
            for batch in BATCHES:
                if concurrency > 1 and batch >= len(devices):
                    continue  # one batch: concurrency is moot
                api = NeutronServerApi(
                    transport, "bench-host", details_batch_size=batch,
                    details_concurrency=concurrency, rpc_response_timeout=30,
                )  # fmt: skip
                samples = await time_details(api, devices, runs)
                sweep.append(
                    {"batch": batch, "concurrency": concurrency,
                     "median_ms": round(statistics.median(samples), 1),
                     "min_ms": round(min(samples), 1)}
                )  # fmt: skip
                print(f"batch={batch:5d} concurrency={concurrency} "
                      f"median={statistics.median(samples):7.1f} ms", flush=True)  # fmt: skip
        default_api = NeutronServerApi(transport, "bench-host", rpc_response_timeout=30)
        default_samples = await time_details(default_api, devices, max(2 * runs, 10))
    latencies = await fanout_latency(url, notifications)
    baseline = next(r for r in sweep if r["batch"] >= len(devices) and r["concurrency"] == 1)
    best = min(sweep, key=lambda r: r["median_ms"])
    return {
        "ports": len(devices),
        "runs_per_point": runs,
        f"details_{len(devices)}_ms": round(statistics.median(default_samples), 1),
        "details_default_batch": DEFAULT_DETAILS_BATCH,
        "details_default_concurrency": DEFAULT_DETAILS_CONCURRENCY,
        "details_baseline_one_call_ms": baseline["median_ms"],
        "details_best": best,
        "details_sweep": sweep,
        "fanout_notifications": len(latencies),
        "fanout_latency_p50_ms": round(percentile(latencies, 0.50), 2),
        "fanout_latency_p99_ms": round(percentile(latencies, 0.99), 2),
        "fanout_latency_max_ms": round(max(latencies), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--notifications", type=int, default=400)
    args = parser.parse_args()

    vhost = f"aovs-bench-rpc-{uuid.uuid4().hex[:8]}"
    url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    topology = SimulatedCloud.generate(ports=args.ports)
    rabbitmqctl("add_vhost", vhost)
    simulator = None
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        with tempfile.TemporaryDirectory() as tmp:
            topology_path = Path(tmp) / "topology.json"
            topology_path.write_text(topology.to_json())
            simulator = start_simulator(topology_path, url)
            result = uvloop.run(run(url, topology, args.runs, args.notifications))
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)
        rabbitmqctl("delete_vhost", vhost)
    result["cpu_count"] = os.cpu_count()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "details_sweep"}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
