"""The agent on a real OVS and RabbitMQ: plug, wire, isolate, reboot."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_world import (
    FLAT_NET,
    SEGMENTATION_ID,
    VLAN_NET,
    agent_config,
    flows_by_port_name,
    in_ports,
    ofport,
    ofports,
    plug,
    port_id,
    port_tag,
    running_agent,
    simulator,
    tap,
    topology,
    unplug,
    wait_until,
)

from aovs.agent.state import PortPhase
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox(fresh_sandbox: OVSSandbox) -> OVSSandbox:
    fresh_sandbox.add_physical_bridge("br-phys")
    return fresh_sandbox


async def test_ports_are_wired_reported_and_rebooted(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world = topology(20)
    async with (
        simulator(rabbit_vhost, world) as sim,
        running_agent(agent_config(sandbox, rabbit_vhost, state_path), unplug_grace=5.0) as agent,
    ):
        plug(sandbox, range(20))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == 20, what="20 ports wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == 20, what="20 reported up")
        vlan_tag = await port_tag(sandbox, tap(1))
        flat_tag = await port_tag(sandbox, tap(0))
        assert vlan_tag != flat_tag
        other = sandbox.vsctl("get", "Port", tap(1), "other_config")
        assert f"net_uuid={VLAN_NET}" in other.replace('"', "")
        phys = "\n".join(sandbox.dump_flows("br-phys"))
        assert f"dl_vlan={vlan_tag} actions=set_field:{4096 + SEGMENTATION_ID}->vlan_vid" in phys
        assert f"dl_vlan={flat_tag} actions=pop_vlan" in phys
        assert FLAT_NET in core.networks

        # one VM reboot: del-port + add-port, a new ofport
        await agent.settled()
        old = ofport(sandbox, tap(3))
        bundles = agent.stats.bundles
        unplug(sandbox, [3])
        plug(sandbox, [3])
        new = ofport(sandbox, tap(3))
        assert new != old
        await wait_until(lambda: core.ports[port_id(3)].ofport == new, what="rewired")
        await agent.settled()
        ports_seen = in_ports(sandbox)
        assert new in ports_seen and old not in ports_seen
        assert agent.stats.bundles - bundles == 1  # old out, new in: one bundle
        assert core.ports[port_id(3)].phase is PortPhase.WIRED
        await wait_until(lambda: sim.device_up_reports.count(port_id(3)) == 2, what="re-up")
        assert port_id(3) in sim.device_down_reports


async def test_1000_ports_in_one_transaction_then_all_1000_vms_reboot_at_once(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    count = 1000
    world = topology(count)
    async with (
        simulator(rabbit_vhost, world) as sim,
        running_agent(agent_config(sandbox, rabbit_vhost, state_path), canary_interval=0) as agent,
    ):
        plug(sandbox, range(count))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == count, within=60, what="1000 wired")
        await wait_until(lambda: len(set(sim.device_up_reports)) == count, within=60,
                         what="1000 reported up")  # fmt: skip
        await agent.settled(60)
        old = ofports(sandbox)
        before = flows_by_port_name(sandbox, {p: n for n, p in old.items()})
        assert len(before) == len(core.desired("br-int"))

        # every VM reboots at once: libvirt's del-port for all, then add-port for all
        details_calls = sim.calls["get_devices_details_list_and_failed_devices"]
        unplug(sandbox, range(count))
        plug(sandbox, range(count))
        new = ofports(sandbox)
        assert all(new[tap(i)] != old[tap(i)] for i in range(count))
        await wait_until(
            lambda: all(core.ports[port_id(i)].ofport == new[tap(i)] for i in range(count)),
            within=120,
            what="1000 rewired",
        )
        await agent.settled(120)

        after = flows_by_port_name(sandbox, {p: n for n, p in new.items()})
        assert after == before  # each port's flows on its new ofport, none on an old one
        assert not {old[tap(i)] for i in range(count)} & in_ports(sandbox)
        assert core.counts()["wired"] == count and len(core.ports) == count
        # the reboots needed no details (cached); only background refreshes may follow
        assert sim.calls["get_devices_details_list_and_failed_devices"] - details_calls <= 2
        # twice each (more when a report timed out on a loaded machine: the reporter
        # re-asserts what is in doubt), and UP last
        await wait_until(
            lambda: all(sim.device_up_reports.count(port_id(i)) >= 2 for i in range(count)),
            within=60,
            what="1000 reported up again",
        )
        await agent.reporter.drain()
        last: dict[str, bool] = {}
        for report in sim.device_list_reports:
            last.update({d: False for d in report.devices_down})
            last.update({d: True for d in report.devices_up})
        assert all(last[port_id(i)] for i in range(count))
        assert set(sim.device_down_reports) >= {port_id(i) for i in range(count)}


async def test_notifications_admin_down_and_port_delete(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world = topology(4)
    async with (
        simulator(rabbit_vhost, world) as sim,
        running_agent(agent_config(sandbox, rabbit_vhost, state_path), canary_interval=0) as agent,
    ):
        plug(sandbox, range(4))
        core = agent.core
        assert core is not None
        await wait_until(lambda: core.counts()["wired"] == 4, what="wired")
        down = sim.ports[port_id(1)].model_copy(update={"admin_state_up": False})
        sim.add_port(down)
        await sim.notify_port_update(port_id(1))
        await wait_until(lambda: core.ports[port_id(1)].phase is PortPhase.DEAD, what="dead")
        await agent.settled()
        await wait_until(lambda: sandbox.vsctl("get", "Port", tap(1), "tag").strip() == "4095",
                         what="the dead VLAN's tag (written after the drop flow)")  # fmt: skip
        drop = f"priority=2,in_port={ofport(sandbox, tap(1))} actions=drop"
        assert any(drop in flow for flow in sandbox.dump_flows("br-int"))
        await wait_until(lambda: port_id(1) in sim.device_down_reports, what="reported down")
        sim.remove_port(port_id(2))
        await sim.notify_port_delete(port_id(2))
        await wait_until(lambda: core.ports[port_id(2)].phase is PortPhase.DEAD, what="deleted")
