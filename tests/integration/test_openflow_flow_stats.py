"""The struct flow-stats decoder against what a real ovs-vswitchd reports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from benchmarks.flowsets import neutron_like_flows
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow import codec
from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.flow_stats import FlowStatsDecoder, Undecoded
from aovs.openflow.messages import DATAPATH, parse
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration

# Flows as operators and other tools write them: OVS normalises and reports them its own way.
OFCTL_FLOWS = [
    "table=0,priority=5,in_port=1,dl_src=FA:16:3E:00:00:01/ff:ff:ff:00:00:00,"
    "actions=mod_vlan_vid:5,resubmit(,60)",
    "table=1,priority=5,ipv6,ipv6_src=fd00::/64,actions=set_field:fd00::1->ipv6_dst,output:3",
    "table=2,priority=5,ip,nw_src=10.0.0.0/8,actions=ct(commit,zone=NXM_NX_REG6[0..15],"
    "exec(set_field:0x1->ct_mark)),move:NXM_NX_REG5[0..15]->NXM_NX_REG6[0..15],"
    "ct_clear,resubmit(4,60)",
    "table=3,priority=5,tcp,tp_dst=0x400/0xfc00,ct_state=+trk+new,actions=conjunction(7,1/2)",
    "table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
    "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
    "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
    # what aovs cannot express: note, nat, dec_ttl, write-actions, and a `load:` that OVS
    # reports as the old NXAST_REG_LOAD (aovs writes NXAST_REG_LOAD2)
    "table=4,priority=5,actions=note:01.02.03,output:2",
    "table=8,priority=5,actions=load:0x7->NXM_NX_REG7[3..5]",
    "table=5,priority=5,ip,actions=ct(commit,nat(src=10.0.0.1)),dec_ttl",
    "table=6,priority=5,arp,arp_spa=10.0.0.1,actions=write_actions(output:2)",
    "table=7,priority=5,metadata=0x5/0xff,reg3=0x10/0xf0,actions=drop",
]


@pytest.fixture
async def channel(ovs_sandbox: OVSSandbox) -> AsyncIterator[tuple[str, OpenFlowChannel]]:
    bridge = f"fs{uuid.uuid4().hex[:8]}"
    ovs_sandbox.vsctl(
        "add-br", bridge, "--", "set", "Bridge", bridge,
        "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13",
    )  # fmt: skip
    chan = OpenFlowChannel.for_mgmt_socket(ovs_sandbox.mgmt_socket(bridge))
    await chan.start(within=10)
    try:
        yield bridge, chan
    finally:
        await chan.close()
        ovs_sandbox.vsctl("del-br", bridge)


async def dump_replies(chan: OpenFlowChannel, cookie: int = 0, mask: int = 0) -> list[bytes]:
    request = ofpp.OFPFlowStatsRequest(
        DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, cookie, mask, ofpp.OFPMatch()
    )
    return await chan.multipart_unparsed(request, within=60)


def decoded_both_ways(replies: list[bytes], cookie: int) -> tuple[list[object], list[object]]:
    decoder = FlowStatsDecoder(cookie)
    fast: list[object] = []
    reference: list[object] = []
    for message in replies:
        for item in decoder.decode_reply(message):
            fast.append(type(item.error) if isinstance(item, Undecoded) else item)
        for stats in parse(message).body:
            try:
                reference.append(codec.decode_flow_stats(stats, cookie))
            except (codec.UnsupportedFlowError, ValueError) as exc:
                reference.append(type(exc))
    return fast, reference


async def test_30k_neutron_like_flows_decode_like_osken_flow_for_flow(
    channel: tuple[str, OpenFlowChannel],
) -> None:
    bridge, chan = channel
    cookie = stable_cookie(bridge)
    flows = neutron_like_flows(1000)
    reconciler = FlowReconciler(chan, cookie)
    try:
        assert await reconciler.sync(flows) == 30_000
        replies = await dump_replies(chan, cookie, codec.ALL_ONES_64)
        assert len(replies) > 1  # OVS splits the dump: the multi-message path is exercised
        fast, reference = decoded_both_ways(replies, cookie)
        assert len(fast) == 30_000
        assert fast == reference
        assert set(fast) == set(flows)

        # the reconciler decodes a reply at a time: a barrier sent behind the dump is answered
        # (its task runs) before the dump's decoding has finished
        order: list[str] = []

        async def barrier() -> None:
            await asyncio.sleep(0)  # let the dump request go out first
            await chan.barrier(within=30)
            order.append("barrier")

        async def refresh() -> None:
            await reconciler.refresh()
            order.append("dump")

        await asyncio.gather(refresh(), barrier())
        assert order == ["barrier", "dump"]
        assert set(reconciler.installed.values()) == set(flows)
    finally:
        reconciler.close()


async def test_flows_written_by_ovs_ofctl_decode_like_osken(
    ovs_sandbox: OVSSandbox, channel: tuple[str, OpenFlowChannel]
) -> None:
    bridge, chan = channel
    for line in OFCTL_FLOWS:
        ovs_sandbox.ofctl("add-flow", bridge, f"cookie=0x77,{line}")
    fast, reference = decoded_both_ways(await dump_replies(chan), 0x77)
    assert len(fast) == len(OFCTL_FLOWS)
    assert fast == reference
    undecodable = [item for item in fast if isinstance(item, type)]
    assert len(undecodable) == 4  # os-ken's verdict too: the reconciler replaces such flows
