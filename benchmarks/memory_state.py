"""Where the agent's memory goes after a cold boot, without OVS or RabbitMQ.

``python -m benchmarks.memory_state --ports 1000``: the suite's world (``SimulatedCloud`` as
``benchmarks.suite.world`` generates it: vlan + vxlan networks, 10 security groups, the
openvswitch firewall) fed to an ``AgentCore`` the way the agent's loop does (details and
security-group replies parsed from the simulator's answers, flushes in slices of
``FLOW_BUDGET`` FlowMods), each slice's delta applied to one ``FlowReconciler`` per bridge whose
bundle only reads every entry's bytes (what ``commit_bundle`` does before sending). The heap is
frozen and released as the agent's ``LongLivedHeap`` does it (after each slice, and once the
change is over). Then it prints the traced heap by file:line and the size of the big
containers. ``--storm --storms 3``: the reboot storm's peak and the RSS after each of three.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aovs.agent.core import AgentCore, Plan
from aovs.agent.heap import LongLivedHeap
from aovs.agent.state import InterfaceRow
from aovs.agent.tunnels import TunnelSettings, TunnelState
from aovs.dataplane.compose import PhysicalLink, Topology, TunnelLink
from aovs.firewall.openvswitch import OVSFirewall
from aovs.openflow import reconcile
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.rpc.server_replies import devices_details, security_group_info
from aovs.testing.cloud import SimulatedCloud
from aovs.testing.simulator import NeutronServerSimulator

FLOW_BUDGET = 20_000  # as aovs.agent.agent's
HOST = "bench-compute"
HEAP = LongLivedHeap()  # the process's, as the agent's: frozen and released as it does


class _Channel:
    """What a FlowReconciler asks of its channel when the switch is connected and empty."""

    connected = True
    connections = 1

    def subscribe(self, _callback: Callable[..., None]) -> Callable[[], None]:
        return lambda: None

    def __str__(self) -> str:
        return "memory-state"


async def _read_entries(_channel: object, entries: Sequence[Any], **_: Any) -> None:
    for entry in entries:
        entry.data  # noqa: B018 - encoded (and cached) as commit_bundle would send it


def _world(ports: int) -> tuple[SimulatedCloud, NeutronServerSimulator]:
    cloud = SimulatedCloud.generate(
        ports, network_types=("vlan", "vxlan"), security_groups=10, tunnels=2,
        physical_network="physnet1",
    )  # fmt: skip
    return cloud, NeutronServerSimulator(cloud, "rabbit://guest:guest@127.0.0.1:5672/none")


def _topology() -> Topology:
    return Topology(
        "br-int",
        {"physnet1": PhysicalLink("physnet1", "br-phys", 1, 1)},
        TunnelLink("br-tun", 2, 1, frozenset({"vxlan"})),
    )


async def build(
    ports: int, merge: bool = False
) -> tuple[AgentCore, dict[str, FlowReconciler], dict[str, float]]:
    """The agent's state after a cold boot of ``ports`` ports (one plug transaction); with
    ``merge``, the slices after the first go in one bundle (as the agent's ``BUNDLE_BUDGET``
    lets them when ovs-vswitchd falls behind)."""
    cloud, sim = _world(ports)
    settings = TunnelSettings(local_ip="192.0.2.250", tunnel_types=("vxlan",))
    core = AgentCore(_topology(), OVSFirewall(), tunnels=TunnelState(settings))
    reconcile.commit_bundle = _read_entries  # type: ignore[assignment,attr-defined]
    reconcilers = {
        bridge: FlowReconciler(_Channel(), stable_cookie(bridge))  # type: ignore[arg-type]
        for bridge in core.topology.bridges
    }
    for each in reconcilers.values():
        each._dumped_on = 1
    timings: dict[str, float] = {}
    cpu = time.process_time()
    now = 0.0
    core.flush(now)
    for bridge, each in reconcilers.items():  # the agent's first sync: no VM port yet
        await each.sync(core.desired(bridge))
    devices = [port.port_id for port in cloud.ports]
    for ofport, device in enumerate(devices, 10):
        core.interface_changed(InterfaceRow(f"uuid-{device}", f"tap{device[:11]}", device,
                                            ofport), now)  # fmt: skip
    await _apply(core.flush(now, flow_budget=FLOW_BUDGET), reconcilers)
    reply = {"devices": [sim.device_details(d, HOST) for d in devices], "failed_devices": []}
    core.details_received(devices_details(devices, reply).outcomes, now)
    info = security_group_info(sim.security_group_info(devices))
    core.security_groups_received(devices, info, now)
    await _flush_all(core, reconcilers, merge, HEAP, now)
    HEAP.settle(force=True, release=True)  # as the agent once its first sync is installed
    timings["cpu_s"] = time.process_time() - cpu
    return core, reconcilers, timings


async def _flush_all(
    core: AgentCore,
    reconcilers: dict[str, FlowReconciler],
    merge: bool,
    heap: LongLivedHeap,
    now: float,
) -> None:
    """Flush every dirty port in slices and apply them as the agent's loop and committer do
    (the heap frozen after each slice; with ``merge``, the slices after the first in one
    bundle, each slice let go once merged)."""
    queued = []
    while True:
        plan = core.flush(now, flow_budget=FLOW_BUDGET)
        heap.grew(plan.flow_changes)
        if core.has_dirty_ports:
            heap.settle()
        if merge:  # the switch busy with the first slice: the others pile up, go as one
            queued.append(plan)
        else:
            await _apply(plan, reconcilers)
        del plan
        if not core.has_dirty_ports:
            break
    if queued:
        await _apply(queued.pop(0), reconcilers)
        if queued:
            merged = queued[0] if len(queued) == 1 else Plan.merged(queued)
            del queued
            await _apply(merged, reconcilers)
            del merged
    heap.settle(release=True)


async def storm(core: AgentCore, reconcilers: dict[str, FlowReconciler], merge: bool) -> float:
    """Every VM port deleted and re-added with a new ofport in one OVSDB update (the suite's
    reboot storm), flushed and applied as the agent does; returns the CPU seconds."""
    cpu = time.process_time()
    now = 1.0
    rows = [(uuid, row) for uuid, row in _interfaces(core)]
    for uuid, row in rows:
        core.interface_deleted(uuid, now)
        again = InterfaceRow(f"{uuid}-again", row.name, row.iface_id, (row.ofport or 0) + len(rows))
        core.interface_changed(again, now)
    await _flush_all(core, reconcilers, merge, HEAP, now)
    return time.process_time() - cpu


def _interfaces(core: AgentCore) -> list[tuple[str, InterfaceRow]]:
    """The VM ports' Interface rows the core knows, by row uuid."""
    rows = [port.interface for port in core.ports.values()]
    return [(row.uuid, row) for row in rows if row is not None and row.ofport is not None]


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (as the suite does per scenario)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


