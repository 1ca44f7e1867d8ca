"""QoS policies made through a REAL neutron 29 server's REST API reach OVS through aovs' ``qos``
agent extension: pulled (``bulk_pull``) when a port names an unknown policy, then kept current
by the server's ``neutron-vo-QosPolicy-1.10`` pushes.

One hypervisor (host-a, ``[agent] extensions = qos``), one VLAN network on physnet1 and one VM
port. Checked in OVS itself: the tap's ``ingress_policing_rate`` / ``_burst`` with ovs-vsctl
(egress bandwidth limit), neutron's DSCP flows in br-int's table 0 and ``ofproto/trace`` of a
packet the VM sends (its IP TOS rewritten on its way out of br-phys' uplink), through: policy on
the port at creation, rules changed, an ingress limit added (a meter) and removed, the
policy detached, the network's policy applying instead, and the port deleted. Then ingress
bandwidth and packet rate limits: br-int's meters (``dump-meters``) and the flows naming them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from neutron_world import Hypervisor, HypervisorFactory, in_thread, poll, wait_agents_alive
from neutron_world import wait_port_status as wait_status
from server.neutron_server import NeutronServer

from aovs.rpc.resources import QosPolicyPush

pytestmark = pytest.mark.integration

VLAN_NET = {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
WITHIN = 10.0  # s for an API change to show in OVS (expected ~1 s; the box is shared)
OUTSIDE_MAC = "fa:16:3e:99:99:99"


def policing(host: Hypervisor, tap: str) -> tuple[int, int]:
    """The tap's (ingress_policing_rate, ingress_policing_burst), as ovs-vsctl reads them."""
    rate = host.sandbox.vsctl("get", "Interface", tap, "ingress_policing_rate").strip()
    burst = host.sandbox.vsctl("get", "Interface", tap, "ingress_policing_burst").strip()
    return int(rate), int(burst)


def dscp_flows(host: Hypervisor, ofport: int) -> list[str]:
    """br-int's table-0 flows (ovs-ofctl omits ``table=0``) that mark the DSCP of what
    ``ofport`` sends."""
    return [
        flow
        for flow in host.flows()
        if "table=" not in flow and "reg2=0" in flow and re.search(rf"in_port={ofport}\b", flow)
    ]


def datapath_actions(host: Hypervisor, packet: str) -> str:
    """The trace's datapath actions for ``packet`` on br-int, through conntrack (new), every
    pass's joined by ``;``."""
    out = host.sandbox.appctl("ofproto/trace", "br-int", packet, "--ct-next", "trk,new")
    # the first pass (before conntrack's recirculation) writes the TOS, the last outputs
    return " ; ".join(re.findall(r"^Datapath actions: (.*)$", out, re.M))


def tos_of(actions: str) -> int | None:
    """The IPv4 TOS the datapath writes (``set(ipv4(tos=0x68/0xfc))``), None if untouched."""
    match = re.search(r"ipv4\(tos=(0x[0-9a-f]+)/0xfc\)", actions)
    return int(match.group(1), 16) if match else None


async def rest(server: NeutronServer, method: str, path: str, kind: str, **body: Any) -> Any:
    """One REST call on ``{kind: body}`` in a thread; the answer's ``kind`` object."""
    call = {"POST": server.post, "PUT": server.put}[method]
    return (await in_thread(call, path, {kind: body}))[kind]


async def until(what: str, fetch: Callable[[], Any], want: Any) -> None:
    await poll(fetch, lambda got: got == want, within=WITHIN, what=f"{what} == {want!r}")


