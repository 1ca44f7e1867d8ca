"""Taking a bridge over from neutron's agent (issue 20) on a real ovs-vswitchd.

neutron's agent does not run here (tests/neutron/test_takeover.py runs the real one, against
a real neutron-server, with ``make test-neutron``); these tests imitate what it leaves behind:
the flows are neutron 29's br-int and br-phys base pipeline for a vlan network, copied from
what neutron-openvswitch-agent 29.0.0 installed on a sandbox like this one (that test's setup)
minus its openvswitch firewall's tables, i.e. what it installs with the noop firewall: one
random cookie per bridge and agent run, table 0 -> 58 -> 59 -> 60 NORMAL, the dead-VLAN drop,
the VLAN translations between br-int and br-phys; and each VM port's Port row carries neutron's
``tag`` and ``other_config`` (net_uuid, network_type, physical_network, segmentation_id, tag).

What is checked:
- ovs-vswitchd 3.1's own semantics the takeover relies on: MODIFY_STRICT keeps a rule's cookie,
  ADD replaces it;
- the first sync of a ``take_over`` reconciler: every foreign flow deleted or replaced in ONE
  bundle, learned flows left to expire, ovs-vswitchd's hidden table left alone, nothing sent
  by an agent restart over its own flows, nobody else's flow touched after a reconnect;
- no packet lost while a bridge forwarding by NORMAL is switched to explicit forwarding;
- the agent: it keeps neutron's flows (and the VMs' traffic) while neutron-server is silent,
  asks first, then takes over in one bundle per bridge with neutron's local VLAN and Port rows,
  and not one of the frames injected every 3 ms on the way is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agent_world import simulator, wait_until
from neutron_agent import Flowing, ports_with_neutron_metadata, streaming

from aovs.agent.agent import Agent
from aovs.config import AgentConfig
from aovs.openflow import codec
from aovs.openflow.bundle import BundleEntry, commit_bundle
from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.flows import Flow, GotoTable, Match, Output, PopVlan, PushVlan, SetField, vid
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.sandbox import OVSSandbox, running_sandbox
from aovs.testing.cloud import CloudNetwork, CloudPort, SimulatedCloud

pytestmark = pytest.mark.integration

NEUTRON = 0x59101F6ABCB121C7  # a cookie as neutron's agent draws them (random per run)
NEUTRON_PHYS = 0xDC37FE5C64558FA8
OTHER = 0x1234


def new_bridge(sandbox: OVSSandbox, *ports: str) -> str:
    name = f"to{next(_names)}"
    args = ["add-br", name, "--", "set", "Bridge", name, "datapath_type=dummy",
            "fail-mode=secure", "protocols=OpenFlow13"]  # fmt: skip
    for number, port in enumerate(ports, 1):
        args += ["--", "add-port", name, port, "--", "set", "Interface", port, "type=dummy",
                 f"ofport_request={number}"]  # fmt: skip
    sandbox.vsctl(*args)
    return name


_names = iter(range(10_000))


@contextlib.asynccontextmanager
async def reconciler_on(
    sandbox: OVSSandbox, bridge: str, *, take_over: bool = True
) -> AsyncIterator[FlowReconciler]:
    """As the agent does it: the reconciler first, so it dumps the bridge on connect."""
    channel = OpenFlowChannel.for_mgmt_socket(sandbox.mgmt_socket(bridge), backoff_max=0.5)
    reconciler = FlowReconciler(channel, stable_cookie(bridge), take_over=take_over)
    try:
        await channel.start(within=10)
        await asyncio.sleep(0)  # the resync task starts
        await reconciler.wait_idle()
        yield reconciler
    finally:
        reconciler.close()
        await channel.close()


def cookies(sandbox: OVSSandbox, bridge: str) -> dict[int, int]:
    """How many flows carry each cookie (ovs-ofctl leaves cookie 0 out; ovs-vswitchd's hidden
    table 254 is not listed)."""
    out: dict[int, int] = {}
    for line in sandbox.dump_flows(bridge):
        found = re.match(r"cookie=(0x[0-9a-f]+)", line)
        cookie = int(found[1], 16) if found else 0
        out[cookie] = out.get(cookie, 0) + 1
    return out


def add_flows(sandbox: OVSSandbox, bridge: str, lines: list[str]) -> None:
    path = sandbox.directory / f"{bridge}-foreign.flows"
    path.write_text("\n".join(lines) + "\n")
    sandbox.ofctl("add-flows", bridge, str(path))


# -- ovs-vswitchd's semantics ------------------------------------------------------------------
async def test_modify_strict_keeps_a_foreign_cookie_and_add_replaces_it(
    ovs_sandbox: OVSSandbox,
) -> None:
    """Why a desired flow held by a foreign rule is ADDed, not modified: OpenFlow 1.3's
    modify changes only the instructions, and ovs-vswitchd 3.1 does exactly that (it takes
    no new cookie from a MODIFY_STRICT); an ADD replaces the rule, cookie included."""
    bridge = new_bridge(ovs_sandbox)
    ovs_sandbox.ofctl("add-flow", bridge, f"cookie={NEUTRON:#x},table=3,priority=7,actions=drop")
    ours = 0xA0B5
    flow = Flow(3, 7, Match(), (Output(5, 0),))
    channel = OpenFlowChannel.for_mgmt_socket(ovs_sandbox.mgmt_socket(bridge))
    await channel.start(within=10)
    try:
        for command in (codec.MODIFY_STRICT, codec.ADD):
            data = codec.encode_flow_mod(flow, command, ours)
            await commit_bundle(channel, [BundleEntry(data, flow)])
            (line,) = ovs_sandbox.dump_flows(bridge)
            assert line.endswith("actions=output:5"), line  # both change the actions
            expected = NEUTRON if command == codec.MODIFY_STRICT else ours
            assert line.startswith(f"cookie={expected:#x},"), (command, line)
    finally:
        await channel.close()
        ovs_sandbox.vsctl("del-br", bridge)


# -- the reconciler ----------------------------------------------------------------------------
DESIRED = [
    Flow(0, 0, Match(), (GotoTable(60),)),  # neutron has it too, same actions: cookie rewritten
    Flow(0, 65535, Match(vlan_vid=vid(4095)), ()),  # neutron has it: the same
    Flow(60, 3, Match(), (GotoTable(110),)),  # neutron: NORMAL there (actions differ)
    Flow(110, 0, Match(), ()),
]
FOREIGN = [
    f"cookie={NEUTRON:#x},table=0,priority=0,actions=goto_table:60",
    f"cookie={NEUTRON:#x},table=0,priority=65535,dl_vlan=4095,actions=drop",
    f"cookie={NEUTRON:#x},table=60,priority=3,actions=NORMAL",
    f"cookie={NEUTRON:#x},table=0,priority=2,in_port=9,actions=drop",  # not desired: deleted
    f"cookie={OTHER:#x},table=24,priority=0,actions=drop",  # another cookie: deleted too
    "cookie=0,table=62,priority=3,actions=NORMAL",  # cookie 0 and no timeout: deleted
    # learned (a timeout): left to expire, whatever the cookie
    f"cookie={NEUTRON:#x},table=20,priority=1,hard_timeout=300,dl_vlan=1,"
    "dl_dst=fa:16:3e:00:00:01,actions=output:3",
    "cookie=0,table=20,priority=1,hard_timeout=300,dl_vlan=1,dl_dst=fa:16:3e:00:00:02,"
    "actions=output:3",
]


async def test_first_sync_replaces_every_foreign_flow_in_one_bundle(
    ovs_sandbox: OVSSandbox,
) -> None:
    bridge = new_bridge(ovs_sandbox)
    add_flows(ovs_sandbox, bridge, FOREIGN)
    try:
        async with reconciler_on(ovs_sandbox, bridge) as reconciler:
            assert len(reconciler.foreign) == len(FOREIGN)  # table 254's hidden rules: not
            assert reconciler.installed == {}
            sent = await reconciler.sync(DESIRED)
            assert reconciler.bundles_committed == 1
            summary = reconciler.takeover
            assert summary is not None
            assert (summary.deleted, summary.replaced, summary.left) == (3, 3, 2)
            assert summary.cookies == {NEUTRON, OTHER, 0}
            assert sent == 3 + len(DESIRED)  # deletes, then every desired flow ADDed
            assert not reconciler.taking_over and reconciler.foreign == {}

            lines = ovs_sandbox.dump_flows(bridge)
            ours = [line for line in lines if line.startswith(f"cookie={reconciler.cookie:#x},")]
            assert len(ours) == len(DESIRED)
            assert cookies(ovs_sandbox, bridge) == {reconciler.cookie: 4, NEUTRON: 1, 0: 1}
            assert all("hard_timeout=300" in line for line in lines if line not in ours)
            assert any("table=60, priority=3 actions=goto_table:110" in line for line in ours)

            # the reconciler's view equals the switch: a later sync has nothing to do
            await reconciler.refresh()
            assert set(reconciler.installed.values()) == set(DESIRED)
            assert await reconciler.sync(DESIRED) == 0
    finally:
        ovs_sandbox.vsctl("del-br", bridge)


async def test_restart_sends_nothing_and_a_reconnect_leaves_others_flows_alone(
    ovs_sandbox: OVSSandbox,
) -> None:
    """An agent restart (a new take_over reconciler) over its own flows and a learned one:
    zero FlowMods. After the takeover, a flow someone adds is theirs: a reconnect (an OVS
    restart, here a dropped connection) dumps our cookie only and leaves it."""
    bridge = new_bridge(ovs_sandbox)
    try:
        async with reconciler_on(ovs_sandbox, bridge) as first:
            await first.sync(DESIRED)
        add_flows(ovs_sandbox, bridge, [FOREIGN[-1]])  # a learned flow, cookie 0
        async with reconciler_on(ovs_sandbox, bridge) as restarted:
            assert await restarted.sync(DESIRED) == 0
            assert restarted.flowmods_sent == 0
            assert restarted.takeover is not None and restarted.takeover.left == 1

            operator = f"cookie={OTHER:#x},table=5,priority=1,actions=drop"
            ovs_sandbox.ofctl("add-flow", bridge, operator)
            connections = restarted.channel.connections
            restarted.channel.reset("test: the connection drops")
            await wait_until(lambda: restarted.channel.connections > connections, 10,
                             "the reconnect")  # fmt: skip
            await asyncio.sleep(0.05)
            await restarted.wait_idle()
            assert restarted.foreign == {}  # not dumped: our cookie only
            assert await restarted.sync([*DESIRED, Flow(5, 9, Match(), ())]) == 1
            assert cookies(ovs_sandbox, bridge) == {restarted.cookie: 5, OTHER: 1, 0: 1}
    finally:
        ovs_sandbox.vsctl("del-br", bridge)


async def test_switching_from_normal_to_explicit_forwarding_loses_no_packet(
    ovs_sandbox: OVSSandbox,
) -> None:
    """a -> b by neutron's NORMAL pipeline, then by aovs-like explicit forwarding (push the
    VLAN, deliver by (VLAN, MAC)): one bundle, and every frame sent every 3 ms comes out."""
    a, b = f"tka{next(_names)}", f"tkb{next(_names)}"
    bridge = new_bridge(ovs_sandbox, a, b)  # ofports 1 and 2
    mac_a, mac_b = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"
    add_flows(ovs_sandbox, bridge, [
        f"cookie={NEUTRON:#x},table=0,priority=65535,dl_vlan=4095,actions=drop",
        f"cookie={NEUTRON:#x},table=0,priority=0,actions=goto_table:60",
        f"cookie={NEUTRON:#x},table=60,priority=3,actions=NORMAL",
        f"cookie={NEUTRON:#x},table=23,priority=0,actions=drop",
    ])  # fmt: skip
    explicit = [
        Flow(0, 0, Match(), (GotoTable(60),)),
        Flow(0, 65535, Match(vlan_vid=vid(4095)), ()),
        Flow(60, 3, Match(), (GotoTable(110),)),
        Flow(110, 10, Match(in_port=1, vlan_vid=(0, 0x1FFF)),
             (PushVlan(), SetField("vlan_vid", vid(7)), GotoTable(111))),
        Flow(111, 20, Match(vlan_vid=vid(7), eth_dst=mac_b), (PopVlan(), Output(2, 0))),
        Flow(110, 0, Match(), ()),
        Flow(111, 0, Match(), ()),
    ]  # fmt: skip
    path = Flowing("a->b", a, b, mac_a, mac_b, "10.9.0.1", "10.9.0.2")
    try:
        async with reconciler_on(ovs_sandbox, bridge) as reconciler:
            with streaming(ovs_sandbox, [path]) as stream:
                await asyncio.sleep(0.3)
                stream.mark("takeover")
                await reconciler.sync(explicit)
                await asyncio.sleep(0.3)
                result = stream.stop()
            print(result.report())
            assert reconciler.bundles_committed == 1
            assert cookies(ovs_sandbox, bridge) == {reconciler.cookie: len(explicit)}
            (only,) = result.paths
            assert only.sent > 100 and result.lost == 0, result.report()
    finally:
        ovs_sandbox.vsctl("del-br", bridge)


# -- the agent, over a hypervisor neutron's agent ran ------------------------------------------
NET = "net-vlan"
SEGMENT = 101
NEUTRON_VLAN = 7  # neutron's local VLAN for NET: aovs would pick 1 by itself
UPLINK = "br-phys-up"
OUTSIDE_MAC = "52:54:00:00:00:99"
VMS = [("port-a", "tapa", "fa:16:3e:00:00:0a", "10.0.0.10"),
       ("port-b", "tapb", "fa:16:3e:00:00:0b", "10.0.0.11")]  # fmt: skip


def neutron_was_here(sandbox: OVSSandbox) -> None:
    """What neutron 29's agent leaves on a hypervisor with two VMs on a vlan network (noop
    firewall): the patch pair, the VMs' Port rows with its tag and other_config, its flows."""
    args = ["--", "add-port", "br-int", "int-br-phys", "--", "set", "Interface", "int-br-phys",
            "type=patch", "options:peer=phy-br-phys", "ofport_request=1",
            "--", "add-port", "br-phys", "phy-br-phys", "--", "set", "Interface", "phy-br-phys",
            "type=patch", "options:peer=int-br-phys", "ofport_request=2"]  # fmt: skip
    other = [f"other_config:{key}={value}" for key, value in (
        ("net_uuid", NET), ("network_type", "vlan"), ("physical_network", "physnet1"),
        ("segmentation_id", SEGMENT), ("tag", NEUTRON_VLAN))]  # fmt: skip
    for number, (port, tap, mac, _) in enumerate(VMS, 2):
        args += ["--", "add-port", "br-int", tap, f"tag={NEUTRON_VLAN}",
                 "--", "set", "Port", tap, *other,
                 "--", "set", "Interface", tap, "type=dummy", f"ofport_request={number}",
                 f"external_ids:iface-id={port}", f"external_ids:attached-mac={mac}",
                 "external_ids:iface-status=active"]  # fmt: skip
    sandbox.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=dummy",
                  "fail-mode=secure", "protocols=OpenFlow13", *args)  # fmt: skip
    local = vid(NEUTRON_VLAN)
    add_flows(sandbox, "br-int", [f"cookie={NEUTRON:#x},{line}" for line in [
        "table=0,priority=65535,dl_vlan=4095,actions=drop",
        f"table=0,priority=3,in_port=1,dl_vlan={SEGMENT},"
        f"actions=set_field:{local}->vlan_vid,goto_table:58",
        "table=0,priority=2,in_port=1,actions=drop",
        "table=0,priority=0,actions=goto_table:58",
        "table=23,priority=0,actions=drop",
        "table=24,priority=0,actions=drop",
        "table=30,priority=0,actions=goto_table:58",
        "table=31,priority=0,actions=goto_table:58",
        "table=58,priority=0,actions=goto_table:59",
        "table=59,priority=0,actions=goto_table:60",
        "table=60,priority=1,actions=NORMAL",
        "table=62,priority=3,actions=NORMAL",
    ]])  # fmt: skip
    add_flows(sandbox, "br-phys", [f"cookie={NEUTRON_PHYS:#x},{line}" for line in [
        f"table=0,priority=4,in_port=2,dl_vlan={NEUTRON_VLAN},"
        f"actions=set_field:{vid(SEGMENT)}->vlan_vid,NORMAL",
        "table=0,priority=2,in_port=2,actions=drop",
        "table=0,priority=0,actions=NORMAL",
    ]])  # fmt: skip


