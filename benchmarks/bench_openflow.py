"""aovs's OpenFlow path vs ``ovs-ofctl --bundle add-flows``, same 30,000 neutron-like flows.

Run: ``python -m benchmarks.bench_openflow [--ports 1000] [--runs 3]``; writes
benchmarks/results/openflow.json. Each figure is the median of ``--runs``:
- ofctl_bundle_s: ``ovs-ofctl -O OpenFlow13 --bundle add-flows`` of the flows written with
  ``to_ofctl`` (the practical limit, measured in the same run on the same sandbox);
- aovs_install_s: a new reconciler (cold encode cache), empty bridge: dump + encode + bundle;
- aovs_replay_s: after ``del-flows`` (what an OVS restart looks like): dump + resend cached bytes;
- aovs_restart_noop_s: a new channel + reconciler against a bridge that has the flows (agent
  restart): handshake + dump + decode + diff, zero FlowMods; its baseline is
- ofctl_dump_s: ``ovs-ofctl -O OpenFlow13 dump-flows`` of the same bridge in the same run
  (process start, dump, and printing 30k flows as text);
- restart_noop_max_stall_ms: the longest the event loop went without running another task
  during the restart no-op (echo replies and other bridges wait at most this long).
Both installs are checked to produce the same ``dump-flows`` text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.flows import Flow
from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.sandbox import OVSSandbox, running_sandbox
from benchmarks.flowsets import neutron_like_flows

RESULTS = Path(__file__).parent / "results" / "openflow.json"
BRIDGE = "br-bench"


def add_bridge(sandbox: OVSSandbox, name: str) -> None:
    sandbox.vsctl(
        "--may-exist", "add-br", name, "--", "set", "Bridge", name,
        "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13",
    )  # fmt: skip


def ofctl_bundle(sandbox: OVSSandbox, flow_file: Path) -> float:
    sandbox.ofctl("del-flows", BRIDGE)
    start = time.perf_counter()
    sandbox.run("ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", BRIDGE, str(flow_file))
    return time.perf_counter() - start


async def new_reconciler(sandbox: OVSSandbox) -> FlowReconciler:
    channel = OpenFlowChannel.for_mgmt_socket(sandbox.mgmt_socket(BRIDGE))
    await channel.start(within=10)
    return FlowReconciler(channel, stable_cookie(BRIDGE), bundle_timeout=120)


async def close(reconciler: FlowReconciler) -> None:
    reconciler.close()
    await reconciler.channel.close()


async def aovs_install(sandbox: OVSSandbox, flows: list[Flow]) -> tuple[float, float]:
    """(install from scratch with a cold cache, replay from cache after del-flows)."""
    sandbox.ofctl("del-flows", BRIDGE)
    reconciler = await new_reconciler(sandbox)
    try:
        start = time.perf_counter()
        sent = await reconciler.sync(flows)
        install = time.perf_counter() - start
        assert sent == len(flows), sent
        sandbox.ofctl("del-flows", BRIDGE)
        start = time.perf_counter()
        await reconciler.refresh()
        sent = await reconciler.sync(flows)
        replay = time.perf_counter() - start
        assert sent == len(flows), sent
        return install, replay
    finally:
        await close(reconciler)


def ofctl_dump(sandbox: OVSSandbox) -> float:
    start = time.perf_counter()
    out = sandbox.ofctl("dump-flows", BRIDGE)
    elapsed = time.perf_counter() - start
    assert out.count("\n") > 1, out[:200]
    return elapsed


async def max_stall(stop: asyncio.Event, stalls: list[float]) -> None:
    """Tick as often as the loop lets us; record the longest gap between two ticks."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        stalls.append(now - last)
        last = now


async def aovs_restart_noop(sandbox: OVSSandbox, flows: list[Flow]) -> tuple[float, float]:
    """(seconds for a new channel + reconciler to find nothing to do, longest loop stall)."""
    stop, stalls = asyncio.Event(), [0.0]
    ticker = asyncio.create_task(max_stall(stop, stalls))
    start = time.perf_counter()
    reconciler = await new_reconciler(sandbox)
    try:
        sent = await reconciler.sync(flows)
        elapsed = time.perf_counter() - start
        assert sent == 0, sent
        return elapsed, max(stalls)
    finally:
        stop.set()
        await ticker
        await close(reconciler)


async def run(ports: int, runs: int) -> dict[str, Any]:
    flows = neutron_like_flows(ports)
    cookie = stable_cookie(BRIDGE)
    with running_sandbox(Path(tempfile.mkdtemp(prefix="aovs-bof-", dir="/tmp"))) as sandbox:
        add_bridge(sandbox, BRIDGE)
        flow_file = sandbox.directory / "flows.txt"
        flow_file.write_text("".join(to_ofctl(f, cookie) + "\n" for f in flows))

        ofctl_times, install_times, replay_times = [], [], []
        dump_times, noop_times, stall_times = [], [], []
        for _ in range(runs):
            ofctl_times.append(ofctl_bundle(sandbox, flow_file))
            ofctl_flows = sandbox.dump_flows(BRIDGE)
            install, replay = await aovs_install(sandbox, flows)
            install_times.append(install)
            replay_times.append(replay)
            dump_times.append(ofctl_dump(sandbox))
            noop, stall = await aovs_restart_noop(sandbox, flows)
            noop_times.append(noop)
            stall_times.append(stall)
            same = sandbox.dump_flows(BRIDGE) == ofctl_flows
            if not same:
                raise SystemExit("aovs and ovs-ofctl installed different flows")
        ofctl = statistics.median(ofctl_times)
        install = statistics.median(install_times)
        replay = statistics.median(replay_times)
        dump = statistics.median(dump_times)
        noop = statistics.median(noop_times)
        return {
            "flows": len(flows),
            "ports": ports,
            "runs": runs,
            "ofctl_bundle_s": round(ofctl, 4),
            "aovs_install_s": round(install, 4),
            "aovs_replay_s": round(replay, 4),
            "ofctl_dump_s": round(dump, 4),
            "aovs_restart_noop_s": round(noop, 4),
            "restart_noop_max_stall_ms": round(statistics.median(stall_times) * 1e3, 1),
            "install_vs_ofctl": round(install / ofctl, 3),
            "replay_vs_ofctl": round(replay / ofctl, 3),
            "restart_noop_vs_ofctl_dump": round(noop / dump, 3),
            "same_flows_as_ofctl": True,
            "samples": {
                "ofctl_bundle_s": [round(x, 4) for x in ofctl_times],
                "aovs_install_s": [round(x, 4) for x in install_times],
                "aovs_replay_s": [round(x, 4) for x in replay_times],
                "ofctl_dump_s": [round(x, 4) for x in dump_times],
                "aovs_restart_noop_s": [round(x, 4) for x in noop_times],
                "restart_noop_max_stall_ms": [round(x * 1e3, 1) for x in stall_times],
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000, help="30 flows per port")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = uvloop.run(run(args.ports, args.runs))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
