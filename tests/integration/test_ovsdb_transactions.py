"""Commands against the real ovsdb-server: one transaction, idempotent, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aovs.ovsdb import (
    AddPort,
    ConstraintViolation,
    DeleteBridge,
    DeletePort,
    DeletePorts,
    DuplicateRow,
    EnsureBridge,
    OVSDBClient,
    ReferentialIntegrityViolation,
    RowNotFound,
    SetPort,
    Uuid,
    flow_restore_wait,
    patch_port,
    tunnel_port,
)
from aovs.ovsdb.transaction import Select, SelectedRows, TransactionBuilder
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(ovs_sandbox: OVSSandbox) -> AsyncIterator[OVSDBClient]:
    async with OVSDBClient(ovs_sandbox.ovsdb_connection) as ovsdb:
        yield ovsdb


def _get(sandbox: OVSSandbox, *args: str) -> str:
    return sandbox.vsctl("get", *args).strip()


async def test_bridge_and_ports_in_one_transaction_idempotently(
    client: OVSDBClient, ovs_sandbox: OVSSandbox
) -> None:
    commands = (
        EnsureBridge("brta", datapath_type="dummy", external_ids={"owner": "aovs"},
                     other_config={"datapath-id": "00000000000000a1",
                                   "hwaddr": "fa:16:3e:00:00:a1"}),
        EnsureBridge("brtb", datapath_type="dummy"),
        patch_port("brta", "ta-to-tb", peer="tb-to-ta"),
        patch_port("brtb", "tb-to-ta", peer="ta-to-tb"),
        tunnel_port("brta", "vx-0a000002", "vxlan", remote_ip="10.0.0.2", local_ip="10.0.0.1"),
        tunnel_port("brta", "gre-0a000003", "gre", remote_ip="10.0.0.3", local_ip="10.0.0.1"),
        AddPort("brta", "ta-int", type="internal"),
        AddPort("brta", "ta-vm1", type="dummy", external_ids={"iface-id": "vm1"}, tag=7,
                other_config={"net_uuid": "n1"}),
    )  # fmt: skip
    try:
        first = await client.transact(*commands, wait_applied=True)
        assert first.next_cfg is not None
        sb = ovs_sandbox
        assert set(sb.vsctl("list-ports", "brta").split()) == {
            "ta-to-tb", "vx-0a000002", "gre-0a000003", "ta-int", "ta-vm1"
        }  # fmt: skip
        assert _get(sb, "Bridge", "brta", "fail_mode") == "secure"
        assert _get(sb, "Bridge", "brta", "protocols") == "[OpenFlow13]"
        assert _get(sb, "Bridge", "brta", "datapath_id") == '"00000000000000a1"'  # applied
        assert _get(sb, "Interface", "tb-to-ta", "options") == "{peer=ta-to-tb}"
        assert 'remote_ip="10.0.0.2"' in _get(sb, "Interface", "vx-0a000002", "options")
        assert _get(sb, "Port", "ta-vm1", "tag") == "7"
        assert int(_get(sb, "Interface", "ta-vm1", "ofport")) > 0  # wait_applied: vswitchd is done

        again = await client.transact(*commands, wait_applied=True)
        assert again.inserted == {} and again.next_cfg is None  # nothing to change: no commit

        await client.transact(
            SetPort("ta-vm1", tag=None, other_config={"k": "v"}), flow_restore_wait(True)
        )
        assert _get(sb, "Port", "ta-vm1", "tag") == "[]"
        assert _get(sb, "Port", "ta-vm1", "other_config") == "{k=v}"
        assert _get(sb, "Open_vSwitch", ".", "other_config:flow-restore-wait") == '"true"'
        await client.transact(flow_restore_wait(False))
        assert "flow-restore-wait" not in _get(sb, "Open_vSwitch", ".", "other_config")

        await client.transact(
            DeletePort("ta-int"),
            DeletePorts((("other_config", "includes", {"k": "v"}),), bridge="brta"),
        )
        assert set(sb.vsctl("list-ports", "brta").split()) == {
            "ta-to-tb",
            "vx-0a000002",
            "gre-0a000003",
        }
    finally:
        await client.transact(DeleteBridge("brta"), DeleteBridge("brtb"))
    assert not {"brta", "brtb"} & set(ovs_sandbox.vsctl("list-br").split())


async def test_server_errors_are_typed_and_keep_the_message(
    client: OVSDBClient, ovs_sandbox: OVSSandbox
) -> None:
    await client.transact(
        EnsureBridge("brte", datapath_type="dummy"), AddPort("brte", "te1", type="dummy")
    )
    try:
        with pytest.raises(DuplicateRow, match="identical values"):
            await client.transact(AddPort("brte", "te1", may_exist=False))
        with pytest.raises(DuplicateRow, match="other than"):
            await client.transact(
                EnsureBridge("brtf", datapath_type="dummy"), AddPort("brtf", "te1")
            )
        assert "brtf" not in ovs_sandbox.vsctl("list-br").split()  # nothing of the failed txn stays
        with pytest.raises(ConstraintViolation, match="4095"):
            await client.transact(SetPort("te1", tag=5000))
        with pytest.raises(RowNotFound, match="port nope"):
            await client.transact(SetPort("nope", tag=1))
        with pytest.raises(RowNotFound, match="port nope"):
            await client.transact(DeletePort("nope", if_exists=False))
        with pytest.raises(RowNotFound, match="bridge brzz"):
            await client.transact(AddPort("brzz", "te9"))
        with pytest.raises(ReferentialIntegrityViolation, match="nonexistent row"):
            await client.transact(DanglingPort("brte", "te-bad"))
    finally:
        await client.transact(DeleteBridge("brte"))


@dataclass(frozen=True)
class DanglingPort:
    """A command of our own: a Port whose Interface does not exist (the server must refuse)."""

    bridge: str
    name: str

    def reads(self) -> list[Select]:
        return []

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        missing = Uuid("00000000-0000-4000-8000-000000000001")
        port = txn.insert("Port", {"name": self.name, "interfaces": {missing}})
        txn.mutate("Bridge", (("name", "==", self.bridge),), [("ports", "insert", {port})])


async def test_concurrent_writers_converge(client: OVSDBClient) -> None:
    """Ensures racing on the same bridge: guards fail, commands re-read and retry, all succeed."""
    await client.transact(EnsureBridge("brtc", datapath_type="dummy"))
    try:
        results = await asyncio.gather(
            *(client.transact(AddPort("brtc", f"tc{i}", type="dummy")) for i in range(8))
        )
        assert all(r.inserted for r in results)
        monitor = await client.monitor({"Bridge": ["name", "ports"]})
        [bridge] = [r for r in monitor.rows("Bridge").values() if r["name"] == "brtc"]
        assert len(bridge["ports"]) == 9  # 8 + the bridge's own port
    finally:
        await client.transact(DeleteBridge("brtc"))
