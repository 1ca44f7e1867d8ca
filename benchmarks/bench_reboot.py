"""Reboot benchmark: VM reboots under 1000 wired ports, an OVS restart, an agent restart.

Everything real: a private OVS (dummy datapath), RabbitMQ (a private vhost), the neutron-server
simulator, the agent in-process (uvloop). Figures:

- ``wire_1000_s``: 1000 ports plugged in one ovs-vsctl transaction -> every port wired;
- ``reboot_latency_p50_ms`` / ``_p99_ms``: one VM reboot (del-port, then add-port: a new
  Interface row, a new ofport) from the agent receiving the row with its new ofport to the
  bundle commit, over ``--reboots`` reboots one after the other, details cached;
  ``reboot_e2e_*``: from the add-port transaction to the commit (includes ovs-vswitchd
  assigning the ofport);
- ``ovs_restart_1000_s``: ``kill -9 ovs-vswitchd`` + start: from the OpenFlow reconnect to every
  bridge's flows replayed (no RPC), median of ``OVS_RESTARTS`` (all in ``ovs_restart_runs_s``);
  ``ovs_restart_wall_s`` from the start command to the replay's end (then checked: dump-flows
  shows every flow again);
- ``agent_restart_flowmods`` (must be 0) and ``agent_restart_s``; then
  ``ovs_restart_after_agent_restart_s``: the OVS restart again, under the restarted agent.
Baselines in the same run: ``ovs-ofctl --bundle add-flows`` of br-int's final dump into br-int
right after ovs-vswitchd restarts (``baseline_ofctl_ovs_restart_s``: the OVS-restart scenario's
practical limit), into a second, empty bridge (``baseline_ofctl_bundle_all_s``), and of one
port's reboot (its flows deleted by key and re-added with a new ofport:
``baseline_ofctl_port_reboot_ms``).

    python -m benchmarks.bench_reboot [--ports 1000] [--reboots 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aovs.agent.agent import Agent
from aovs.ovsdb import AddPort, DeletePort, OVSDBClient
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import (
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    SimulatedCloud,
)
from aovs.testing.simulator import NeutronServerSimulator

RESULTS = Path(__file__).parent / "results" / "reboot.json"
SG = "sg-bench"
OVS_RESTARTS = 3  # the figure is their median; every run is in ovs_restart_runs_s


def _topology(ports: int) -> SimulatedCloud:
    ssh = CloudRule(direction="ingress", protocol="tcp", port_range_min=22, port_range_max=22,
               remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    rules = (CloudRule(direction="egress"), ssh, CloudRule(direction="ingress", remote_group_id=SG))
    vlan = CloudNetwork(network_type="vlan", physical_network="physnet1", segmentation_id=101)
    return SimulatedCloud(
        networks={"net-vlan": vlan},
        security_groups={SG: CloudSecurityGroup(rules=rules)},
        ports=tuple(
            CloudPort.model_validate(
                {
                    "port_id": f"port-{i:05d}",
                    "network_id": "net-vlan",
                    "mac_address": f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
                    "fixed_ips": [{"ip_address": f"10.1.{i // 250}.{i % 250 + 2}"}],
                    "security_groups": [SG],
                }
            )
            for i in range(ports)
        ),
    )


def _plug_args(indexes: range | list[int]) -> list[str]:
    args: list[str] = []
    for i in indexes:
        args += ["--", "--may-exist", "add-port", "br-int", f"tap{i:05d}", "--", "set",
                 "Interface", f"tap{i:05d}", "type=dummy",
                 f"external_ids:iface-id=port-{i:05d}"]  # fmt: skip
    return args[1:]


async def _vsctl(sandbox: OVSSandbox, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ovs-vsctl", "--timeout=30", *args, env=sandbox.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"ovs-vsctl {args[:3]}: {err.decode().strip()}")


async def _until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def _ovs_restart(sandbox: OVSSandbox, agent: Agent, flows: list[str]) -> tuple[float, float]:
    """kill -9 ovs-vswitchd, start it; (wall from the start command, the agent's replay from
    its OpenFlow reconnect), both to every bridge replayed; br-int then checked flow by flow."""
    sandbox.kill("ovs-vswitchd")
    started = time.monotonic()
    restarts = agent.stats.ovs_restarts
    sandbox.start_vswitchd()
    await _until(lambda: agent.stats.ovs_restarts >= restarts + 2, 60, "both reconnected")
    # wait on the agent, not by polling dump-flows: a blocking ovs-ofctl every few ms would
    # stall the agent's loop and load ovs-vswitchd during the very replay timed
    await asyncio.gather(*(r.wait_idle() for r in agent.reconcilers.values()))
    wall = time.monotonic() - started
    if sorted(sandbox.dump_flows("br-int")) != flows:
        raise RuntimeError("after the OVS restart br-int's flows differ from before")
    assert agent.stats.last_replay_s is not None
    return wall, agent.stats.last_replay_s


def _baselines(sandbox: OVSSandbox, one_port_ofport: int) -> dict[str, float]:
    """ovs-ofctl --bundle of the same flows, in a bridge of their own."""
    dump = sandbox.dump_flows("br-int")
    lines = [re.sub(r"cookie=0x[0-9a-f]+, ", "", line) for line in dump]
    sandbox.vsctl("--may-exist", "add-br", "br-base", "--", "set", "Bridge", "br-base",
                  "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13")  # fmt: skip
    path = sandbox.directory / "all.flows"
    path.write_text("\n".join(lines) + "\n")
    replays = []  # the agent's OVS-restart scenario, by ovs-ofctl: the same flows, same bridge
    for _ in range(OVS_RESTARTS):
        sandbox.kill("ovs-vswitchd")
        sandbox.start_vswitchd()
        while subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "br-int", "table=99"],
                             env=sandbox.env, capture_output=True).returncode:  # fmt: skip
            time.sleep(0.005)
        started = time.monotonic()
        sandbox.ofctl("--bundle", "add-flows", "br-int", str(path))
        replays.append(time.monotonic() - started)
    runs = []
    for _ in range(3):
        sandbox.ofctl("del-flows", "br-base")
        started = time.monotonic()
        sandbox.ofctl("--bundle", "add-flows", "br-base", str(path))
        runs.append(time.monotonic() - started)
    owned = re.compile(rf"(in_port|reg5)=(0x{one_port_ofport:x}|{one_port_ofport})\b")
    mine = [ln for ln in lines if owned.search(ln)]
    strip_actions = [ln.split(" actions=")[0] for ln in mine]
    reboot = [f"delete_strict {ln}" for ln in strip_actions]
    reboot += [ln.replace(f"in_port={one_port_ofport}", "in_port=60000") for ln in mine]
    path = sandbox.directory / "port.flows"
    path.write_text("\n".join(reboot) + "\n")
    started = time.monotonic()
    sandbox.ofctl("--bundle", "add-flows", "br-base", str(path))
    return {
        "baseline_ofctl_ovs_restart_s": statistics.median(replays),
        "baseline_ofctl_bundle_all_s": statistics.median(runs),
        "baseline_ofctl_port_reboot_ms": (time.monotonic() - started) * 1e3,
        "baseline_port_flowmods": len(reboot),
    }


async def run(url: str, ports: int, reboots: int) -> dict[str, Any]:
    sandbox = OVSSandbox(Path(tempfile.mkdtemp(prefix="aovs-b-", dir="/tmp")))
    state = Path(tempfile.mkdtemp(prefix="state-", dir=sandbox.directory))  # removed with it
    results: dict[str, Any] = {"ports": ports, "reboots": reboots}
    try:
        sandbox.start(physical_bridges=["br-phys"])
        config = sandbox.agent_config(url, state, host="bench")
        sim = NeutronServerSimulator(_topology(ports), url)
        await sim.start()
        agent = Agent(config, canary_interval=0, unplug_grace=5.0)
        await agent.start()
        core = agent.core
        assert core is not None
        started = time.monotonic()
        await _vsctl(sandbox, *_plug_args(range(ports)))
        await _until(lambda: core.counts()["wired"] == ports, 300, "all wired")
        results["wire_1000_s" if ports == 1000 else "wire_s"] = time.monotonic() - started
        await agent.settled(300)
        results["flows_br_int"] = len(core.desired("br-int"))

        latencies, e2e = [], []
        # libvirt's two transactions (del-port, add-port), by a native OVSDB client: ovs-vsctl
        # re-reads the whole database per call (~1 s with 1000 ports here)
        hypervisor = OVSDBClient(sandbox.ovsdb_connection)
        await hypervisor.start()
        for n in range(reboots):
            i = (n * 7) % ports
            iface = f"port-{i:05d}"
            old = core.ports[iface].ofport
            await hypervisor.transact(DeletePort(f"tap{i:05d}", "br-int"))
            await agent.settled(60)
            count = agent.stats.commit_latencies_ms.count
            plugged = time.monotonic()
            await hypervisor.transact(
                AddPort("br-int", f"tap{i:05d}", type="dummy", external_ids={"iface-id": iface})
            )
            await _until(
                lambda c=count, p=iface, o=old: (  # type: ignore[misc]
                    agent.stats.commit_latencies_ms.count > c and core.ports[p].ofport != o
                ),
                60,
                "rewired",
            )
            latencies.append(agent.stats.commit_latencies_ms.last)
            e2e.append((time.monotonic() - plugged) * 1e3)
        await hypervisor.close()
        if latencies:
            results["reboot_latency_p50_ms"] = _percentile(latencies, 50)
            results["reboot_latency_p99_ms"] = _percentile(latencies, 99)
            results["reboot_e2e_p50_ms"] = _percentile(e2e, 50)
            results["reboot_e2e_p99_ms"] = _percentile(e2e, 99)
        await agent.settled(60)
        one = core.ports["port-00001"].ofport
        assert one is not None

        flows_before = sorted(sandbox.dump_flows("br-int"))
        calls_before = sum(sim.calls.values())
        replays, walls = [], []
        for _ in range(OVS_RESTARTS):
            wall, replay = await _ovs_restart(sandbox, agent, flows_before)
            walls.append(wall)
            replays.append(replay)
        results["ovs_restart_wall_s"] = statistics.median(walls)
        results["ovs_restart_runs_s"] = replays
        results["ovs_restart_1000_s" if ports == 1000 else "ovs_restart_s"] = statistics.median(
            replays
        )
        results["ovs_restart_rpc_calls"] = sum(sim.calls.values()) - calls_before

        await agent.stop()
        started = time.monotonic()
        again = Agent(config, canary_interval=0)
        await again.start()
        results["agent_restart_s"] = time.monotonic() - started
        results["agent_restart_flowmods"] = again.flowmods_sent
        # then OVS restarts under the restarted agent, which sent nothing: its FlowMod bytes
        # come from the background warm-up (FlowReconciler.warm_cache), not from the replay
        warmed = again.reconcilers["br-int"]
        await _until(lambda: len(warmed.cache) >= len(warmed.desired or ()), 60, "cache warm")
        _, replay = await _ovs_restart(sandbox, again, flows_before)
        results["ovs_restart_after_agent_restart_s"] = replay
        await again.stop()
        await sim.stop()
        results.update(_baselines(sandbox, one))
    finally:
        sandbox.remove()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--reboots", type=int, default=200)
    args = parser.parse_args()
    import uvloop

    vhost = f"aovs-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*",
                        ".*", ".*"], check=True, timeout=60)  # fmt: skip
        url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
        results = uvloop.run(run(url, args.ports, args.reboots))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, timeout=60)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
