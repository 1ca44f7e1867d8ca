"""QoS rate limits with OpenFlow meters on a real ovs-vswitchd (dummy datapath).

The agent (``[agent] extensions = qos``) against the simulator: a policy with an ingress
bandwidth limit and egress and ingress packet rate limits puts one meter per limit on br-int
(``dump-meters``: the rates and bursts), neutron's flows in tables 58 and 59 and a table-60
divert for the port, and ``ofproto/trace`` shows the meters on the port's path both ways; a rule
change modifies the meters in place (no FlowMod); the policy detached and the port deleted
leave no meter. And the meter reconciler itself: a meter the switch refuses holds back only the
flows that name it, and a second reconciler over the same switch sends nothing.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from agent_world import (
    agent_config,
    mac,
    ofport,
    plug,
    port_id,
    running_agent,
    simulator,
    tap,
    topology,
    unplug,
    wait_until,
)

from aovs.extensions.qos import SLOT_EGRESS_PPS, SLOT_INGRESS_KBPS, SLOT_INGRESS_PPS
from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.flows import ApplyMeter, Flow, GotoTable, Match, Meter, Output
from aovs.openflow.meters import MeterReconciler
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import CloudQosRule

pytestmark = pytest.mark.integration

RULES = (
    CloudQosRule(type="bandwidth_limit", direction="ingress", max_kbps=3000, max_burst_kbps=2000),
    CloudQosRule(type="packet_rate_limit", direction="egress", max_kpps=2, max_burst_kpps=1),
    CloudQosRule(type="packet_rate_limit", direction="ingress", max_kpps=5),
)
METER_LINE = re.compile(r"meter=(\d+) (\w+)(?: burst)?(?: stats)? bands=\s*type=drop rate=(\d+)"
                        r"(?: burst_size=(\d+))?")  # fmt: skip


@pytest.fixture
def sandbox(fresh_sandbox: OVSSandbox) -> OVSSandbox:
    fresh_sandbox.add_physical_bridge("br-phys")
    return fresh_sandbox


def dump_meters(sandbox: OVSSandbox, bridge: str = "br-int") -> dict[int, tuple[str, int, int]]:
    """``ovs-ofctl -O OpenFlow13 dump-meters``: id -> (unit, rate, burst)."""
    out = sandbox.ofctl("-O", "OpenFlow13", "dump-meters", bridge)
    return {int(m[1]): (m[2], int(m[3]), int(m[4] or 0)) for m in METER_LINE.finditer(out)}


def table_flows(sandbox: OVSSandbox, table: int) -> list[str]:
    return [f for f in sandbox.dump_flows("br-int") if f"table={table}," in f]


def trace(sandbox: OVSSandbox, packet: str) -> str:
    return sandbox.appctl("ofproto/trace", "br-int", packet, "--ct-next", "trk,new")


async def test_meters_follow_the_policy_on_the_ports_path(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    world, policy = topology(3).with_qos_policy(RULES, ports=2)  # port 0 flat, 1-2 vlan
    config = agent_config(sandbox, rabbit_vhost, state_path, extensions=["qos"])
    async with simulator(rabbit_vhost, world) as sim:
        async with running_agent(config, unplug_grace=0.5) as agent:
            plug(sandbox, range(3))
            core = agent.core
            meters = agent.meters
            assert core is not None and meters is not None
            await wait_until(lambda: core.counts()["wired"] == 3, what="3 ports wired")
            await wait_until(lambda: len(dump_meters(sandbox)) == 6, what="6 meters")
            await agent.settled()
            n0, n1, n2 = (ofport(sandbox, tap(i)) for i in range(3))
            want = {
                n * 4 + SLOT_EGRESS_PPS: ("pktps", 2000, 1000) for n in (n0, n1)
            } | {
                n * 4 + SLOT_INGRESS_PPS: ("pktps", 5000, 0) for n in (n0, n1)
            } | {
                n * 4 + SLOT_INGRESS_KBPS: ("kbps", 3000, 2000) for n in (n0, n1)
            }  # fmt: skip
            assert dump_meters(sandbox) == want
            assert not core.extension_problems
            slots = (SLOT_EGRESS_PPS, SLOT_INGRESS_PPS, SLOT_INGRESS_KBPS)
            m_egress, m_in_pps, m_in_kbps = (n1 * 4 + slot for slot in slots)
            t58 = "\n".join(table_flows(sandbox, 58))
            t59 = "\n".join(table_flows(sandbox, 59))
            assert re.search(rf"priority=100,in_port={n1} actions=meter:{m_egress},goto_table:59",
                             t58), t58  # fmt: skip
            assert f"dl_dst={mac(1)} actions=meter:{m_in_pps},goto_table:59" in t58, t58
            assert f"dl_dst={mac(1)} actions=meter:{m_in_kbps},goto_table:60" in t59, t59
            assert f"in_port={n2} " not in t58  # no policy, no meter
            assert len(table_flows(sandbox, 60)) >= 4  # two diverts per metered port

            # what port 1 sends goes through its egress meter, then on as before
            packet = (f"in_port={n1},dl_src={mac(1)},dl_dst={mac(2)},udp,nw_src=10.1.0.3,"
                      "nw_dst=10.1.0.4,nw_ttl=64,udp_dst=53")  # fmt: skip
            out = trace(sandbox, packet)
            assert f"meter:{m_egress}" in out, out
            assert re.search(r"Datapath actions: meter\(\d+\)", out), out
            # what reaches port 1 from the physical network: both ingress meters
            phys = ofport(sandbox, "int-br-phys")
            packet = (f"in_port={phys},dl_vlan=101,dl_src=fa:16:3e:99:99:99,dl_dst={mac(1)},"
                      "udp,nw_src=10.1.0.99,nw_dst=10.1.0.3,nw_ttl=64,udp_dst=53")  # fmt: skip
            out = trace(sandbox, packet)
            assert f"meter:{m_in_pps}" in out and f"meter:{m_in_kbps}" in out, out
            assert re.search(r"Datapath actions: .*meter\(\d+\),meter\(\d+\)", out), out

            # a rule changed: the meters modified in place, not one FlowMod
            flowmods = agent.flowmods_sent
            sent = meters.meter_mods_sent
            changed = (RULES[0].model_copy(update={"max_kbps": 4000}), *RULES[1:])
            await sim.update_qos_policy(policy, changed)
            await wait_until(lambda: dump_meters(sandbox)[m_in_kbps] == ("kbps", 4000, 2000),
                             what="meter modified")  # fmt: skip
            await agent.settled()
            assert agent.flowmods_sent == flowmods
            assert meters.meter_mods_sent - sent == 2  # port 0's and port 1's
            print(f"\nrule change: {meters.meter_mods_sent - sent} meter mods, 0 FlowMods")

            # ovs-vswitchd restarted (empty tables, no meters): meters before the replay
            before = dump_meters(sandbox)
            sandbox.kill("ovs-vswitchd")
            sandbox.start_vswitchd()
            await wait_until(lambda: dump_meters(sandbox) == before, what="meters replayed")
            await wait_until(lambda: bool(table_flows(sandbox, 58)), what="flows replayed")
            await agent.settled()
            assert f"meter:{m_egress}," in "\n".join(table_flows(sandbox, 58))
            assert not core.extension_problems

        # an agent restart over the same state: nothing sent, not even once the pull answers
        async with running_agent(config, unplug_grace=0.5) as agent:
            core = agent.core
            meters = agent.meters
            assert core is not None and meters is not None
            await wait_until(lambda: core.counts()["wired"] == 3, what="rewired")
            await wait_until(lambda: len(dump_meters(sandbox)) == 6, what="meters back")
            await agent.settled()
            assert dump_meters(sandbox)[m_in_kbps] == ("kbps", 4000, 2000)
            # the snapshot's policy: the same flows and meters before the server answers
            assert agent.stats.initial_flowmods == 0
            assert meters.meter_mods_sent == 0
            assert agent.flowmods_sent == 0

            # port 1's VM rebooted (a new ofport): its meters follow, the old ones go
            unplug(sandbox, [1])
            plug(sandbox, [1])
            n1 = ofport(sandbox, tap(1))
            moved = {n * 4 + slot for n in (n0, n1) for slot in slots}
            await wait_until(lambda: set(dump_meters(sandbox)) == moved, what="meters moved")
            await agent.settled()
            m_egress = n1 * 4 + SLOT_EGRESS_PPS
            assert [f for f in table_flows(sandbox, 58) if f"meter:{m_egress}," in f]

            # the policy detached from port 1: its meters and flows go, port 0's stay
            sim.add_port(sim.ports[port_id(1)].model_copy(update={"qos_policy_id": None}))
            await sim.notify_port_update(port_id(1))
            await wait_until(lambda: len(dump_meters(sandbox)) == 3, what="port 1's meters gone")
            assert all(meter_id // 4 == n0 for meter_id in dump_meters(sandbox))
            await agent.settled()
            assert not [f for f in sandbox.dump_flows("br-int") if f"meter:{m_egress}," in f]
            assert not [f for f in table_flows(sandbox, 58) if f"dl_dst={mac(1)}" in f]
            assert not core.extension_problems

            # port 0 deleted: after its unplug grace, no meter at all and only the defaults
            unplug(sandbox, [0])
            await wait_until(lambda: not dump_meters(sandbox), what="no meter left")
            await agent.settled()
            assert not [f for f in sandbox.dump_flows("br-int") if "meter:" in f]
            assert len(table_flows(sandbox, 58)) == len(table_flows(sandbox, 59)) == 1


def refused_meter() -> Meter:
    """A meter ovs-vswitchd refuses (OFPM13_ALL is no meter id: OFPMMFC_INVALID_METER): the
    Meter value itself would refuse it, so it is made past its checks."""
    meter = object.__new__(Meter)
    for name, value in (("id", 0xFFFFFFFF), ("unit", "kbps"), ("rate", 100), ("burst", 0)):
        object.__setattr__(meter, name, value)
    return meter


async def test_a_refused_meter_holds_back_only_its_flows(ovs_sandbox: OVSSandbox) -> None:
    bridge = f"mt{uuid.uuid4().hex[:8]}"
    ovs_sandbox.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=dummy",
                      "fail-mode=secure", "protocols=OpenFlow13")  # fmt: skip
    channels: list[OpenFlowChannel] = []

    async def reconcilers() -> tuple[FlowReconciler, MeterReconciler]:
        channel = OpenFlowChannel.for_mgmt_socket(ovs_sandbox.mgmt_socket(bridge))
        await channel.start(within=10)
        channels.append(channel)
        meters = MeterReconciler(channel)
        return FlowReconciler(channel, stable_cookie(bridge), companion=meters), meters

    good, bad = Meter(12, "pktps", 1000, 100), refused_meter()
    ok = Flow(58, 100, Match(in_port=1), (ApplyMeter(good.id), GotoTable(59)))
    held = Flow(58, 100, Match(in_port=2), (ApplyMeter(bad.id), GotoTable(59)))
    plain = Flow(0, 1, Match(in_port=3), (Output(4, 0),))
    try:
        flows, meters = await reconcilers()
        meters.want([good, bad])
        assert await flows.sync([ok, held, plain]) == 2  # not the held one
        assert dump_meters(ovs_sandbox, bridge) == {12: ("pktps", 1000, 100)}
        lines = "\n".join(ovs_sandbox.dump_flows(bridge))
        assert "meter:12" in lines and "in_port=2" not in lines and "in_port=3" in lines
        (reason,) = meters.rejected.values()
        assert "OFPMMFC_INVALID_METER" in reason
        assert meters.meter_mods_sent == 2
        assert await flows.sync([ok, held, plain]) == 0  # not asked again: same refusal
        assert meters.meter_mods_sent == 2

        # the same set from a new connection (an agent restart): nothing sent but the refused
        again, again_meters = await reconcilers()
        again_meters.want([good])
        assert await again.sync([ok, plain]) == 0
        assert again_meters.meter_mods_sent == 0

        # the metered flow goes: its meter is deleted after the bundle, not before
        again_meters.want([])
        assert await again.sync([plain]) == 1
        assert dump_meters(ovs_sandbox, bridge) == {}
        assert again_meters.meter_mods_sent == 1
        assert "in_port=3" in "\n".join(ovs_sandbox.dump_flows(bridge))
    finally:
        for channel in channels:
            await channel.close()
        ovs_sandbox.vsctl("del-br", bridge)
