"""Every kind of reboot, on a real OVS and RabbitMQ: VM, ovs-vswitchd, the agent, the host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agent_world import (
    SEGMENTATION_ID,
    agent_config,
    ip,
    mac,
    ofport,
    plug,
    running_agent,
    simulator,
    tap,
    topology,
    wait_until,
)

from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration

PORTS = 200
UPLINK = "br-phys-up"


@pytest.fixture
def sandbox(fresh_sandbox: OVSSandbox) -> OVSSandbox:
    fresh_sandbox.add_physical_bridge("br-phys")
    return fresh_sandbox


def send_udp(sandbox: OVSSandbox, index: int, dst_mac: str = "fa:16:3e:ff:ff:01") -> None:
    """A packet from VM ``index`` (to an unknown unicast MAC: flooded on its network)."""
    packet = (
        f"in_port({ofport(sandbox, tap(index))}),eth(src={mac(index)},dst={dst_mac}),"
        f"eth_type(0x0800),ipv4(src={ip(index)},dst=10.9.9.9,proto=17,tos=0,ttl=64,frag=no),"
        "udp(src=1000,dst=2000)"
    )
    sandbox.appctl("netdev-dummy/receive", tap(index), packet)


def tx_packets(sandbox: OVSSandbox, bridge: str, port: str) -> int:
    out = sandbox.ofctl("dump-ports", bridge, port)
    match = re.search(r"tx pkts=(\d+)", out)
    assert match, out
    return int(match.group(1))


def translation_packets(sandbox: OVSSandbox) -> int:
    """n_packets of br-phys's local -> segmentation VLAN flows."""
    total = 0
    for line in sandbox.ofctl("dump-flows", "br-phys", "table=0").splitlines():
        if "priority=4" in line:
            total += int(re.search(r"n_packets=(\d+)", line).group(1))  # type: ignore[union-attr]
    return total


def trace(sandbox: OVSSandbox, index: int) -> str:
    flow = (
        f"in_port={ofport(sandbox, tap(index))},udp,dl_src={mac(index)},dl_dst=fa:16:3e:ff:ff:01,"
        f"nw_src={ip(index)},nw_dst=10.9.9.9,udp_src=1,udp_dst=2"
    )
    return sandbox.appctl("ofproto/trace", "br-int", flow, "--ct-next", "trk,new")


async def test_dataplane_vlan_flat_isolation_and_ovs_restart(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world = topology(PORTS)
    async with (
        simulator(rabbit_vhost, world) as sim,
        running_agent(agent_config(sandbox, rabbit_vhost, state_path), canary_interval=0) as agent,
    ):
        plug(sandbox, range(PORTS))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == PORTS, what="all wired")
        await agent.settled()

        vlan_trace, flat_trace = trace(sandbox, 1), trace(sandbox, 10)
        vlan_phys = vlan_trace.split('bridge("br-phys")')[1]
        flat_phys = flat_trace.split('bridge("br-phys")')[1]
        assert f"set_field:{4096 + SEGMENTATION_ID}->vlan_vid" in vlan_phys
        assert "pop_vlan" in flat_phys and "set_field" not in flat_phys.split("output")[0]
        assert f"push_vlan(vid={SEGMENTATION_ID}" in vlan_trace.split("Datapath actions:")[-1]

        before_uplink = tx_packets(sandbox, "br-phys", UPLINK)
        before_flat_vm = tx_packets(sandbox, "br-int", tap(20))
        send_udp(sandbox, 1, dst_mac=mac(20))  # vlan VM -> flat VM's MAC: must not arrive
        await wait_until(lambda: tx_packets(sandbox, "br-phys", UPLINK) > before_uplink,
                         what="packet out of the uplink")  # fmt: skip
        assert tx_packets(sandbox, "br-int", tap(20)) == before_flat_vm
        assert translation_packets(sandbox) >= 1

        # kill -9 ovs-vswitchd, start it again: flows back from state, no RPC
        bridges = ("br-int", "br-phys")  # each replays in its own bundle: wait for both
        flows_before = [sorted(sandbox.dump_flows(bridge)) for bridge in bridges]
        asked = ("get_devices_details_list_and_failed_devices", "security_group_info_for_devices")
        calls_before = sum(sim.calls[m] for m in asked)
        sandbox.kill("ovs-vswitchd")
        sandbox.start_vswitchd()
        await wait_until(lambda: [sorted(sandbox.dump_flows(b)) for b in bridges] == flows_before,
                         within=20, what="flows replayed")  # fmt: skip
        assert sum(sim.calls[m] for m in asked) == calls_before  # replayed from state
        assert agent.stats.ovs_restarts >= 1
        send_udp(sandbox, 1)
        await wait_until(lambda: translation_packets(sandbox) >= 1, what="forwarding again")


async def test_agent_restart_sends_no_flowmods_and_counters_keep_growing(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world = topology(PORTS)
    config = agent_config(sandbox, rabbit_vhost, state_path)
    async with simulator(rabbit_vhost, world) as sim:
        async with running_agent(config, canary_interval=0) as agent:
            plug(sandbox, range(PORTS))
            core = agent.core
            assert core is not None
            await wait_until(lambda: core.counts()["wired"] == PORTS, what="all wired")
            await agent.settled()
        send_udp(sandbox, 1)
        await wait_until(lambda: translation_packets(sandbox) >= 1, what="first packet")
        counted = translation_packets(sandbox)
        reports_before = len(sim.device_up_reports)
        async with running_agent(config, canary_interval=0) as again:
            await wait_until(lambda: len(sim.device_up_reports) >= reports_before + PORTS,
                             what="re-reported up after restart")  # fmt: skip
            await again.settled()
            assert again.flowmods_sent == 0
            send_udp(sandbox, 1)
            await wait_until(lambda: translation_packets(sandbox) > counted, what="counters grow")


async def test_host_reboot_restores_from_snapshot_without_the_server(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world = topology(PORTS)
    config = agent_config(sandbox, rabbit_vhost, state_path)
    async with (
        simulator(rabbit_vhost, world),
        running_agent(config, canary_interval=0, snapshot_delay=0.05) as agent,
    ):
        plug(sandbox, range(PORTS))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == PORTS, what="all wired")
        await agent.settled()
        flows_before = sorted(sandbox.dump_flows("br-int"))
        phys_before = sorted(sandbox.dump_flows("br-phys"))
    assert (state_path / "snapshot.json").exists()
    # the host goes down: agent (above), OVS; neutron-server is not back yet
    sandbox.kill("ovs-vswitchd")
    sandbox.kill("ovsdb-server")
    sandbox.start_ovsdb()
    sandbox.vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true")
    sandbox.start_vswitchd()
    async with running_agent(config, canary_interval=0) as agent:
        assert sorted(sandbox.dump_flows("br-int")) == flows_before
        assert sorted(sandbox.dump_flows("br-phys")) == phys_before
        assert "flow-restore-wait" not in sandbox.vsctl("get", "Open_vSwitch", ".", "other_config")
        async with simulator(rabbit_vhost, world) as sim:
            await wait_until(lambda: len(set(sim.device_up_reports)) == PORTS, within=30,
                             what="reconciled with the server and reported up")  # fmt: skip
            assert sorted(sandbox.dump_flows("br-int")) == flows_before
