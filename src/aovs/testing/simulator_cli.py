"""``aovs simulate-server``: run the neutron-server simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from aovs.rpc.errors import RpcError
from aovs.testing.cloud import SimulatedCloud, SimulatedCloudError
from aovs.testing.simulator import NeutronServerSimulator

LOG = logging.getLogger(__name__)


def run_simulate_server(topology_path: Path, transport_url: str, server_host: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        topology = SimulatedCloud.load(topology_path)
    except SimulatedCloudError as exc:
        print(f"aovs simulate-server: {exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(_serve(topology, transport_url, server_host))
    except RpcError as exc:
        print(f"aovs simulate-server: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(topology: SimulatedCloud, transport_url: str, server_host: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with NeutronServerSimulator(topology, transport_url, server_host=server_host) as sim:
        # one line a supervisor (or a benchmark) can wait for
        print(
            f"simulate-server ready: {len(sim.ports)} ports, {len(sim.networks)} networks, "
            f"{len(sim.security_groups)} security groups",
            flush=True,
        )
        await stop.wait()
