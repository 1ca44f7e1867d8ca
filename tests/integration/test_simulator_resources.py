"""The simulator's QoS policies and trunks: ``pull`` / ``bulk_pull`` (neutron's
ResourcesPullRpcCallback), the trunk RPC (TrunkSkeleton) and the resource pushes, over the real
RabbitMQ, read through aovs' own parsers (aovs.rpc.resources) as the agent reads them; and the
primitives compared with those neutron 29's own objects make (when its venv is installed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import RemoteError
from aovs.rpc.resources import (
    QOS_POLICY,
    SUBPORT,
    TRUNK,
    QosPolicyPush,
    ResourcePush,
    ResourcePushConsumer,
    SubPortPush,
    TrunkPush,
    bulk_pull,
    pull,
)
from aovs.rpc.server_api import NeutronServerApi
from aovs.testing.cloud import (
    CloudQosRule,
    CloudSubPort,
    SimulatedCloud,
    SimulatedCloudError,
)
from aovs.testing.simulator import (
    NeutronServerSimulator,
    qos_policy_primitive,
    trunk_primitive,
)

pytestmark = pytest.mark.integration

HOST = "compute-res"
RULES = (
    CloudQosRule(type="bandwidth_limit", direction="egress", max_kbps=10000),
    CloudQosRule(type="dscp_marking", dscp_mark=26),
    CloudQosRule(type="minimum_bandwidth", direction="egress", min_kbps=1000),
)


def cloud() -> tuple[SimulatedCloud, str]:
    """6 ports, a QoS policy on the first 4, two trunks of 2 subports each (6 more ports)."""
    base, policy_id = SimulatedCloud.generate(6, networks=3).with_qos_policy(RULES, ports=4)
    return base.with_trunks(2, 2), policy_id


CLOUD, POLICY_ID = cloud()
TRUNK_IDS = list(CLOUD.trunks)


@pytest.fixture
async def transport(rabbit_vhost: str) -> AsyncIterator[RpcTransport]:
    async with RpcTransport(rabbit_vhost) as transport:
        yield transport


@pytest.fixture
async def sim(rabbit_vhost: str) -> AsyncIterator[NeutronServerSimulator]:
    async with NeutronServerSimulator(CLOUD, rabbit_vhost) as sim:
        yield sim


async def test_qos_policy_pulled_and_bulk_pulled(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    answer = await bulk_pull(transport, QOS_POLICY, [POLICY_ID, "no-such-policy"], timeout=5)
    assert isinstance(answer, QosPolicyPush) and answer.event_type == "updated"
    (policy,) = answer.policies  # the unknown id is simply not returned, as by neutron
    assert policy.id == POLICY_ID and policy.revision == 1
    by_type = {rule.type: rule for rule in policy.rules}
    assert set(by_type) == {"bandwidth_limit", "dscp_marking", "minimum_bandwidth"}
    limit = by_type["bandwidth_limit"]
    assert (limit.direction, limit.max_kbps, limit.max_burst_kbps) == ("egress", 10000, None)
    assert by_type["dscp_marking"].dscp_mark == 26
    assert by_type["minimum_bandwidth"].min_kbps == 1000
    one = await pull(transport, QOS_POLICY, POLICY_ID, timeout=5)
    assert isinstance(one, QosPolicyPush) and one.policies == (policy,)
    gone = await pull(transport, QOS_POLICY, "no-such-policy", timeout=5)
    assert gone.event_type == "deleted"
    assert sim.calls["bulk_pull"] == 1 and sim.calls["pull"] == 2


async def test_details_name_port_and_network_policies(
    transport: RpcTransport, rabbit_vhost: str
) -> None:
    network_id = CLOUD.ports[5].network_id
    networks = dict(CLOUD.networks)
    networks[network_id] = networks[network_id].model_copy(update={"qos_policy_id": POLICY_ID})
    world = SimulatedCloud.model_validate({**dict(CLOUD), "networks": networks})
    async with NeutronServerSimulator(world, rabbit_vhost):
        api = NeutronServerApi(transport, HOST, rpc_response_timeout=5)
        with_own, without = CLOUD.ports[0].port_id, CLOUD.ports[4].port_id
        raw = await transport.call(
            "q-plugin", "get_devices_details_list_and_failed_devices",
            {"devices": [with_own, without, CLOUD.ports[5].port_id], "agent_id": "a",
             "host": HOST}, version="1.5", timeout=5,
        )  # fmt: skip
        wire = {d["device"]: d for d in raw["devices"]}
        assert wire[with_own]["qos_policy_id"] == POLICY_ID
        assert wire[without]["qos_policy_id"] is None
        assert wire[CLOUD.ports[5].port_id]["qos_network_policy_id"] == POLICY_ID
        details = await api.get_devices_details([with_own, without, CLOUD.ports[5].port_id])
        parsed = {d: getattr(o, "qos_policy_id", "?") for d, o in details.outcomes.items()}
        # the network's policy applies to a port with none of its own (aovs folds it in)
        assert parsed == {with_own: POLICY_ID, without: None, CLOUD.ports[5].port_id: POLICY_ID}


async def test_trunk_pulled_by_parent_port(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    trunk_id = TRUNK_IDS[1]
    trunk = CLOUD.trunks[trunk_id]
    answer = await pull(transport, TRUNK, trunk.port_id, timeout=5)  # get_trunk_details
    assert isinstance(answer, TrunkPush) and answer.event_type == "updated"
    (value,) = answer.trunks
    assert (value.id, value.port_id, value.status) == (trunk_id, trunk.port_id, "DOWN")
    assert sorted((s.port_id, s.segmentation_id) for s in value.sub_ports) == sorted(
        (s.port_id, s.segmentation_id) for s in trunk.sub_ports
    )
    # a trunk is pulled by its parent port, not by its own id (trunk_by_port_provider)
    assert (await pull(transport, TRUNK, trunk_id, timeout=5)).event_type == "deleted"
    listed = await bulk_pull(transport, TRUNK, TRUNK_IDS, timeout=5)
    assert isinstance(listed, TrunkPush) and {t.id for t in listed.trunks} == set(TRUNK_IDS)
    subports = await transport.call(
        "q-plugin", "bulk_pull",
        {"resource_type": SUBPORT, "version": "1.0", "filter_kwargs": {"trunk_id": trunk_id}},
        version="1.1", timeout=5,
    )  # fmt: skip
    assert sorted(s["versioned_object.data"]["port_id"] for s in subports) == sorted(
        s.port_id for s in trunk.sub_ports
    )


async def test_pull_errors_as_neutron_sends_them(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    # SubPort has no pull provider in neutron: CallbackNotFound, an expected exception
    with pytest.raises(RemoteError) as raised:
        await transport.call(
            "q-plugin", "pull",
            {"resource_type": SUBPORT, "version": "1.0", "resource_id": "x"},
            version="1.1", timeout=5,
        )  # fmt: skip
    assert raised.value.exc_type == "CallbackNotFound"
    with pytest.raises(RemoteError) as raised:
        await transport.call(
            "q-plugin", "bulk_pull",
            {"resource_type": QOS_POLICY, "version": "1.99", "filter_kwargs": {}},
            version="1.1", timeout=5,
        )  # fmt: skip
    assert raised.value.exc_type == "InvalidTargetVersion"
    with pytest.raises(RemoteError) as raised:
        await transport.call(
            "q-plugin", "bulk_pull",
            {"resource_type": TRUNK, "version": "1.1", "filter_kwargs": {"colour": "red"}},
            version="1.1", timeout=5,
        )  # fmt: skip
    assert raised.value.exc_type == "InvalidInput"


async def trunk_call(transport: RpcTransport, method: str, **args: Any) -> Any:
    return await transport.call("trunk", method, args, version="1.0", namespace="trunk",
                                timeout=5)  # fmt: skip


async def test_trunk_rpc_binds_subports_and_records_status(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    trunk_id = TRUNK_IDS[0]
    trunk = CLOUD.trunks[trunk_id]
    sim.ports[trunk.port_id] = sim.ports[trunk.port_id].model_copy(update={"binding_host": HOST})
    first = trunk.sub_ports[0]
    listed = [{"port_id": first.port_id, "trunk_id": trunk_id, "segmentation_type": "vlan",
               "segmentation_id": first.segmentation_id},
              {"port_id": "x", "trunk_id": "no-such-trunk", "segmentation_type": "vlan",
               "segmentation_id": 7}]  # fmt: skip
    reply = await trunk_call(transport, "update_subport_bindings", subports=listed)
    assert list(reply) == [trunk_id]  # the unknown trunk is left out
    (bound,) = reply[trunk_id]
    assert bound["id"] == first.port_id
    assert bound["mac_address"] == sim.ports[first.port_id].mac_address
    assert (bound["binding:host_id"], bound["device_owner"]) == (HOST, "trunk:subport")
    assert sim.trunks[trunk_id].status == "BUILD"
    assert sim.ports[first.port_id].binding_host == HOST  # the parent's host
    assert sim.device_details(first.port_id, HOST)["device_owner"] == "trunk:subport"
    assert await trunk_call(transport, "update_trunk_status", trunk_id=trunk_id,
                            status="ACTIVE") is None  # fmt: skip
    assert sim.trunks[trunk_id].status == "ACTIVE"
    assert sim.trunk_status_reports == [(trunk_id, "ACTIVE")]
    pulled = await pull(transport, TRUNK, trunk.port_id, timeout=5)
    assert isinstance(pulled, TrunkPush) and pulled.trunks[0].status == "ACTIVE"
    # without the namespace the call is not the trunk plugin's (oslo's dispatcher)
    with pytest.raises(RemoteError):
        await transport.call("trunk", "update_trunk_status",
                             {"trunk_id": trunk_id, "status": "ERROR"}, version="1.0",
                             timeout=5)  # fmt: skip
    assert sim.trunks[trunk_id].status == "ACTIVE"


async def test_changes_pushed_on_the_resource_topics(
    transport: RpcTransport, sim: NeutronServerSimulator
) -> None:
    received: asyncio.Queue[ResourcePush] = asyncio.Queue()
    versions = {QOS_POLICY: "1.10", TRUNK: "1.1", SUBPORT: "1.0"}
    consumer = ResourcePushConsumer(transport, HOST, received.put_nowait, resources=versions)
    await consumer.start()
    try:
        await sim.update_qos_policy(POLICY_ID, RULES[1:2])
        push = await asyncio.wait_for(received.get(), 5)
        assert isinstance(push, QosPolicyPush) and push.event_type == "updated"
        assert push.policies[0].revision == 2
        assert [r.type for r in push.policies[0].rules] == ["dscp_marking"]
        trunk_id = TRUNK_IDS[0]
        spare = CLOUD.ports[5].port_id
        await sim.add_subports(trunk_id, [CloudSubPort(port_id=spare, segmentation_id=300)])
        added = await asyncio.wait_for(received.get(), 5)
        assert isinstance(added, SubPortPush) and added.event_type == "created"
        assert [(s.port_id, s.trunk_id, s.segmentation_id) for s in added.subports] == [
            (spare, trunk_id, 300)
        ]
        await sim.remove_subports(trunk_id, [spare])
        removed = await asyncio.wait_for(received.get(), 5)
        assert isinstance(removed, SubPortPush) and removed.event_type == "deleted"
        assert spare not in {s.port_id for s in sim.trunks[trunk_id].sub_ports}
        assert consumer.malformed == 0
    finally:
        await consumer.stop()


def test_cloud_checks_qos_and_trunk_references() -> None:
    data = json.loads(CLOUD.to_json())
    data["ports"][0]["qos_policy_id"] = "missing"
    with pytest.raises(SimulatedCloudError, match="unknown QoS policy missing"):
        SimulatedCloud.parse(data)
    data = json.loads(CLOUD.to_json())
    first, second = TRUNK_IDS
    data["trunks"][second]["sub_ports"][0]["port_id"] = data["trunks"][first]["port_id"]
    with pytest.raises(SimulatedCloudError, match="is in trunk"):
        SimulatedCloud.parse(data)
    data = json.loads(CLOUD.to_json())
    data["qos_policies"][POLICY_ID]["rules"] = [{"type": "dscp_marking", "dscp_mark": 27}]
    with pytest.raises(SimulatedCloudError, match="even dscp_mark"):
        SimulatedCloud.parse(data)
    assert SimulatedCloud.parse(json.loads(CLOUD.to_json())) == CLOUD


# -- the primitives, against neutron 29's own objects ------------------------------------------
NEUTRON_PRIMITIVES = """
import json, sys
from neutron.objects.qos import policy, rule
from neutron.objects import trunk
spec = json.loads(sys.stdin.read())
kinds = {"QosBandwidthLimitRule": rule.QosBandwidthLimitRule,
         "QosDscpMarkingRule": rule.QosDscpMarkingRule,
         "QosMinimumBandwidthRule": rule.QosMinimumBandwidthRule}