@pytest.fixture
def hypervisor() -> Iterator[OVSSandbox]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-tk-", dir="/tmp"))
    with running_sandbox(directory) as sandbox:
        sandbox.add_physical_bridge("br-phys")
        yield sandbox


def cloud() -> SimulatedCloud:
    network = CloudNetwork(
        network_type="vlan", physical_network="physnet1", segmentation_id=SEGMENT
    )
    ports = [
        {"port_id": port, "network_id": NET, "mac_address": mac, "fixed_ips": [{"ip_address": ip}]}
        for port, _, mac, ip in VMS
    ]
    return SimulatedCloud(
        networks={NET: network}, ports=tuple(CloudPort.model_validate(p) for p in ports)
    )


async def test_agent_takes_over_neutron_without_losing_a_packet(
    hypervisor: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    sandbox = hypervisor
    neutron_was_here(sandbox)
    rows_before = ports_with_neutron_metadata(sandbox)
    (a_port, a_tap, a_mac, a_ip), (_, b_tap, b_mac, b_ip) = VMS
    paths = [
        Flowing("vm a -> vm b", a_tap, b_tap, a_mac, b_mac, a_ip, b_ip),
        Flowing("vm a -> outside", a_tap, UPLINK, a_mac, OUTSIDE_MAC, a_ip, "10.0.0.250"),
    ]
    config = AgentConfig.model_validate({
        "host": "compute-takeover",
        "transport_url": rabbit_vhost,
        "ovs": {"ovsdb_connection": sandbox.ovsdb_connection, "datapath_type": "dummy",
                "bridge_mappings": ["physnet1:br-phys"], "port_metadata_delay": 0.2},
        "agent": {"state_path": str(state_path), "report_interval": 0,
                  "rpc_response_timeout": 1.0, "rpc_response_max_timeout": 2.0},
        "securitygroup": {"firewall_driver": "noop"},
    })  # fmt: skip
    async with simulator(rabbit_vhost, cloud()) as sim:
        sim.answering = False  # a silent neutron-server: neutron's flows must stay
        with streaming(sandbox, paths) as stream:
            await asyncio.sleep(0.3)
            agent = Agent(config)
            stream.mark("aovs starting, neutron-server silent")
            starting = asyncio.create_task(agent.start())
            try:
                await wait_until(lambda: sim.calls["get_devices_details_list_and_failed_devices"]
                                 > 0, 20, "the details asked")  # fmt: skip
                await asyncio.sleep(1.0)
                assert not starting.done() and not agent.ready.is_set()
                assert cookies(sandbox, "br-int") == {NEUTRON: 12}  # untouched meanwhile
                stream.mark("neutron-server answers")
                sim.answering = True
                await asyncio.wait_for(starting, 30)
                stream.mark("aovs ready")
                await agent.settled()
                await asyncio.sleep(0.5)
                result = stream.stop()
                print(result.report())
                summaries = {b: r.takeover for b, r in agent.reconcilers.items()}
                print(summaries)
            finally:
                if not starting.done():
                    starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
                await agent.stop()

    assert result.lost == 0, result.report()
    assert all(p.sent > 300 for p in result.paths), result.report()
    for bridge, summary in summaries.items():
        assert summary is not None and summary.found > 0, bridge
        assert set(cookies(sandbox, bridge)) == {stable_cookie(bridge)}, bridge
    # neutron's local VLAN kept, and the Port rows as neutron wrote them
    pushed = [f for f in sandbox.dump_flows("br-int") if "table=110" in f and "push_vlan" in f]
    assert len(pushed) == 2 and all(f"set_field:{vid(NEUTRON_VLAN)}->vlan_vid" in f
                                    for f in pushed), pushed  # fmt: skip
    assert ports_with_neutron_metadata(sandbox) == rows_before
    assert sim.device_up_reports.count(a_port) >= 1
