"""The trunk wiring's batched OVSDB write against the real ovsdb-server: every trunk bridge's
patch pairs in one transaction, and when one bridge's commands are refused, the others still
written (bridge by bridge) and nothing of the refused one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from aovs.extensions.trunk import parent_pair, subport_pair, trunk_bridge_name
from aovs.extensions.trunk_wiring import trunk_port_commands, write_trunk_bridges
from aovs.ovsdb import AddPort, DeleteBridge, DuplicateRow, EnsureBridge, OVSDBClient
from aovs.sandbox import OVSSandbox, SandboxError

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(ovs_sandbox: OVSSandbox) -> AsyncIterator[OVSDBClient]:
    async with OVSDBClient(ovs_sandbox.ovsdb_connection) as ovsdb:
        yield ovsdb


def ports(sandbox: OVSSandbox, bridge: str) -> set[str]:
    try:
        return set(sandbox.vsctl("list-ports", bridge).split())
    except SandboxError:
        return set()


async def test_a_refused_bridge_keeps_neither_itself_nor_the_others_unwired(
    client: OVSDBClient, ovs_sandbox: OVSSandbox
) -> None:
    br_int, other = "br-tw-int", "br-tw-other"
    trunk_ids = [str(uuid.uuid4()) for _ in range(3)]
    bridges = [trunk_bridge_name(t) for t in trunk_ids]
    parents = [str(uuid.uuid4()) for _ in range(3)]
    subports = [str(uuid.uuid4()) for _ in range(3)]
    setup = [EnsureBridge(b, datapath_type="dummy") for b in (br_int, other, *bridges)]
    # the second trunk's br-int port name is taken on another bridge: its pair cannot be made
    taken = parent_pair(parents[1], None).int_name
    await client.transact(*setup, AddPort(other, taken, type="internal"))
    try:
        commands = {
            bridge: trunk_port_commands(br_int, bridge, add=[
                parent_pair(parent, "fa:16:3e:00:00:01"),
                subport_pair(sub, "fa:16:3e:00:00:02", 100 + n)])
            for n, (bridge, parent, sub) in enumerate(zip(bridges, parents, subports, strict=True))
        }  # fmt: skip
        failed = await write_trunk_bridges(client, commands)
        assert list(failed) == [bridges[1]] and isinstance(failed[bridges[1]], DuplicateRow)
        for n in (0, 2):
            pairs = [parent_pair(parents[n], None), subport_pair(subports[n], None, 100 + n)]
            assert ports(ovs_sandbox, bridges[n]) == {p.trunk_name for p in pairs}
            assert {p.int_name for p in pairs} <= ports(ovs_sandbox, br_int)
            tag = ovs_sandbox.vsctl("get", "Port", pairs[1].trunk_name, "tag").strip()
            assert tag == str(100 + n)
        assert not ports(ovs_sandbox, bridges[1])  # nothing of the refused trunk's pairs
        assert subport_pair(subports[1], None, 101).int_name not in ports(ovs_sandbox, br_int)
        assert len(ports(ovs_sandbox, br_int)) == 4
    finally:
        await client.transact(*(DeleteBridge(b) for b in (br_int, other, *bridges)))