def data(p): return p["versioned_object.data"]
q = spec["policy"]
rules = [kinds[r["versioned_object.name"]](**data(r)) for r in data(q)["rules"]]
fields = {k: v for k, v in data(q).items() if k not in ("rules", "created_at", "updated_at")}
made = policy.QosPolicy(rules=rules, **fields)
t = spec["trunk"]
subs = [trunk.SubPort(**data(s)) for s in data(t)["sub_ports"]]
fields = {k: v for k, v in data(t).items() if k not in ("sub_ports", "created_at", "updated_at")}
made_trunk = trunk.Trunk(sub_ports=subs, **fields)
print(json.dumps([made.obj_to_primitive(target_version="1.10"),
                  made_trunk.obj_to_primitive(target_version="1.1")]))
"""


def neutron_python() -> Path | None:
    found = sorted(Path.home().glob(".cache/aovs/neutron-venv-*/bin/python"))
    return found[-1] if found else None


def canonical(primitive: Any) -> Any:
    """A primitive with its ``changes`` as a set (oslo lists them in no fixed order) and the
    timestamps left out (neutron's objects made here have none)."""
    if isinstance(primitive, dict):
        return {
            key: (sorted(value) if key == "versioned_object.changes" else canonical(value))
            for key, value in primitive.items()
            if key not in ("created_at", "updated_at")
        }
    if isinstance(primitive, list):
        return [canonical(item) for item in primitive]
    return primitive


def without_timestamps(primitive: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in primitive["versioned_object.data"].items()
            if k not in ("created_at", "updated_at")}  # fmt: skip
    return {**primitive, "versioned_object.data": data,
            "versioned_object.changes": sorted(data)}  # fmt: skip


def test_primitives_are_neutrons() -> None:
    python = neutron_python()
    if python is None:
        pytest.skip("neutron's venv is not installed (tests/neutron/server/install-neutron)")
    ours_policy = qos_policy_primitive(POLICY_ID, CLOUD.qos_policies[POLICY_ID])
    trunk_id = TRUNK_IDS[0]
    ours_trunk = trunk_primitive(trunk_id, CLOUD.trunks[trunk_id])
    assert ours_policy["versioned_object.data"]["created_at"].endswith("Z")
    done = subprocess.run(
        [str(python), "-c", NEUTRON_PRIMITIVES],
        input=json.dumps({"policy": ours_policy, "trunk": ours_trunk}),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs_policy, theirs_trunk = json.loads(done.stdout.strip().splitlines()[-1])
    assert canonical(theirs_policy) == canonical(without_timestamps(ours_policy))
    assert canonical(theirs_trunk) == canonical(without_timestamps(ours_trunk))
