"""FlowReconciler against a real ovs-vswitchd: full sync, deltas, bad bundles, restarts."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.errors import BundleError
from aovs.openflow.flows import Flow, GotoTable, Match, Output
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.sandbox import OVSSandbox

# benchmarks/ is not on pytest's path (pyproject has no pythonpath setting): the flow sets are
# shared with the benchmark, so import them from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.flowsets import neutron_like_flows, port_flows

pytestmark = pytest.mark.integration


def new_bridge(sandbox: OVSSandbox) -> str:
    name = f"rc{uuid.uuid4().hex[:8]}"
    sandbox.vsctl(
        "add-br", name, "--", "set", "Bridge", name,
        "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13",
    )  # fmt: skip
    return name


async def open_reconciler(sandbox: OVSSandbox, bridge: str) -> FlowReconciler:
    channel = OpenFlowChannel.for_mgmt_socket(sandbox.mgmt_socket(bridge), backoff_max=0.5)
    await channel.start(within=10)
    return FlowReconciler(channel, stable_cookie(bridge))


@pytest.fixture
async def bridge(ovs_sandbox: OVSSandbox) -> AsyncIterator[str]:
    name = new_bridge(ovs_sandbox)
    yield name
    ovs_sandbox.vsctl("del-br", name)


def ofctl_flows(sandbox: OVSSandbox, bridge: str) -> list[str]:
    return sandbox.dump_flows(bridge)


async def test_30k_flows_install_then_resync_sends_nothing_then_deltas(
    ovs_sandbox: OVSSandbox, bridge: str
) -> None:
    reconciler = await open_reconciler(ovs_sandbox, bridge)
    try:
        flows = neutron_like_flows(1000)
        assert await reconciler.sync(flows) == 30_000
        assert reconciler.bundles_committed == 1
        lines = ofctl_flows(ovs_sandbox, bridge)
        assert len(lines) == 30_000
        assert all(line.startswith(f"cookie={reconciler.cookie:#x},") for line in lines)

        # what the switch reports decodes to exactly the desired set
        await reconciler.refresh()
        assert set(reconciler.installed.values()) == set(flows)

        assert await reconciler.sync(flows) == 0

        changed = list(flows)
        for index in range(10):
            old = port_flows(index)
            changed = [f for f in changed if f not in set(old)] + port_flows(index, variant=1)
        before = reconciler.flowmods_sent
        # per port: one match changed (delete + add), one action changed (modify)
        assert await reconciler.sync(changed) == 30
        assert reconciler.flowmods_sent - before == 30
        await reconciler.refresh()
        assert set(reconciler.installed.values()) == set(changed)
    finally:
        reconciler.close()
        await reconciler.channel.close()


async def test_apply_sends_only_the_delta(ovs_sandbox: OVSSandbox, bridge: str) -> None:
    reconciler = await open_reconciler(ovs_sandbox, bridge)
    try:
        await reconciler.sync(neutron_like_flows(20))
        gone, new = port_flows(3), port_flows(3, variant=1)
        sent = await reconciler.apply(remove=gone, add=new)
        assert sent == 3  # delete + add for the changed match, modify for the changed action
        assert await reconciler.apply(remove=port_flows(4)) == 30
        expected = set(neutron_like_flows(20)) - set(gone) - set(port_flows(4)) | set(new)
        assert reconciler.desired is not None
        assert set(reconciler.desired.values()) == expected
        await reconciler.refresh()
        assert set(reconciler.installed.values()) == expected
    finally:
        reconciler.close()
        await reconciler.channel.close()


async def test_invalid_flow_leaves_switch_and_view_unchanged(
    ovs_sandbox: OVSSandbox, bridge: str
) -> None:
    reconciler = await open_reconciler(ovs_sandbox, bridge)
    try:
        good = neutron_like_flows(10)
        await reconciler.sync(good)
        before_lines = ofctl_flows(ovs_sandbox, bridge)
        bad = Flow(60, 7, Match(in_port=99), [GotoTable(24)])  # goto a lower table
        with pytest.raises(BundleError) as caught:
            await reconciler.sync([*neutron_like_flows(12)[10:], bad, *good[:100]])
        assert caught.value.flow == bad
        assert "table=60, priority=7" in str(caught.value)
        assert ofctl_flows(ovs_sandbox, bridge) == before_lines
        assert set(reconciler.installed.values()) == set(good)
    finally:
        reconciler.close()
        await reconciler.channel.close()


async def test_foreign_cookies_are_left_alone(ovs_sandbox: OVSSandbox, bridge: str) -> None:
    ovs_sandbox.ofctl("add-flow", bridge, "cookie=0x1234,table=5,priority=1,actions=drop")
    reconciler = await open_reconciler(ovs_sandbox, bridge)
    try:
        assert await reconciler.sync([Flow(0, 1, Match(in_port=1), [Output(2)])]) == 1
        assert await reconciler.sync([]) == 1
        lines = ofctl_flows(ovs_sandbox, bridge)
        assert lines == ["cookie=0x1234, table=5, priority=1 actions=drop"]
    finally:
        reconciler.close()
        await reconciler.channel.close()


async def test_new_process_against_right_flows_sends_nothing_then_warms_its_cache(
    ovs_sandbox: OVSSandbox, bridge: str
) -> None:
    flows = neutron_like_flows(200)
    first = await open_reconciler(ovs_sandbox, bridge)
    await first.sync(flows)
    first.close()
    await first.channel.close()

    second = await open_reconciler(ovs_sandbox, bridge)  # agent restart: new channel, new state
    try:
        assert await second.sync(flows) == 0
        assert second.flowmods_sent == 0
        assert len(second.cache) == 0  # nothing sent, nothing encoded yet
        assert await second.warm_cache(batch=100) == len(flows)
        assert await second.warm_cache() == 0  # once only
        ofctl_flows_before = ofctl_flows(ovs_sandbox, bridge)
        ovs_sandbox.ofctl("del-flows", bridge)  # the switch lost them (as after an OVS restart)
        await second.refresh()
        assert await second.sync(flows) == len(flows)
        assert second.cache.misses == len(flows)  # all from the warmed cache
        assert ofctl_flows(ovs_sandbox, bridge) == ofctl_flows_before
    finally:
        second.close()
        await second.channel.close()


async def test_vswitchd_restart_replays_everything_in_one_bundle(
    fresh_sandbox: OVSSandbox,
) -> None:
    bridge = new_bridge(fresh_sandbox)
    reconciler = await open_reconciler(fresh_sandbox, bridge)
    try:
        flows = neutron_like_flows(1000)
        await reconciler.sync(flows)
        bundles, connections = reconciler.bundles_committed, reconciler.channel.connections

        fresh_sandbox.kill("ovs-vswitchd")
        fresh_sandbox.start_vswitchd()
        for _ in range(200):
            if reconciler.channel.connections > connections:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        await reconciler.wait_idle()

        assert reconciler.bundles_committed == bundles + 1  # one bundle
        assert reconciler.flowmods_sent == 60_000
        assert reconciler.cache.misses == 30_000  # the replay re-sent cached bytes
        assert len(ofctl_flows(fresh_sandbox, bridge)) == 30_000
    finally:
        reconciler.close()
        await reconciler.channel.close()


async def test_unencodable_flow_discards_the_bundle(ovs_sandbox: OVSSandbox, bridge: str) -> None:
    from aovs.openflow.flows import SetField

    reconciler = await open_reconciler(ovs_sandbox, bridge)
    try:
        good = neutron_like_flows(100)  # > one send chunk before the bad flow
        bad = Flow(0, 1, Match(in_port=1), [SetField("no_such_field", 1)])
        with pytest.raises(BundleError) as caught:
            await reconciler.sync([*good, bad])
        assert caught.value.flow == bad
        assert ofctl_flows(ovs_sandbox, bridge) == []
        assert reconciler.installed == {}
        await reconciler.channel.barrier(within=5)  # the connection survived
    finally:
        reconciler.close()
        await reconciler.channel.close()