async def _apply(plan: Any, reconcilers: dict[str, FlowReconciler]) -> None:
    for bridge, delta in plan.flows.items():
        await reconcilers[bridge].apply(delta.remove, delta.add)


def deep_size(root: object, seen: set[int]) -> int:
    """Bytes reachable from ``root`` not counted yet (``seen``: ids already counted)."""
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(_children(obj))
    return total


def _children(obj: object) -> Iterable[object]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set | frozenset):
        return obj
    if isinstance(obj, str | bytes | int | float | bool) or obj is None:
        return ()
    slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
    children = [getattr(obj, s) for s in slots if hasattr(obj, s)]
    if hasattr(obj, "__dict__"):
        children.append(vars(obj))
    return children


def containers(core: AgentCore, reconcilers: dict[str, FlowReconciler]) -> list[tuple[str, int]]:
    """Sizes of the big containers, each counted without what an earlier one reached."""
    seen: set[int] = set()
    sizes = []
    for bridge, ledger in core.ledgers.items():
        for name in ("_owners", "_keys", "_counts"):
            sizes.append((f"ledger[{bridge}].{name}", deep_size(getattr(ledger, name), seen)))
    for name in ("_filtered", "_local", "details", "ports", "rows", "sgs"):
        sizes.append((f"core.{name}", deep_size(getattr(core, name), seen)))
    for bridge, each in reconcilers.items():
        sizes.append((f"reconciler[{bridge}]._installed", deep_size(each._installed, seen)))
        sizes.append((f"reconciler[{bridge}]._pending", deep_size(each._pending, seen)))
        sizes.append((f"reconciler[{bridge}].cache", deep_size(each.cache, seen)))
    sizes.append(("firewall", deep_size(core.firewall, seen)))
    return sizes


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                print(line.strip())
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-trace", action="store_true", help="RSS and CPU only")
    parser.add_argument("--merge", action="store_true", help="slices after the first: one bundle")
    storm_help = "then renumber every port at once (the reboot storm): its peak"
    parser.add_argument("--storm", action="store_true", help=storm_help)
    parser.add_argument("--storms", type=int, default=1, help="how many storms (with --storm)")
    args = parser.parse_args()
    if not args.no_trace:
        tracemalloc.start(1)
    before = tracemalloc.take_snapshot() if not args.no_trace else None
    core, reconcilers, timings = asyncio.run(build(args.ports, args.merge))
    gc.collect()
    flows = {bridge: len(each.installed) for bridge, each in reconcilers.items()}
    print(f"ports {args.ports}: flows {flows}, build CPU {timings['cpu_s']:.2f} s")
    print(f"peak RSS {rss_mb():.1f} MB")
    if args.storm:
        for number in range(1, args.storms + 1):
            reset_peak()
            seconds = asyncio.run(storm(core, reconcilers, args.merge))
            gc.collect()
            print(f"storm {number}: CPU {seconds:.2f} s, peak RSS {rss_mb():.1f} MB "
                  f"(from the RSS before it), RSS after {current_rss_mb():.1f} MB")  # fmt: skip
    if before is not None:
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")
        total = sum(stat.size_diff for stat in stats)
        print(f"traced: {total / 2**20:.1f} MB held; top by file:line")
        for stat in stats[: args.top]:
            frame = stat.traceback[0]
            name = frame.filename.split("/src/")[-1].split("site-packages/")[-1]
            print(f"  {stat.size_diff / 2**20:7.2f} MB {stat.count_diff:8d} blocks  "
                  f"{name}:{frame.lineno}")  # fmt: skip
    print("containers (deep, each without what an earlier row reached):")
    for name, size in containers(core, reconcilers):
        if size > 100_000:
            print(f"  {size / 2**20:7.2f} MB  {name}")


if __name__ == "__main__":
    main()