async def test_qos_policy_attach_change_detach_network_policy_and_delete(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    assert "qos" in await in_thread(server.extensions), "the server has no QoS API"
    network = await in_thread(server.create_network, **VLAN_NET)
    policy_id = ""
    try:
        subnet = await in_thread(server.create_subnet, network["id"], "10.40.0.0/24")
        # made before the agent starts: it never saw a push of it, so it must pull it
        policy = await rest(server, "POST", "/v2.0/qos/policies", "policy", name="gold")
        policy_id = policy["id"]
        rules = f"/v2.0/qos/policies/{policy_id}"
        bw_rule, dscp_rule = "bandwidth_limit_rule", "dscp_marking_rule"
        bw = await rest(server, "POST", f"{rules}/{bw_rule}s", bw_rule, max_kbps=1000,
                        max_burst_kbps=800)  # fmt: skip
        dscp = await rest(server, "POST", f"{rules}/{dscp_rule}s", dscp_rule, dscp_mark=26)

        host = await hypervisors("host-a", extensions=["qos"])
        received: list[object] = []
        apply = host.agent._apply

        def recording_apply(item: object, now: float) -> None:
            received.append(item)
            apply(item, now)

        host.agent._apply = recording_apply  # type: ignore[method-assign]
        await wait_agents_alive(server, ["host-a"])
        # host-a's row may still show an earlier test's agent until this one's first report
        await poll(lambda: server.agents(host="host-a")[0]["configurations"]["extensions"],
                   lambda extensions: extensions == ["qos"], within=30,
                   what="host-a's agent row reporting the qos extension")  # fmt: skip
        # what report_state's resource_versions carries: the server pushes these versions
        assert host.agent.resource_versions == {"AddressGroup": "1.2", "QosPolicy": "1.10"}

        # 1. a VM port created with the policy: pulled, then applied with its flows
        started = time.monotonic()
        port = await in_thread(server.create_port, network["id"], "host-a",
                               qos_policy_id=policy_id,
                               fixed_ips=[{"subnet_id": subnet["id"]}])  # fmt: skip
        assert port["qos_policy_id"] == policy_id and port["binding:vif_type"] == "ovs"
        tap = host.plug(port)
        await wait_status(server, port["id"], "ACTIVE")
        await until("egress policing", lambda: policing(host, tap), (1000, 800))
        ofport = host.ofport(port["id"])
        ip = port["fixed_ips"][0]["ip_address"]
        packet = (f"in_port={ofport},dl_src={port['mac_address']},dl_dst={OUTSIDE_MAC},udp,"
                  f"nw_src={ip},nw_dst=203.0.113.9,nw_tos=0,nw_ttl=64,udp_dst=53")  # fmt: skip
        await until("DSCP flows", lambda: len(dscp_flows(host, ofport)), 2)
        flows = "\n".join(dscp_flows(host, ofport))
        assert "priority=65535" in flows and "set_field:26->ip_dscp" in flows, flows
        assert "resubmit(,0)" in flows and "ipv6" in flows, flows
        actions = datapath_actions(host, packet)
        assert tos_of(actions) == 26 << 2, actions  # marked
        assert re.search(r"push_vlan\(vid=\d+,pcp=0\),\d", actions), actions  # and forwarded
        print(f"\npolicy on a new port -> applied: {time.monotonic() - started:.2f} s")
        pulls = [i for i in received if type(i).__name__ == "_Pulled"]
        assert pulls, "the policy was not pulled"
        sample = host.agent.telemetry.metrics.registry.get_sample_value
        pulled = {"type": "QosPolicy", "source": "pull"}
        assert (sample("aovs_resource_updates_total", pulled) or 0) >= 1
        assert sample("aovs_extension_enabled", {"extension": "qos"}) == 1

        # 2. rules changed: pushed (neutron-vo-QosPolicy-1.10), no port_update needed
        started = time.monotonic()
        await rest(server, "PUT", f"{rules}/{bw_rule}s/{bw['id']}", bw_rule, max_kbps=2000,
                   max_burst_kbps=0)  # fmt: skip
        await rest(server, "PUT", f"{rules}/{dscp_rule}s/{dscp['id']}", dscp_rule, dscp_mark=46)
        await until("egress policing, burst 80 %", lambda: policing(host, tap), (2000, 1600))
        await until("new DSCP", lambda: tos_of(datapath_actions(host, packet)), 46 << 2)
        print(f"rules changed -> applied: {time.monotonic() - started:.2f} s")
        assert any(isinstance(i, QosPolicyPush) for i in received), "no QosPolicy push"

        # 3. an ingress limit joins: a meter (tests below), the other rules stay
        ingress = await rest(server, "POST", f"{rules}/{bw_rule}s", bw_rule, max_kbps=500,
                             direction="ingress")  # fmt: skip
        core = host.agent.core
        assert core is not None
        meter_id = ofport * 4 + 2  # ingress kbps
        await until("the ingress meter", lambda: meters(host), {meter_id: ("kbps", 500, 400)})
        assert policing(host, tap) == (2000, 1600)
        assert not core.extension_problems.get(port["id"])
        await in_thread(server.delete, f"{rules}/{bw_rule}s/{ingress['id']}")
        await until("no meter once the rule is gone", lambda: meters(host), {})

        # 4. detached from the port: no limit, no marking
        await in_thread(server.update_port, port["id"], qos_policy_id=None)
        await until("no policing", lambda: policing(host, tap), (0, 0))
        await until("no DSCP flows", lambda: dscp_flows(host, ofport), [])
        assert tos_of(datapath_actions(host, packet)) is None

        # 5. the network's policy applies to a port without its own
        await rest(server, "PUT", f"/v2.0/networks/{network['id']}", "network",
                   qos_policy_id=policy_id)  # fmt: skip
        await until("network policy's policing", lambda: policing(host, tap), (2000, 1600))
        await until("network policy's DSCP", lambda: tos_of(datapath_actions(host, packet)),
                    46 << 2)  # fmt: skip

        # 6. the port deleted: its marking goes with it
        host.unplug(port["id"])
        await in_thread(server.delete_port, port["id"])
        await until("DSCP flows of a deleted port", lambda: dscp_flows(host, ofport), [])
        assert not any("reg2=0" in flow for flow in host.flows()), host.flows()
        await poll(lambda: port["id"] in core.ports, lambda there: not there, within=WITHIN,
                   what="the port gone from the agent (after its unplug grace)")  # fmt: skip
        assert core.extension_problems == {}
    finally:
        await _clean_up(server, network["id"], policy_id)
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)


