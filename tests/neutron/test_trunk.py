"""Trunk ports made through a REAL neutron 29 server (``trunk`` service plugin) wired by aovs'
``trunk`` agent extension, as neutron's openvswitch trunk driver wires them.

One hypervisor, ``host-trunk`` (its own name: no other test's agent row on host-a is taken for
it, nor it for theirs), ``[agent] extensions = trunk``; three VLAN networks on physnet1: the
parent's, a subport's, and one for a subport added live. nova/os-vif is simulated: the trunk
bridge ``tbr-<trunk id>`` is created with the VM's tap on it. Checked in OVS itself (patch port
rows, names and external_ids as neutron's, ``Port.tag`` = segmentation id) and in the server
(subports bound to the host and ACTIVE, trunk ACTIVE), and with ``ofproto/trace``: a frame the VM
sends tagged with a subport's VLAN leaves br-phys on that subport's network's VLAN.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
from neutron_world import (
    Hypervisor,
    HypervisorFactory,
    in_thread,
    poll,
    tap_name,
    wait_agents_alive,
)
from neutron_world import wait_port_status as wait_status
from server.neutron_server import NeutronServer

from aovs.agent.agent import Agent
from aovs.rpc.resources import SubPortPush, TrunkPush
from aovs.sandbox import SandboxError

pytestmark = pytest.mark.integration

VLAN_NET = {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
WITHIN = 15.0  # s for an API change to show in OVS (expected ~1 s; the box is shared)
OUTSIDE_MAC = "fa:16:3e:99:99:99"
HOST = "host-trunk"


def vsctl_get(host: Hypervisor, table: str, record: str, column: str) -> str:
    return host.sandbox.vsctl("--if-exists", "get", table, record, column).strip()


def ports_of(host: Hypervisor, bridge: str) -> set[str]:
    """The ports of ``bridge`` (none once it is gone)."""
    try:
        return set(host.sandbox.vsctl("list-ports", bridge).split())
    except SandboxError:
        if vsctl_get(host, "Bridge", bridge, "name"):
            raise
        return set()


def external_ids(host: Hypervisor, iface: str) -> dict[str, str]:
    raw = vsctl_get(host, "Interface", iface, "external_ids")
    return dict(re.findall(r'([\w-]+)="?([^",}]*)"?', raw.replace('\\"', "'")))


def external_id(host: Hypervisor, iface: str, key: str) -> str:
    """One ``external_ids`` value, as ovs-vsctl reads it (its quoting undone)."""
    raw = vsctl_get(host, "Interface", iface, f"external_ids:{key}")
    return str(json.loads(raw)) if raw.startswith('"') else raw


def plug_trunk_vm(host: Hypervisor, bridge: str, port: dict[str, Any]) -> str:
    """What os-vif does for a VM on a trunk: the trunk bridge (br-int's datapath type) with the
    VM's tap on it, carrying the parent port's ids."""
    tap = tap_name(port["id"])
    datapath = vsctl_get(host, "Bridge", "br-int", "datapath_type")
    host.sandbox.vsctl(
        "--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge,
        f"datapath_type={datapath}",
        "--", "--may-exist", "add-port", bridge, tap,
        "--", "set", "Interface", tap, "type=dummy",
        f"external-ids:iface-id={port['id']}",
        f"external-ids:attached-mac={port['mac_address']}",
        "external-ids:iface-status=active", f"external-ids:vm-uuid={port['device_id']}",
    )  # fmt: skip
    return tap


def vlan_reached(host: Hypervisor, bridge: str, tap: str, vlan: int, src: dict[str, Any]) -> str:
    """``ofproto/trace`` on the trunk bridge of a UDP frame the VM sends on ``vlan`` from the
    port ``src``: the datapath actions of every pass, joined by ``;``."""
    ofport = int(vsctl_get(host, "Interface", tap, "ofport"))
    ip = src["fixed_ips"][0]["ip_address"]
    packet = (f"in_port={ofport},dl_vlan={vlan},dl_src={src['mac_address']},dl_dst={OUTSIDE_MAC},"
              f"udp,nw_src={ip},nw_dst=203.0.113.9,nw_ttl=64,udp_dst=53")  # fmt: skip
    out = host.sandbox.appctl("ofproto/trace", bridge, packet, "--ct-next", "trk,new")
    return " ; ".join(re.findall(r"^Datapath actions: (.*)$", out, re.M))


def on_vlan(actions: str, segmentation_id: int) -> bool:
    """The traced frame goes out tagged with the provider VLAN ``segmentation_id``."""
    return re.search(rf"push_vlan\(vid={segmentation_id},pcp=0\),\d", actions) is not None


async def until(what: str, fetch: Any, done: Any) -> Any:
    return await poll(fetch, done, within=WITHIN, what=what)


async def test_trunk_wired_subports_live_and_trunk_deleted(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    assert "trunk" in await in_thread(server.extensions), "the server has no trunk API"
    networks = [await in_thread(server.create_network, **VLAN_NET) for _ in range(3)]
    trunk_id = ""
    restarted: Agent | None = None
    try:
        subnets = [await in_thread(server.create_subnet, net["id"], f"10.5{i}.0.0/24")
                   for i, net in enumerate(networks)]  # fmt: skip
        segs = [net["provider:segmentation_id"] for net in networks]
        host = await hypervisors(HOST, extensions=["trunk"])
        received: list[object] = []

        def record(agent: Agent) -> None:
            apply = agent._apply

            def recording_apply(item: object, now: float) -> None:
                received.append(item)
                apply(item, now)

            agent._apply = recording_apply  # type: ignore[method-assign]

        record(host.agent)
        await wait_agents_alive(server, [HOST])
        assert host.agent.resource_versions == {"AddressGroup": "1.2", "Trunk": "1.1",
                                                "SubPort": "1.0"}  # fmt: skip

        # as nova does it: the trunk on an unbound parent, then the parent bound to the host
        parent = await in_thread(
            server.post,
            "/v2.0/ports",
            {
                "port": {
                    "network_id": networks[0]["id"],
                    "fixed_ips": [{"subnet_id": subnets[0]["id"]}],
                }
            },
        )
        parent = parent["port"]  # fmt: skip
        # a subport is created unbound: the agent asks the server to bind it to the trunk's host
        sub = (await in_thread(server.post, "/v2.0/ports", {"port": {
            "network_id": networks[1]["id"], "fixed_ips": [{"subnet_id": subnets[1]["id"]}]}}))[
            "port"]  # fmt: skip
        trunk = (await in_thread(server.post, "/v2.0/trunks", {"trunk": {
            "port_id": parent["id"], "sub_ports": [
                {"port_id": sub["id"], "segmentation_type": "vlan", "segmentation_id": 101}]}}))[
            "trunk"]  # fmt: skip
        trunk_id = trunk["id"]
        parent = await in_thread(server.update_port, parent["id"], **{
            "binding:host_id": HOST, "device_owner": "compute:nova",
            "device_id": str(uuid.uuid4())})  # fmt: skip
        assert parent["binding:vif_type"] == "ovs", parent
        bridge = f"tbr-{trunk_id}"[:14]

        # 1. the VM boots: os-vif makes the trunk bridge; the agent patches it to br-int
        started = time.monotonic()
        tap = plug_trunk_vm(host, bridge, parent)
        tpi, tpt = f"tpi-{parent['id']}"[:15], f"tpt-{parent['id']}"[:15]
        spi, spt = f"spi-{sub['id']}"[:15], f"spt-{sub['id']}"[:15]
        await until("patch ports", lambda: (tpi in ports_of(host, "br-int"),
                    spi in ports_of(host, "br-int"), ports_of(host, bridge) >= {tpt, spt}),
                    lambda got: all(got))  # fmt: skip
        assert vsctl_get(host, "Port", spt, "tag") == "101"
        assert vsctl_get(host, "Interface", spi, "options").replace('"', "") == f"{{peer={spt}}}"
        assert vsctl_get(host, "Interface", tpi, "type") == "patch"
        assert external_ids(host, spi) == {"iface-id": sub["id"],
                                           "attached-mac": sub["mac_address"]}  # fmt: skip
        assert external_ids(host, tpi) == {"iface-id": parent["id"],
                                           "attached-mac": parent["mac_address"]}  # fmt: skip
        await wait_status(server, parent["id"], "ACTIVE")
        bound = await wait_status(server, sub["id"], "ACTIVE")
        assert bound["binding:host_id"] == HOST and bound["device_owner"] == "trunk:subport"
        await until("trunk ACTIVE", lambda: server.get(f"/v2.0/trunks/{trunk_id}")["trunk"][
            "status"], lambda status: status == "ACTIVE")  # fmt: skip
        tap_ids = external_ids(host, tap)
        assert (tap_ids["bridge_name"], tap_ids["trunk_id"]) == (bridge, trunk_id), tap_ids
        print(f"\ntrunk bridge plugged -> subport ACTIVE: {time.monotonic() - started:.2f} s")
        # the VM's tap and the trunk bridge's ports are not br-int ports to the agent
        core = host.agent.core
        assert core is not None
        wired = core.ports[parent["id"]].interface
        assert wired is not None and wired.name == tpi
        # a frame the VM tags with VLAN 101 leaves on the subport's network, not the parent's
        actions = await until("the VLAN-101 frame on the subport's network",
                              lambda: vlan_reached(host, bridge, tap, 101, sub),
                              lambda got: on_vlan(got, segs[1]))  # fmt: skip
        assert not on_vlan(actions, segs[0]) and not on_vlan(actions, segs[2]), actions

        # 2. a subport added live (a SubPort push): bound, patched, its VLAN reaches its network
        sub2 = (await in_thread(server.post, "/v2.0/ports", {"port": {
            "network_id": networks[2]["id"], "fixed_ips": [{"subnet_id": subnets[2]["id"]}]}}))[
            "port"]  # fmt: skip
        assert not on_vlan(vlan_reached(host, bridge, tap, 102, sub2), segs[2])
        added = {"port_id": sub2["id"], "segmentation_type": "vlan", "segmentation_id": 102}
        await in_thread(server.put, f"/v2.0/trunks/{trunk_id}/add_subports",
                        {"sub_ports": [added]})  # fmt: skip
        spt2 = f"spt-{sub2['id']}"[:15]
        await until("the new subport's patch", lambda: vsctl_get(host, "Port", spt2, "tag"),
                    lambda tag: tag == "102")  # fmt: skip
        await wait_status(server, sub2["id"], "ACTIVE")
        await until("the VLAN-102 frame on its network",
                    lambda: vlan_reached(host, bridge, tap, 102, sub2),
                    lambda got: on_vlan(got, segs[2]))  # fmt: skip
        assert any(isinstance(i, SubPortPush) and i.event_type == "created" for i in received)
        assert json.loads(external_id(host, tap, "subport_ids")) == sorted([sub["id"], sub2["id"]])

        # 3. removed live: its patch pair goes, VLAN 102 reaches nothing any more
        await in_thread(server.put, f"/v2.0/trunks/{trunk_id}/remove_subports",
                        {"sub_ports": [{"port_id": sub2["id"]}]})  # fmt: skip
        spi2 = f"spi-{sub2['id']}"[:15]
        await until("the removed subport's patch gone", lambda: (
            spi2 in ports_of(host, "br-int"), spt2 in ports_of(host, bridge)),
            lambda got: got == (False, False))  # fmt: skip
        assert not on_vlan(vlan_reached(host, bridge, tap, 102, sub2), segs[2])
        assert on_vlan(vlan_reached(host, bridge, tap, 101, sub), segs[1])

        # 4. the agent restarts; meanwhile subport 1 is removed and subport 2 added back (pushes
        # nobody heard): the new agent rewires the bridge from the trunk it pulls (neutron's
        # "rewire"), removing the stale pair and patching the new one
        await host.agent.stop()
        await in_thread(server.put, f"/v2.0/trunks/{trunk_id}/remove_subports",
                        {"sub_ports": [{"port_id": sub["id"]}]})  # fmt: skip
        await in_thread(server.put, f"/v2.0/trunks/{trunk_id}/add_subports",
                        {"sub_ports": [added]})  # fmt: skip
        restarted = host.agent = Agent(host.config)
        record(restarted)
        await restarted.start()
        await until(
            "rewired after a restart",
            lambda: (
                spi in ports_of(host, "br-int"),
                spt in ports_of(host, bridge),
                vsctl_get(host, "Port", spt2, "tag"),
            ),
            lambda got: got == (False, False, "102"),
        )
        await wait_status(server, sub2["id"], "ACTIVE")
        await until("the VLAN-102 frame on its network again",
                    lambda: vlan_reached(host, bridge, tap, 102, sub2),
                    lambda got: on_vlan(got, segs[2]))  # fmt: skip
        assert not on_vlan(vlan_reached(host, bridge, tap, 101, sub), segs[1])
        assert json.loads(external_id(host, tap, "subport_ids")) == [sub2["id"]]
        core = restarted.core
        assert core is not None
        spi, spt = spi2, spt2  # the subport patched now

        # 5. the VM deleted: os-vif removes its tap; the agent removes br-int's side and the
        # trunk bridge (neutron's remove_trunk)
        host.sandbox.vsctl("del-port", bridge, tap)
        await until("br-int's side and the trunk bridge gone", lambda: (
            tpi in ports_of(host, "br-int"), spi in ports_of(host, "br-int"),
            bool(vsctl_get(host, "Bridge", bridge, "name"))), lambda got: not any(got))  # fmt: skip
        assert host.agent.trunks is not None and host.agent.trunks.wired == {}
        await poll(
            lambda: parent["id"] in core.ports or sub2["id"] in core.ports,
            lambda there: not there,
            within=WITHIN,
            what="the ports gone from the agent",
        )

        # 6. nova unbinds the parent, the trunk is deleted: pushed, nothing left to undo
        await in_thread(server.update_port, parent["id"], **{"binding:host_id": "",
                        "device_id": "", "device_owner": ""})  # fmt: skip
        await in_thread(server.delete, f"/v2.0/trunks/{trunk_id}")
        trunk_id = ""
        await poll(lambda: [i for i in received if isinstance(i, TrunkPush)],
                   lambda pushes: any(p.event_type == "deleted" for p in pushes),
                   within=WITHIN, what="the trunk's deletion pushed")  # fmt: skip
        assert ports_of(host, "br-int").isdisjoint({tpi, spi}), ports_of(host, "br-int")
    finally:
        if restarted is not None:
            await restarted.stop()  # (the fixture stops the first one)
        if trunk_id:
            await in_thread(server.update_port, parent["id"], **{"binding:host_id": "",
                            "device_id": "", "device_owner": ""})  # fmt: skip
            await in_thread(server.delete, f"/v2.0/trunks/{trunk_id}")
        for net in networks:
            got = (await in_thread(server.get, f"/v2.0/ports?network_id={net['id']}"))["ports"]
            for each in got:
                await in_thread(server.delete_port, each["id"])
            await in_thread(server.delete_network, net["id"])
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
