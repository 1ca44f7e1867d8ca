"""minimum_bandwidth on a real OVS: the agent (``[agent] extensions = qos``) against the
simulator writes neutron's Queue and linux-htb QoS rows on br-phys' NIC and the br-int flow
that puts the port's traffic on its queue; a rule change, an agent restart (no write), a
policy detached and the last port gone (no row left)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from agent_world import (
    agent_config,
    ip,
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

from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import CloudQosRule

pytestmark = pytest.mark.integration

UPLINK = "br-phys-up"
MIN_BW = "external_ids:type=minimum_bandwidth"


@pytest.fixture
def sandbox(fresh_sandbox: OVSSandbox) -> OVSSandbox:
    fresh_sandbox.add_physical_bridge("br-phys", UPLINK)
    return fresh_sandbox


def queues(sandbox: OVSSandbox) -> dict[str, dict[str, str]]:
    """The minimum-bandwidth Queue rows by neutron port id: uuid, min-rate, queue-num."""
    out = sandbox.vsctl("--format=csv", "--no-headings", "--data=bare",
                        "--columns=_uuid,external_ids,other_config",
                        "find", "Queue", MIN_BW)  # fmt: skip
    rows = {}
    for uuid, external, other in csv.reader(out.splitlines()):
        ext = dict(item.split("=", 1) for item in external.split())
        oc = dict(item.split("=", 1) for item in other.split())
        rows[ext["port"]] = {"uuid": uuid, "queue-num": ext["queue-num"], **oc}
    return rows


def qos_rows(sandbox: OVSSandbox) -> list[dict[str, str]]:
    out = sandbox.vsctl("--format=csv", "--no-headings", "--data=bare",
                        "--columns=_uuid,type,queues", "find", "QoS",
                        "external_ids:_type=minimum_bandwidth")  # fmt: skip
    return [
        dict(zip(("uuid", "type", "queues"), row, strict=True))
        for row in csv.reader(out.splitlines())
    ]


def port_qos(sandbox: OVSSandbox, name: str) -> str:
    return sandbox.vsctl("get", "Port", name, "qos").strip()


def versions(sandbox: OVSSandbox) -> object:
    """Every Queue and QoS row's ``_version``, and the NIC's Port row's: OVSDB changes it with
    any write to the row (ovs-vsctl cannot show it; ovsdb-client can)."""
    ops = [{"op": "select", "table": table, "where": where, "columns": ["_uuid", "_version"]}
           for table, where in (("Queue", []), ("QoS", []),
                                ("Port", [["name", "==", UPLINK]]))]  # fmt: skip
    out = sandbox.run("ovsdb-client", "transact", sandbox.ovsdb_connection,
                      json.dumps(["Open_vSwitch", *ops]))  # fmt: skip
    return json.loads(out)


async def test_minimum_bandwidth_queues_follow_the_policy(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    rules = (CloudQosRule(type="minimum_bandwidth", min_kbps=1000),)
    world, policy = topology(3).with_qos_policy(rules, ports=2)  # port 0 flat, 1-2 vlan
    config = agent_config(sandbox, rabbit_vhost, state_path, extensions=["qos"])
    async with simulator(rabbit_vhost, world) as sim:
        async with running_agent(config, unplug_grace=0.5) as agent:
            plug(sandbox, range(3))
            core = agent.core
            assert core is not None
            await wait_until(lambda: core.counts()["wired"] == 3, what="3 ports wired")
            await wait_until(lambda: len(queues(sandbox)) == 2, what="2 queues")
            await agent.settled()
            await agent.queue_writer.idle()
            assert agent.queue_writer.transactions >= 1
            numbers = {port_id(i): ofport(sandbox, tap(i)) for i in range(3)}
            rows = queues(sandbox)
            assert set(rows) == {port_id(0), port_id(1)}
            for port in (port_id(0), port_id(1)):
                assert rows[port]["min-rate"] == "1000000"
                assert rows[port]["max-rate"] == str(2**35 - 1)
                assert rows[port]["queue-num"] == str(numbers[port])
            (qos,) = qos_rows(sandbox)
            assert qos["type"] == "linux-htb"
            mapped = dict(item.split("=") for item in qos["queues"].split())
            assert mapped == {str(numbers[p]): rows[p]["uuid"] for p in rows}
            assert port_qos(sandbox, UPLINK) == qos["uuid"]  # the NIC, not the patch port
            assert port_qos(sandbox, "phy-br-phys") == "[]"

            # br-int: the port's traffic on its queue, then table 0 again
            n = numbers[port_id(1)]
            (flow,) = [f for f in sandbox.dump_flows("br-int") if f"set_queue:{n}" in f]
            assert f"priority=200,reg4=0,in_port={n} " in flow
            assert f"actions=set_queue:{n},set_field:0x1/0x1->reg4,resubmit(,0)" in flow
            other = numbers[port_id(2)]  # no policy: no queue
            assert not [f for f in sandbox.dump_flows("br-int") if f"set_queue:{other}," in f]
            arp = (f"in_port={n},arp,dl_src={mac(1)},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,"
                   f"arp_sha={mac(1)},arp_spa={ip(1)},arp_tpa=10.0.0.254")  # fmt: skip
            trace = sandbox.appctl("ofproto/trace", "br-int", arp)
            assert f"set_queue:{n}" in trace
            assert 'bridge("br-phys")' in trace
            datapath = trace.split("Datapath actions:")[1]
            uplink = str(sandbox_dp_port(sandbox, UPLINK))
            assert re.search(rf"set\(skb_priority\({n:#x}\)\)[^\n]*\b{uplink}\b", datapath), trace

            # the rule changes: the same rows, a new min-rate
            await sim.update_qos_policy(
                policy, [CloudQosRule(type="minimum_bandwidth", min_kbps=2500)]
            )
            await wait_until(lambda: queues(sandbox)[port_id(1)]["min-rate"] == "2500000",
                             what="min-rate updated")  # fmt: skip
            assert {p: r["uuid"] for p, r in queues(sandbox).items()} == {
                p: r["uuid"] for p, r in rows.items()
            }
            await agent.queue_writer.idle()
            before = versions(sandbox)

        # an agent restart: the rows are right, nothing is written
        async with running_agent(config, unplug_grace=0.5) as agent:
            restarted = agent.core
            assert restarted is not None
            await wait_until(lambda: restarted.counts()["wired"] == 3, what="rewired")
            await agent.settled()
            writer = agent.queue_writer
            await wait_until(lambda: writer.reconciled >= 1, what="queues read back")
            await agent.settled()
            await writer.idle()
            assert writer.transactions == 0  # read, found right: no write
            assert versions(sandbox) == before

            # the policy detached from port 1 (port_update): its queue goes, port 0's stays
            port1 = sim.ports[port_id(1)].model_copy(update={"qos_policy_id": None})
            sim.add_port(port1)
            await sim.notify_port_update(port_id(1))
            await wait_until(lambda: set(queues(sandbox)) == {port_id(0)}, what="queue removed")
            (qos,) = qos_rows(sandbox)
            assert qos["queues"] == f"{numbers[port_id(0)]}={queues(sandbox)[port_id(0)]['uuid']}"
            await agent.settled()
            assert not [f for f in sandbox.dump_flows("br-int") if f"set_queue:{n}," in f]

            # the last port with a queue deleted: no Queue, no QoS, the NIC's qos cleared
            unplug(sandbox, [0])
            await wait_until(lambda: not queues(sandbox) and not qos_rows(sandbox),
                             what="rows gone")  # fmt: skip
            assert port_qos(sandbox, UPLINK) == "[]"
            assert not [f for f in sandbox.dump_flows("br-int") if "set_queue" in f]


def sandbox_dp_port(sandbox: OVSSandbox, name: str) -> int:
    """The datapath port number of an interface (what 'Datapath actions' name)."""
    out = sandbox.appctl("dpif/show")
    match = re.search(rf"\b{re.escape(name)} \d+/(\d+)", out)
    assert match, out
    return int(match.group(1))
