"""minimum_bandwidth through a REAL neutron 29 server's REST API, as neutron's openvswitch QoS
driver enforces it: per port a Queue (``min-rate``, numbered by the port's ofport) in one
linux-htb QoS on br-phys' NIC, and a br-int flow that puts the port's traffic on that queue.

One hypervisor (host-a, ``[agent] extensions = qos``), a VLAN network on physnet1 and a vxlan
one. Checked in OVS itself (ovs-vsctl's Queue / QoS / Port rows, br-int's flows, and
``ofproto/trace`` of a frame the VM sends: ``skb_priority`` set as it leaves by the NIC),
through: a port created with a policy, moved to another policy (plus an ingress rule neutron's
driver does not enforce: reported), a rule changed while no bound port uses it (neutron rejects
it otherwise) and the policy attached again, detached (rows gone), a tunnelled port (reported,
no queue), and the port deleted (rows gone).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from typing import Any

import pytest
from neutron_world import (
    PHYSICAL_BRIDGE,
    Hypervisor,
    HypervisorFactory,
    in_thread,
    poll,
    wait_agents_alive,
)
from neutron_world import wait_port_status as wait_status
from server.neutron_server import NeutronServer

pytestmark = pytest.mark.integration

VLAN_NET = {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
VXLAN_NET = {"provider:network_type": "vxlan"}
UPLINK = f"{PHYSICAL_BRIDGE}-up"  # the sandbox's NIC on br-phys
WITHIN = 10.0
MIN_RULE = "minimum_bandwidth_rule"


def queues(host: Hypervisor) -> dict[str, dict[str, str]]:
    """The minimum-bandwidth Queue rows by neutron port id: uuid, queue-num, min-rate."""
    out = host.sandbox.vsctl("--format=csv", "--no-headings", "--data=bare",
                             "--columns=_uuid,external_ids,other_config", "find", "Queue",
                             "external_ids:type=minimum_bandwidth")  # fmt: skip
    rows = {}
    for uuid, external, other in csv.reader(out.splitlines()):
        ext = dict(item.split("=", 1) for item in external.split())
        config = dict(item.split("=", 1) for item in other.split())
        rows[ext["port"]] = {"uuid": uuid, "queue-num": ext["queue-num"], **config}
    return rows


def qos_rows(host: Hypervisor) -> list[list[str]]:
    """[uuid, type, queues] of each minimum-bandwidth QoS row."""
    out = host.sandbox.vsctl("--format=csv", "--no-headings", "--data=bare",
                             "--columns=_uuid,type,queues", "find", "QoS",
                             "external_ids:_type=minimum_bandwidth")  # fmt: skip
    return list(csv.reader(out.splitlines()))


def min_rate(host: Hypervisor, port_id: str) -> str | None:
    return queues(host).get(port_id, {}).get("min-rate")


def queue_flows(host: Hypervisor) -> list[str]:
    return [flow for flow in host.flows() if "set_queue:" in flow]


def trace(host: Hypervisor, port: dict[str, Any]) -> str:
    """``ofproto/trace`` of a broadcast ARP request the VM sends."""
    ofport, mac = host.ofport(port["id"]), port["mac_address"]
    ip = port["fixed_ips"][0]["ip_address"]
    packet = (f"in_port={ofport},arp,dl_src={mac},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,"
              f"arp_sha={mac},arp_spa={ip},arp_tpa=10.41.0.254")  # fmt: skip
    return host.sandbox.appctl("ofproto/trace", "br-int", packet)


def datapath_port(host: Hypervisor, name: str) -> int:
    match = re.search(rf"\b{re.escape(name)} \d+/(\d+)", host.sandbox.appctl("dpif/show"))
    assert match, name
    return int(match.group(1))


async def rest(server: NeutronServer, method: str, path: str, kind: str, **body: Any) -> Any:
    call = {"POST": server.post, "PUT": server.put}[method]
    return (await in_thread(call, path, {kind: body}))[kind]


async def until(what: str, fetch: Callable[[], Any], want: Any) -> None:
    await poll(fetch, lambda got: got == want, within=WITHIN, what=f"{what} == {want!r}")


async def policy_with(server: NeutronServer, name: str, *rules: dict[str, Any]) -> str:
    policy = await rest(server, "POST", "/v2.0/qos/policies", "policy", name=name)
    for rule in rules:
        await rest(server, "POST", f"/v2.0/qos/policies/{policy['id']}/{MIN_RULE}s", MIN_RULE,
                   **rule)  # fmt: skip
    return str(policy["id"])


async def test_minimum_bandwidth_queue_attach_move_change_detach_tunnel_and_delete(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    network = await in_thread(server.create_network, **VLAN_NET)
    tunnelled = await in_thread(server.create_network, **VXLAN_NET)
    policies: list[str] = []
    try:
        subnet = await in_thread(server.create_subnet, network["id"], "10.41.0.0/24")
        tun_subnet = await in_thread(server.create_subnet, tunnelled["id"], "10.42.0.0/24")
        silver = await policy_with(server, "silver", {"min_kbps": 1000})
        gold = await policy_with(server, "gold", {"min_kbps": 3000},
                                 {"min_kbps": 500, "direction": "ingress"})  # fmt: skip
        policies += [silver, gold]
        host = await hypervisors("host-a", extensions=["qos"])
        await wait_agents_alive(server, ["host-a"])
        core = host.agent.core
        assert core is not None

        # 1. a VM port on the VLAN network created with silver: its queue on the NIC's QoS
        port = await in_thread(server.create_port, network["id"], "host-a",
                               qos_policy_id=silver,
                               fixed_ips=[{"subnet_id": subnet["id"]}])  # fmt: skip
        host.plug(port)
        await wait_status(server, port["id"], "ACTIVE")
        await until("silver's min-rate", lambda: min_rate(host, port["id"]), "1000000")
        ofport = host.ofport(port["id"])
        (row,) = queues(host).values()
        assert row["queue-num"] == str(ofport) and row["max-rate"] == str(2**35 - 1)
        await until("one QoS", lambda: len(qos_rows(host)), 1)
        (qos,) = qos_rows(host)
        assert qos[1] == "linux-htb" and qos[2] == f"{ofport}={row['uuid']}"
        await until("the NIC's QoS", lambda: host.sandbox.vsctl("get", "Port", UPLINK, "qos")
                    .strip(), qos[0])  # fmt: skip
        patch = host.sandbox.vsctl("get", "Port", f"phy-{PHYSICAL_BRIDGE}", "qos").strip()
        assert patch == "[]"  # the patch port is not an egress NIC
        await until("the set_queue flow", lambda: len(queue_flows(host)), 1)
        (flow,) = queue_flows(host)
        assert f"priority=200,reg4=0,in_port={ofport} " in flow, flow
        assert f"actions=set_queue:{ofport},set_field:0x1/0x1->reg4,resubmit(,0)" in flow, flow
        traced = trace(host, port)
        datapath = traced.split("Datapath actions:")[1]
        nic = datapath_port(host, UPLINK)
        assert re.search(rf"set\(skb_priority\({ofport:#x}\)\).*\b{nic}\b", datapath), traced

        # 2. moved to gold: the same Queue row, gold's rate; gold's ingress rule is reported
        await in_thread(server.update_port, port["id"], qos_policy_id=gold)
        await until("gold's min-rate", lambda: min_rate(host, port["id"]), "3000000")
        assert queues(host)[port["id"]]["uuid"] == row["uuid"]
        await poll(lambda: core.extension_problems.get(port["id"], ()),
                   lambda problems: any("minimum_bandwidth ingress" in p for p in problems),
                   within=WITHIN, what="gold's ingress minimum reported")  # fmt: skip

        # 3. silver's rule changed (no bound port uses silver: neutron allows it), attached
        silver_rules = (await in_thread(server.get, f"/v2.0/qos/policies/{silver}"))["policy"]
        (rule,) = silver_rules["rules"]
        await rest(server, "PUT", f"/v2.0/qos/policies/{silver}/{MIN_RULE}s/{rule['id']}",
                   MIN_RULE, min_kbps=2000)  # fmt: skip
        await in_thread(server.update_port, port["id"], qos_policy_id=silver)
        await until("silver's new min-rate", lambda: min_rate(host, port["id"]), "2000000")
        await poll(lambda: core.extension_problems.get(port["id"], ()), lambda p: not p,
                   within=WITHIN, what="no problem with silver")  # fmt: skip

        # 4. a tunnelled port: neutron enforces minimum bandwidth on physical networks only
        other = await in_thread(server.create_port, tunnelled["id"], "host-a",
                                qos_policy_id=silver,
                                fixed_ips=[{"subnet_id": tun_subnet["id"]}])  # fmt: skip
        host.plug(other)
        await wait_status(server, other["id"], "ACTIVE")
        await poll(lambda: core.extension_problems.get(other["id"], ()),
                   lambda problems: any("only on vlan/flat networks" in p for p in problems),
                   within=WITHIN, what="the tunnelled port's minimum reported")  # fmt: skip
        assert set(queues(host)) == {port["id"]}
        assert len(queue_flows(host)) == 1

        # 5. detached: no queue left, so no QoS either, the NIC's qos cleared
        await in_thread(server.update_port, port["id"], qos_policy_id=None)
        await until("no queue", lambda: queues(host), {})
        await until("no QoS", lambda: qos_rows(host), [])
        assert host.sandbox.vsctl("get", "Port", UPLINK, "qos").strip() == "[]"
        await until("no set_queue flow", lambda: queue_flows(host), [])

        # 6. gold again, then the port deleted: its rows go with it
        await in_thread(server.update_port, port["id"], qos_policy_id=gold)
        await until("gold's min-rate again", lambda: min_rate(host, port["id"]), "3000000")
        host.unplug(port["id"])
        await in_thread(server.delete_port, port["id"])
        await until("no queue after the delete", lambda: queues(host), {})
        await until("no QoS after the delete", lambda: qos_rows(host), [])
        await until("no set_queue flow after the delete", lambda: queue_flows(host), [])
        assert host.sandbox.vsctl("get", "Port", UPLINK, "qos").strip() == "[]"
    finally:
        for net in (network, tunnelled):
            found = await in_thread(server.get, f"/v2.0/ports?network_id={net['id']}")
            for each in found["ports"]:
                await in_thread(server.delete_port, each["id"])
            await in_thread(server.delete_network, net["id"])
        for policy_id in policies:
            await in_thread(server.delete, f"/v2.0/qos/policies/{policy_id}")
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
