"""``aovs demo``: the main job end to end, on a private OVS and a private RabbitMQ vhost.

A neutron-server simulator serves N ports (a VLAN network and a flat one, one security group);
the agent runs in-process. The demo plugs every VM port in ONE ovs-vsctl transaction, reboots
one VM, then all of them at once, kills ovs-vswitchd and starts it again, restarts the agent,
and prints how long each took and whether ``ofproto/trace`` gives the expected verdicts.
Everything it creates (OVS directory, vhost) is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aovs.agent.agent import Agent
from aovs.config import AgentConfig, ConfigError, IniFiles, read_config
from aovs.sandbox import OVSSandbox, SandboxError
from aovs.testing.cloud import (
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    SimulatedCloud,
)
from aovs.testing.simulator import NeutronServerSimulator

SEGMENTATION_ID = 101
SG = "sg-demo"
FLAT_EVERY = 10  # every 10th VM is on the flat network


@dataclass
class Step:
    what: str
    seconds: float
    verdict: str


class DemoError(Exception):
    """A step did not reach its expected state; the message says which."""


def _topology(ports: int) -> SimulatedCloud:
    ssh = CloudRule(direction="ingress", protocol="tcp", port_range_min=22, port_range_max=22,
               remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    return SimulatedCloud(
        networks={
            "net-vlan": CloudNetwork(
                network_type="vlan", physical_network="physnet1", segmentation_id=SEGMENTATION_ID
            ),
            "net-flat": CloudNetwork(network_type="flat", physical_network="physnet1"),
        },
        security_groups={SG: CloudSecurityGroup(rules=(CloudRule(direction="egress"), ssh))},
        ports=tuple(
            CloudPort.model_validate(
                {
                    "port_id": _port(i),
                    "mac_address": _mac(i),
                    "security_groups": [SG],
                    "network_id": "net-flat" if i % FLAT_EVERY == 0 else "net-vlan",
                    "fixed_ips": [{"ip_address": f"10.1.{i // 250}.{i % 250 + 2}"}],
                }
            )
            for i in range(ports)
        ),
    )


def _port(i: int) -> str:
    return f"port-{i:05d}"


def _tap(i: int) -> str:
    return f"tap{i:05d}"


def _mac(i: int) -> str:
    return f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}"


def _plug(sandbox: OVSSandbox, indexes: range) -> None:
    args: list[str] = []
    for i in indexes:
        args += ["--", "--may-exist", "add-port", "br-int", _tap(i), "--", "set", "Interface",
                 _tap(i), "type=dummy", f"external_ids:iface-id={_port(i)}",
                 f"external_ids:attached-mac={_mac(i)}"]  # fmt: skip
    sandbox.vsctl(*args[1:], timeout=120)


def _unplug(sandbox: OVSSandbox, indexes: range) -> None:
    args: list[str] = []
    for i in indexes:
        args += ["--", "--if-exists", "del-port", "br-int", _tap(i)]
    sandbox.vsctl(*args[1:], timeout=120)


async def _until(predicate: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise DemoError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def _trace_verdict(sandbox: OVSSandbox, index: int, dst_mac: str) -> str:
    ofport = sandbox.vsctl("get", "Interface", _tap(index), "ofport").strip()
    flow = (f"in_port={ofport},udp,dl_src={_mac(index)},dl_dst={dst_mac},"
            f"nw_src=10.1.0.{index % 250 + 2},nw_dst=10.9.9.9,udp_src=1,udp_dst=2")  # fmt: skip
    return sandbox.appctl("ofproto/trace", "br-int", flow, "--ct-next", "trk,new")


def _check_traces(sandbox: OVSSandbox) -> str:
    vlan = _trace_verdict(sandbox, 1, "fa:16:3e:ff:ff:01")
    flat = _trace_verdict(sandbox, FLAT_EVERY, "fa:16:3e:ff:ff:01")
    vlan_phys = vlan.split('bridge("br-phys")')[-1]
    flat_phys = flat.split('bridge("br-phys")')[-1]
    verdicts = []
    ok_vlan = f"set_field:{4096 + SEGMENTATION_ID}->vlan_vid" in vlan_phys
    verdicts.append(f"vlan->uplink tagged {SEGMENTATION_ID}: {'ok' if ok_vlan else 'WRONG'}")
    ok_flat = "pop_vlan" in flat_phys
    verdicts.append(f"flat->uplink untagged: {'ok' if ok_flat else 'WRONG'}")
    cross = _trace_verdict(sandbox, 1, _mac(FLAT_EVERY))
    flat_port = sandbox.vsctl("get", "Interface", _tap(FLAT_EVERY), "ofport").strip()
    leaked = re.search(rf"output:{flat_port}\b", cross) is not None
    verdicts.append(f"vlan VM cannot reach flat VM: {'WRONG' if leaked else 'ok'}")
    if not (ok_vlan and ok_flat and not leaked):
        raise DemoError("ofproto/trace: " + "; ".join(verdicts))
    return "; ".join(verdicts)


SAMPLES = Path(__file__).resolve().parents[2] / "config"


def _demo_config(sandbox: OVSSandbox, url: str, state: Path) -> AgentConfig:
    """The shipped samples as an operator passes them (``--config-file neutron.conf
    --config-file openvswitch_agent.ini``), then one more file with the sandbox's values."""
    local = sandbox.directory / "demo.conf"
    local.write_text(
        f"[DEFAULT]\nhost = demo-compute\ntransport_url = {url}\n"
        f"[ovs]\novsdb_connection = {sandbox.ovsdb_connection}\ndatapath_type = dummy\n"
        f"[agent]\nstate_path = {state}\nreport_interval = 0\n"
    )
    files = IniFiles.of(SAMPLES / "neutron.conf", SAMPLES / "openvswitch_agent.ini", local)
    loaded = read_config(files)
    if loaded.ignored_line:
        raise DemoError(f"the samples name options aovs ignores: {loaded.ignored_line}")
    return loaded.config