async def _clean_up(server: NeutronServer, network_id: str, policy_id: str | None) -> None:
    """The test's ports, network and policy deleted through the API."""
    ports = (await in_thread(server.get, f"/v2.0/ports?network_id={network_id}"))["ports"]
    for each in ports:
        await in_thread(server.delete_port, each["id"])
    await in_thread(server.delete_network, network_id)
    if policy_id:
        await in_thread(server.delete, f"/v2.0/qos/policies/{policy_id}")


METER_LINE = re.compile(r"meter=(\d+) (\w+)(?: burst)?(?: stats)? bands=\s*type=drop rate=(\d+)"
                        r"(?: burst_size=(\d+))?")  # fmt: skip


def meters(host: Hypervisor) -> dict[int, tuple[str, int, int]]:
    """``ovs-ofctl -O OpenFlow13 dump-meters br-int``: id -> (unit, rate, burst)."""
    out = host.sandbox.ofctl("-O", "OpenFlow13", "dump-meters", "br-int")
    return {int(m[1]): (m[2], int(m[3]), int(m[4] or 0)) for m in METER_LINE.finditer(out)}


async def test_ingress_bandwidth_and_packet_rate_limits_are_meters(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    """bandwidth_limit ingress and packet_rate_limit egress made through the REST API: br-int
    meters (``dump-meters``) and neutron's table 58/59 flows naming them, on the port's path
    (``ofproto/trace``); the rule changed (the meter modified), the policy detached (gone),
    attached again, and the port deleted (gone)."""
    server = neutron_server
    mark = server.log_mark()
    network = await in_thread(server.create_network, **VLAN_NET)
    policy_id = ""
    try:
        subnet = await in_thread(server.create_subnet, network["id"], "10.41.0.0/24")
        policy = await rest(server, "POST", "/v2.0/qos/policies", "policy", name="metered")
        policy_id = policy["id"]
        rules = f"/v2.0/qos/policies/{policy_id}"
        bw_rule, pps_rule = "bandwidth_limit_rule", "packet_rate_limit_rule"
        ingress = await rest(server, "POST", f"{rules}/{bw_rule}s", bw_rule, max_kbps=3000,
                             max_burst_kbps=2000, direction="ingress")  # fmt: skip
        await rest(server, "POST", f"{rules}/{pps_rule}s", pps_rule, max_kpps=2,
                   max_burst_kpps=1, direction="egress")  # fmt: skip

        host = await hypervisors("host-b", extensions=["qos"])
        await wait_agents_alive(server, ["host-b"])
        port = await in_thread(server.create_port, network["id"], "host-b",
                               qos_policy_id=policy_id,
                               fixed_ips=[{"subnet_id": subnet["id"]}])  # fmt: skip
        host.plug(port)
        await wait_status(server, port["id"], "ACTIVE")
        ofport = host.ofport(port["id"])
        kbps_id, pps_id = ofport * 4 + 2, ofport * 4  # ingress kbps, egress pps
        await until("the port's meters", lambda: meters(host),
                    {kbps_id: ("kbps", 3000, 2000), pps_id: ("pktps", 2000, 1000)})  # fmt: skip
        flows = "\n".join(host.flows())
        assert f"table=58, priority=100,in_port={ofport} actions=meter:{pps_id},goto_table:59" \
            in flows, flows  # fmt: skip
        assert re.search(rf"table=59, priority=100,dl_vlan=\d+,dl_dst={port['mac_address']} "
                         rf"actions=meter:{kbps_id},goto_table:60", flows), flows  # fmt: skip
        core = host.agent.core
        assert core is not None and not core.extension_problems.get(port["id"])
        ip = port["fixed_ips"][0]["ip_address"]
        packet = (f"in_port={ofport},dl_src={port['mac_address']},dl_dst={OUTSIDE_MAC},udp,"
                  f"nw_src={ip},nw_dst=203.0.113.9,nw_ttl=64,udp_dst=53")  # fmt: skip
        trace = host.sandbox.appctl("ofproto/trace", "br-int", packet, "--ct-next", "trk,new")
        assert f"meter:{pps_id}" in trace and "meter(" in trace, trace

        # the rule changed: the meter modified in place
        await rest(server, "PUT", f"{rules}/{bw_rule}s/{ingress['id']}", bw_rule, max_kbps=5000,
                   max_burst_kbps=0)  # fmt: skip
        await until("ingress meter, burst 80 %", lambda: meters(host).get(kbps_id),
                    ("kbps", 5000, 4000))  # fmt: skip

        # detached: no meter, no metered flow
        await in_thread(server.update_port, port["id"], qos_policy_id=None)
        await until("no meters", lambda: meters(host), {})
        assert not [f for f in host.flows() if "meter:" in f]

        # attached again, then the port deleted: its meters go with it
        await in_thread(server.update_port, port["id"], qos_policy_id=policy_id)
        await until("meters back", lambda: len(meters(host)), 2)
        host.unplug(port["id"])
        await in_thread(server.delete_port, port["id"])
        await until("no meters after the port's deletion", lambda: meters(host), {})
        assert not [f for f in host.flows() if "meter:" in f]
        assert core.extension_problems == {}
    finally:
        await _clean_up(server, network["id"], policy_id)
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