async def _demo(sandbox: OVSSandbox, url: str, state: Path, ports: int) -> list[Step]:
    steps: list[Step] = []
    config = _demo_config(sandbox, url, state)
    sim = NeutronServerSimulator(_topology(ports), url)
    await sim.start()
    agent = Agent(config, canary_interval=0, unplug_grace=5.0)
    try:
        await agent.start()
        core = agent.core
        assert core is not None
        started = time.monotonic()
        _plug(sandbox, range(ports))
        await _until(lambda: core.counts()["wired"] == ports, 120, "every port wired")
        await _until(lambda: len(set(sim.device_up_reports)) == ports, 120, "ports reported up")
        await agent.settled(60)
        flows = len(core.desired("br-int"))
        steps.append(
            Step(
                f"plug {ports} VMs (one transaction)",
                time.monotonic() - started,
                f"{ports} wired + reported up, {flows} flows on br-int",
            )
        )
        steps.append(Step("ofproto/trace verdicts", 0.0, _check_traces(sandbox)))

        old = core.ports[_port(1)].ofport
        count = agent.stats.commit_latencies_ms.count
        _unplug(sandbox, range(1, 2))
        _plug(sandbox, range(1, 2))
        await _until(lambda: agent.stats.commit_latencies_ms.count > count
                     and core.ports[_port(1)].ofport != old, 30, "VM 1 rewired")  # fmt: skip
        latency = agent.stats.commit_latencies_ms.last / 1e3
        steps.append(
            Step(
                "reboot 1 VM (new ofport)",
                latency,
                f"ofport {old}->{core.ports[_port(1)].ofport}, one bundle, no RPC",
            )
        )
        await agent.settled(60)

        before = {i: core.ports[_port(i)].ofport for i in range(ports)}
        started = time.monotonic()
        _unplug(sandbox, range(ports))
        _plug(sandbox, range(ports))
        await _until(lambda: all(core.ports[_port(i)].ofport != before[i] for i in range(ports))
                     and not core.has_dirty_ports, 120, "every VM rewired")  # fmt: skip
        await agent.settled(120)
        steps.append(
            Step(
                f"reboot {ports} VMs at once",
                time.monotonic() - started,
                f"{core.counts()['wired']} wired; " + _check_traces(sandbox),
            )
        )

        expected = sorted(sandbox.dump_flows("br-int"))
        # what an OVS restart must not need: port details or security groups from the server
        # (device up/down reports and heartbeats of earlier steps may still be going out)
        asked = ("get_devices_details_list_and_failed_devices", "security_group_info_for_devices")
        calls = sum(sim.calls[name] for name in asked)
        sandbox.kill("ovs-vswitchd")
        started = time.monotonic()
        sandbox.start_vswitchd()
        await _until(lambda: sorted(sandbox.dump_flows("br-int")) == expected, 60, "replay")
        steps.append(
            Step(
                "kill -9 ovs-vswitchd, start it",
                time.monotonic() - started,
                f"all flows back, details/SG RPCs: {sum(sim.calls[n] for n in asked) - calls}",
            )
        )
        await agent.settled(60)
        await agent.stop()

        started = time.monotonic()
        agent = Agent(config, canary_interval=0)
        await agent.start()
        steps.append(
            Step(
                "restart the agent",
                time.monotonic() - started,
                f"FlowMods sent: {agent.flowmods_sent}; " + _check_traces(sandbox),
            )
        )
    finally:
        await agent.stop()
        await sim.stop()
    return steps


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def run_demo(ports: int = 200, keep: bool = False) -> int:
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    directory = Path(tempfile.mkdtemp(prefix="aovs-demo-", dir="/tmp"))
    state = directory / "state"
    sandbox = OVSSandbox(directory)
    vhost = f"aovs-demo-{uuid.uuid4().hex[:8]}"
    url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    total = time.monotonic()
    try:
        sandbox.start(physical_bridges=["br-phys"])
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        steps = uvloop.run(_demo(sandbox, url, state, ports))
    except (DemoError, ConfigError, SandboxError, subprocess.SubprocessError, OSError) as exc:
        print(f"aovs demo: FAILED: {exc}")
        return 1
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                       timeout=60, check=False)  # fmt: skip
        if keep:
            sandbox.stop()
            print(f"kept {directory}")
        else:
            sandbox.remove()
            shutil.rmtree(directory, ignore_errors=True)
    width = max(len(step.what) for step in steps)
    print(f"\n{'step'.ljust(width)}  {'time':>9}  result")
    for step in steps:
        shown = f"{step.seconds * 1e3:7.1f}ms" if step.seconds < 1 else f"{step.seconds:8.2f}s"
        print(f"{step.what.ljust(width)}  {shown:>9}  {step.verdict}")
    print(f"\ndemo finished in {time.monotonic() - total:.1f} s")
    return 0
