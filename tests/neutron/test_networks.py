"""vlan, flat and vxlan networks across two hypervisors, driven by a real neutron 29 server.

host-a (local_ip 127.0.0.11) and host-b (127.0.0.12) are two private OVS sandboxes on this one
machine, each with an aovs agent. Everything is asked of the server through its REST API, and
checked as OVS sees it: dump-flows, OVSDB rows and ``ofproto/trace`` (the dummy datapath carries
no packet between sandboxes; a trace crosses br-int, br-tun and br-phys through the patch ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from neutron_world import (
    NEUTRON_CONFIGURATION_KEYS,
    OVS_AGENT,
    PHYSICAL_BRIDGE,
    Hypervisor,
    HypervisorFactory,
    in_thread,
    poll,
    wait_agents_alive,
    wait_port_status,
)
from server.neutron_server import NeutronApiError, NeutronServer

from aovs.rpc import events as rpc_events

# the overlay integration tests' trace helpers (tests/integration is not a package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_tunnels_dataplane import (
    action_tokens,
    datapath_actions,
    dp_port,
    tunnel_ports,
    vx,
)

pytestmark = pytest.mark.integration

UPLINK = f"{PHYSICAL_BRIDGE}-up"  # the sandbox's dummy uplink on br-phys
BRIDGES = ("br-int", "br-tun", PHYSICAL_BRIDGE)
DEAD_VLAN = 4095
SETTLE = 10.0  # seconds for an API change to reach the flows (measured: ~1-2 s)


# -- the server's side ------------------------------------------------------------------------
class Made:
    """What a test created through the API, deleted again at its end (404s ignored), so the
    session's server is left as it was found (one flat network per physnet at a time)."""

    def __init__(self, server: NeutronServer) -> None:
        self.server = server
        self.ports: list[str] = []
        self.networks: list[str] = []
        self.groups: list[str] = []

    async def network(self, kind: str, cidr: str) -> dict[str, Any]:
        attrs = {"provider:network_type": kind}
        if kind != "vxlan":
            attrs["provider:physical_network"] = "physnet1"
        network: dict[str, Any] = await in_thread(self.server.create_network, **attrs)
        self.networks.append(network["id"])
        await in_thread(self.server.create_subnet, network["id"], cidr)
        return network

    async def port(self, network: Mapping[str, Any], host: Hypervisor, **attrs: Any) -> Any:
        port = await in_thread(self.server.create_port, network["id"], host.host, **attrs)
        self.ports.append(port["id"])
        assert port["binding:vif_type"] == "ovs", port
        host.plug(port)
        return port

    async def security_group(self) -> str:
        body = {"security_group": {"name": f"sg-{uuid.uuid4().hex[:6]}"}}
        group: dict[str, Any] = await in_thread(self.server.post, "/v2.0/security-groups", body)
        self.groups.append(group["security_group"]["id"])
        return str(group["security_group"]["id"])

    async def delete_port(self, port_id: str) -> None:
        await in_thread(self.server.delete_port, port_id)
        self.ports.remove(port_id)

    async def delete_network(self, network_id: str) -> None:
        await in_thread(self.server.delete_network, network_id)
        self.networks.remove(network_id)

    async def close(self) -> None:
        """Ports, then networks, then groups (each waits for the one before), in parallel."""
        for call, resources in (
            (self.server.delete_port, self.ports),
            (self.server.delete_network, self.networks),
            (lambda g: self.server.delete(f"/v2.0/security-groups/{g}"), self.groups),
        ):
            await asyncio.gather(*(self._forget(call, r) for r in resources))

    @staticmethod
    async def _forget(call: Callable[[str], Any], resource: str) -> None:
        with contextlib.suppress(NeutronApiError):
            await in_thread(call, resource)


@contextlib.asynccontextmanager
async def made(server: NeutronServer) -> AsyncIterator[Made]:
    resources = Made(server)
    try:
        yield resources
    finally:
        await resources.close()


async def two_hosts(
    server: NeutronServer, hypervisors: HypervisorFactory
) -> tuple[Hypervisor, Hypervisor]:
    a = await hypervisors("host-a")
    b = await hypervisors("host-b")
    await wait_agents_alive(server, ["host-a", "host-b"])
    return a, b


async def active(server: NeutronServer, *ports: Mapping[str, Any]) -> None:
    """Until the server shows every one of ``ports`` ACTIVE."""
    await asyncio.gather(*(wait_port_status(server, p["id"], "ACTIVE", within=30) for p in ports))


async def first_port(made: Made, network: Mapping[str, Any], host: Hypervisor) -> Any:
    """A port, ACTIVE before any other is made. Once, with both agents' first port status
    updates at the same moment on a fresh server, neutron-rpc-server failed one of them
    ("CallbackFailure: Callback ...SecurityGroupDbMixin._ensure_default_security_group_handler
    failed with "dictionary changed size during iteration"" in update_port_statuses; the agent
    retried and the port went ACTIVE): a race in the server's lazily set-up state, not the
    agents' doing, which this sidesteps."""
    port = await made.port(network, host)
    await active(made.server, port)
    return port


def fixed_ip(port: Mapping[str, Any]) -> str:
    return str(port["fixed_ips"][0]["ip_address"])


def assert_no_server_errors(server: NeutronServer, mark: dict[str, int]) -> None:
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)


# -- the switch's side ------------------------------------------------------------------------
async def wait_ofport(host: Hypervisor, port_id: str) -> int:
    ofport: int = await poll(lambda: host.ofport(port_id), lambda n: n > 0, within=SETTLE,
                             what=f"{host.host}'s ofport of {port_id}")  # fmt: skip
    return ofport


def tag(host: Hypervisor, port_id: str) -> int | None:
    value = host.sandbox.vsctl("get", "Port", host.plugged[port_id], "tag").strip()
    return int(value) if value.isdigit() else None


def flows_of(host: Hypervisor) -> dict[str, set[str]]:
    return {bridge: set(host.flows(bridge)) for bridge in BRIDGES}


def flow_diff(now: Mapping[str, set[str]], then: Mapping[str, set[str]]) -> str:
    lines = []
    for bridge in BRIDGES:
        lines += [f"{bridge} + {f}" for f in sorted(now[bridge] - then[bridge])]
        lines += [f"{bridge} - {f}" for f in sorted(then[bridge] - now[bridge])]
    return "\n".join(lines)


async def wait_flows_back(host: Hypervisor, before: Mapping[str, set[str]], what: str) -> None:
    """Until the host's flows on every bridge equal ``before`` (the diff on timeout)."""
    try:
        await poll(lambda: flows_of(host), lambda now: now == before, within=SETTLE, what=what)
    except AssertionError:
        pytest.fail(f"{host.host}: {what}; flows that differ:\n"
                    f"{flow_diff(flows_of(host), before)}")  # fmt: skip


def mentioning(host: Hypervisor, *needles: str) -> list[str]:
    return [f"{b}: {f}" for b in BRIDGES for f in host.flows(b) if any(n in f for n in needles)]


def unicast_to(host: Hypervisor, mac: str) -> list[str]:
    """l2population's table-20 entries on br-tun for a remote MAC."""
    return [f for f in host.flows("br-tun") if "table=20" in f and f"dl_dst={mac}" in f]


def flooding(host: Hypervisor, vlan: int) -> list[str]:
    """br-tun's table-22 flood entry of the network on local VLAN ``vlan``."""
    entry = re.compile(rf"\btable=22\b.*\bdl_vlan={vlan}\b")
    return [f for f in host.flows("br-tun") if entry.search(f)]


def egress_trace(host: Hypervisor, ofport: int, src: Mapping[str, Any],
                 dst: Mapping[str, Any]) -> str:  # fmt: skip
    """ofproto/trace on br-int of an IPv4 frame from the VM port ``src`` to ``dst``'s MAC and
    IP (the openvswitch firewall's conntrack recirculation continues as a new connection)."""
    packet = (f"ip,in_port={ofport},dl_src={src['mac_address']},dl_dst={dst['mac_address']},"
              f"nw_src={fixed_ip(src)},nw_dst={fixed_ip(dst)}")  # fmt: skip
    return str(host.sandbox.appctl("ofproto/trace", "br-int", packet, "--ct-next", "trk,new"))


def tunnelled_to(actions: str, vni: int, src: Hypervisor, dst: Hypervisor) -> bool:
    return bool(
        re.search(rf"set\(tunnel\(tun_id=0x{vni:x},src={src.local_ip},dst={dst.local_ip},", actions)
    )


def outputs(actions: str) -> list[tuple[int, int | None]]:
    """The datapath ports "Datapath actions: ..." output to, each with the VLAN id the frame
    carries there (None: untagged; the traced frame starts untagged)."""
    tokens = action_tokens(actions)
    vlan: int | None = None
    sent = []
    for token in tokens:
        pushed = re.fullmatch(r"push_vlan\(vid=(\d+),.*\)", token)
        if pushed:
            vlan = int(pushed.group(1))
        elif token == "pop_vlan":
            vlan = None
        elif token.isdigit():
            sent.append((int(token), vlan))
    return sent


def rpc_calls(host: Hypervisor) -> Counter[str]:
    """Every neutron-server call the agent made so far, by method (its metrics registry)."""
    counts: Counter[str] = Counter()
    for metric in host.agent.telemetry.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "aovs_rpc_calls_total":
                counts[sample.labels["method"]] += int(sample.value)
    return counts


def spy_inbox(host: Hypervisor) -> list[object]:
    """Everything posted to the agent's inbox from now on (notifications, answers, rows)."""
    seen: list[object] = []
    post = host.agent._post

    def spying(item: object) -> None:
        seen.append(item)
        post(item)

    host.agent._post = spying  # type: ignore[method-assign]
    return seen


# -- 1 + 2: three network types, bound, active, reported and forwarding -----------------------
async def test_vlan_flat_and_vxlan_ports_on_two_hosts_go_active_and_forward(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    """A port per network type per host goes ACTIVE; the agents report neutron 29's
    configurations, which the bindings' vif_details follow; l2population gives each br-tun a
    vxlan port to the other host; host-a's VM reaches host-b's VM through the tunnel with the
    VNI (vxlan), tagged with the segmentation id (vlan) or untagged (flat) on the uplink."""
    server = neutron_server
    mark = server.log_mark()
    a, b = await two_hosts(server, hypervisors)
    async with made(server) as api:
        vlan, flat, vxlan = await asyncio.gather(
            api.network("vlan", "10.31.0.0/24"),
            api.network("flat", "10.32.0.0/24"),
            api.network("vxlan", "10.33.0.0/24"),
        )
        nets = {"vlan": vlan, "flat": flat, "vxlan": vxlan}
        ports = {("vxlan", "host-a"): await first_port(api, vxlan, a)}
        others = [(kind, h) for kind in nets for h in (a, b) if (kind, h.host) not in ports]
        made_ports = await asyncio.gather(*(api.port(nets[kind], h) for kind, h in others))
        for (kind, h), port in zip(others, made_ports, strict=True):
            ports[(kind, h.host)] = port
        await active(server, *made_ports)

        # the agents as the server shows them: alive, with neutron 29's configuration keys
        agents = {x["host"]: x for x in await in_thread(server.agents, agent_type=OVS_AGENT)}
        for host in (a, b):
            agent = agents[host.host]
            assert agent["alive"] and agent["binary"] == "neutron-openvswitch-agent", agent
            conf = agent["configurations"]
            missing = NEUTRON_CONFIGURATION_KEYS - set(conf)
            assert not missing, f"{host.host} reports no {sorted(missing)}: {conf}"
            assert conf["tunneling_ip"] == host.local_ip
            assert conf["tunnel_types"] == ["vxlan"] and conf["l2_population"] is True
            assert conf["bridge_mappings"] == {"physnet1": PHYSICAL_BRIDGE}
            assert conf["integration_bridge"] == "br-int"
            assert conf["datapath_type"] == host.config.ovs.datapath_type == "dummy"
            assert conf["ovs_hybrid_plug"] is False
            assert conf["arp_responder_enabled"] is False  # not asked for here
            assert conf["enable_distributed_routing"] is False
            assert conf["baremetal_smartnic"] is False
            assert isinstance(conf["extensions"], list)
            assert isinstance(conf["vhostuser_socket_dir"], str) and conf["vhostuser_socket_dir"]
            caps = conf["ovs_capabilities"]
            assert "dummy" in caps["datapath_types"] and "vxlan" in caps["iface_types"], caps
            for key in NEUTRON_CONFIGURATION_KEYS:
                if key.startswith("resource_provider_"):
                    assert isinstance(conf[key], dict), (key, conf[key])
            assert isinstance(conf["devices"], int)

        # nova's vif_details come from those configurations
        for (kind, host_name), port in ports.items():
            shown = await in_thread(server.show_port, port["id"])
            details = shown["binding:vif_details"]
            conf = agents[host_name]["configurations"]
            assert shown["binding:vif_type"] == "ovs" and shown["binding:host_id"] == host_name
            assert details["datapath_type"] == conf["datapath_type"], (kind, details)
            assert details["ovs_hybrid_plug"] is conf["ovs_hybrid_plug"], (kind, details)
            assert details["bridge_name"] == "br-int" and details["port_filter"] is True

        # the overlay: one vxlan port to the other host on each br-tun (from l2population)
        for here, there in ((a, b), (b, a)):
            await poll(lambda h=here: tunnel_ports(h.sandbox),  # type: ignore[misc]
                       lambda names, t=there: names == {vx(t.local_ip)}, within=SETTLE,
                       what=f"{here.host}'s tunnel port to {there.host}")  # fmt: skip
            options = here.sandbox.vsctl("get", "Interface", vx(there.local_ip), "options")
            assert f'remote_ip="{there.local_ip}"' in options, options
            assert f'local_ip="{here.local_ip}"' in options, options
            assert here.sandbox.vsctl("get", "Interface", vx(there.local_ip), "type").strip() == (
                "vxlan"
            )
        vm_a, vm_b = ports[("vxlan", "host-a")], ports[("vxlan", "host-b")]
        await poll(lambda: unicast_to(a, vm_b["mac_address"]), bool, within=SETTLE,
                   what="host-a's l2population entry for host-b's VM")  # fmt: skip
        a.sandbox.kernel_style_tunnels("br-int")

        # vxlan: host-a's VM -> host-b's VM leaves through br-tun with the VNI, to host-b only
        vni = vxlan["provider:segmentation_id"]
        out = egress_trace(a, await wait_ofport(a, vm_a["id"]), vm_a, vm_b)
        actions = datapath_actions(out)
        assert tunnelled_to(actions, vni, a, b), out
        assert actions.count("set(tunnel(") == 1, actions  # unicast: not flooded
        assert f"set_field:0x{vni:x}->tun_id" in out, out
        ofport_tun = int(a.sandbox.vsctl("get", "Interface", vx(b.local_ip), "ofport"))
        assert f"output:{ofport_tun}" in out, out

        # vlan: the frame leaves br-phys's uplink tagged with the segmentation id; flat: untagged
        uplink = int(dp_port(a.sandbox, UPLINK))
        for kind, vid in (("vlan", vlan["provider:segmentation_id"]), ("flat", None)):
            src, dst = ports[(kind, "host-a")], ports[(kind, "host-b")]
            out = egress_trace(a, await wait_ofport(a, src["id"]), src, dst)
            sent = outputs(datapath_actions(out))
            assert [v for port, v in sent if port == uplink] == [vid], (
                f"{kind}: {UPLINK} is {uplink}\n{a.sandbox.appctl('dpif/show')}\n{out}"
            )
            assert "tunnel(" not in datapath_actions(out), out
    assert_no_server_errors(server, mark)


# -- 4, 6, 3, 5 on one vxlan network (beside a vlan one) ------------------------------------------
async def test_admin_state_remote_updates_last_port_and_deletes_on_a_vxlan_network(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    """admin_state_up cuts a port off and back; another host's port updates cost host-b no
    RPC; host-b's last port of the network takes its FDB entries off host-a; deleting the
    ports and networks leaves both hosts' flows as before they were created."""
    server = neutron_server
    mark = server.log_mark()
    a, b = await two_hosts(server, hypervisors)
    for host in (a, b):
        await host.agent.settled()
    empty = {h.host: flows_of(h) for h in (a, b)}  # before any network
    async with made(server) as api:
        # host-b's VMs in a group of their own, which nothing on host-a uses (host-a's are in
        # the default group): a change to host-a's ports is no business of host-b's
        vlan, group_b = await asyncio.gather(
            api.network("vlan", "10.41.0.0/24"), api.security_group()
        )
        # a vlan network with a port on each host: the "other network" that must stay intact
        vlan_ports = {"host-a": await first_port(api, vlan, a)}
        vlan_ports["host-b"] = await api.port(vlan, b, security_groups=[group_b])
        await active(server, vlan_ports["host-b"])
        for host in (a, b):
            await host.agent.settled()
        with_vlan = {h.host: flows_of(h) for h in (a, b)}

        vxlan = await api.network("vxlan", "10.42.0.0/24")
        vm_a, vm_b = await asyncio.gather(
            api.port(vxlan, a), api.port(vxlan, b, security_groups=[group_b])
        )
        await active(server, vm_a, vm_b)
        ofport_a = await wait_ofport(a, vm_a["id"])
        ofport_b = await wait_ofport(b, vm_b["id"])
        vlan_a = await poll(lambda: tag(a, vm_a["id"]), lambda t: t not in (None, DEAD_VLAN),
                            within=SETTLE, what="host-a's Port.tag (after the flows)")  # fmt: skip
        assert vlan_a is not None
        await poll(lambda: unicast_to(a, vm_b["mac_address"]) and flooding(a, vlan_a),
                   bool, within=SETTLE, what="host-a's FDB for host-b's VM")  # fmt: skip
        assert tunnel_ports(a.sandbox) == {vx(b.local_ip)}
        a.sandbox.kernel_style_tunnels("br-int")
        vni = vxlan["provider:segmentation_id"]
        assert tunnelled_to(datapath_actions(egress_trace(a, ofport_a, vm_a, vm_b)), vni, a, b)

        for host in (a, b):  # the ACTIVE ports' update_device_list calls may still be under way
            await host.agent.settled()
            await host.agent.reporter.drain()
        seen_b = spy_inbox(b)
        stats_b = b.agent.stats
        calls_b = (stats_b.rpc_details_calls, stats_b.rpc_sg_calls)
        methods_b = rpc_calls(b)

        def updates_seen_by_b() -> int:
            return sum(isinstance(e, rpc_events.PortUpdate) and e.port_id == vm_a["id"]
                       for e in seen_b)  # fmt: skip

        # 4: admin_state_up false: dead VLAN, every frame from the port dropped, status DOWN
        await in_thread(server.update_port, vm_a["id"], admin_state_up=False)
        await poll(lambda: tag(a, vm_a["id"]), lambda t: t == DEAD_VLAN, within=SETTLE,
                   what="host-a's port on the dead VLAN")  # fmt: skip
        await poll(lambda: datapath_actions(egress_trace(a, ofport_a, vm_a, vm_b)),
                   lambda actions: actions.endswith("drop"), within=SETTLE,
                   what="frames from the admin-down port dropped")  # fmt: skip
        await wait_port_status(server, vm_a["id"], "DOWN", within=SETTLE)

        # ... and true again: back on its VLAN, forwarding, ACTIVE
        await in_thread(server.update_port, vm_a["id"], admin_state_up=True)
        await poll(lambda: tag(a, vm_a["id"]), lambda t: t not in (None, DEAD_VLAN),
                   within=SETTLE, what="host-a's port off the dead VLAN")  # fmt: skip
        await poll(lambda: unicast_to(a, vm_b["mac_address"]), bool, within=SETTLE,
                   what="host-a's l2population entry for host-b's VM again")  # fmt: skip
        out = egress_trace(a, ofport_a, vm_a, vm_b)
        assert tunnelled_to(datapath_actions(out), vni, a, b), out
        await wait_port_status(server, vm_a["id"], "ACTIVE", within=SETTLE)

        # 6: a rename and a change of security groups of host-a's port (a port_update fanout)
        group_new = await api.security_group()
        sg_calls_a = a.agent.stats.rpc_sg_calls
        await in_thread(server.update_port, vm_a["id"], name="renamed",
                        security_groups=[*vm_a["security_groups"], group_new])  # fmt: skip
        await poll(lambda: a.agent.stats.rpc_sg_calls, lambda n: n > sg_calls_a, within=SETTLE,
                   what="host-a fetching its port's new security groups")  # fmt: skip
        await a.agent.settled()
        # host-b received every port_update of host-a's port (three), and asked nothing
        await poll(updates_seen_by_b, lambda n: n >= 3, within=SETTLE,
                   what="host-b receiving host-a's port_update notifications")  # fmt: skip
        await b.agent.settled()
        await b.agent.reporter.drain()
        assert (stats_b.rpc_details_calls, stats_b.rpc_sg_calls) == calls_b
        asked = rpc_calls(b) - methods_b
        assert set(asked) <= {"report_state"}, f"host-b called {dict(asked)}"
        assert not b.agent.core.is_local(vm_a["id"])  # type: ignore[union-attr]

        # 3: host-b's last port of the network goes (deleted in neutron, unplugged by nova):
        # host-a forgets its MAC, stops flooding to host-b, and the tunnel port goes
        await poll(lambda: unicast_to(a, vm_b["mac_address"]) and flooding(a, vlan_a),
                   bool, within=SETTLE, what="host-a's FDB for host-b's VM")  # fmt: skip
        await api.delete_port(vm_b["id"])
        b.unplug(vm_b["id"])
        await poll(lambda: (unicast_to(a, vm_b["mac_address"]), flooding(a, vlan_a),
                            tunnel_ports(a.sandbox)),
                   lambda left: left == ([], [], set()), within=SETTLE,
                   what="host-b's FDB entries gone from host-a's br-tun")  # fmt: skip
        out = egress_trace(a, ofport_a, vm_a, vm_b)
        assert "tunnel(" not in datapath_actions(out), out
        # ... and host-b keeps nothing of the port
        await poll(lambda: mentioning(b, vm_b["mac_address"]) + b.flows_on_port(ofport_b),
                   lambda left: not left, within=SETTLE,
                   what="host-b's flows of its deleted port")  # fmt: skip
        await poll(lambda: tunnel_ports(b.sandbox), lambda names: not names, within=SETTLE,
                   what="host-b's tunnel port to host-a (no vxlan port left)")  # fmt: skip

        # 5: host-a's port and the vxlan network go: both hosts are back to the vlan-only state
        await api.delete_port(vm_a["id"])
        a.unplug(vm_a["id"])
        await api.delete_network(vxlan["id"])
        for host in (a, b):
            await wait_flows_back(host, with_vlan[host.host], "vxlan network's flows not gone")
        assert not mentioning(a, vm_a["mac_address"], f"0x{vni:x}"), "vxlan leftovers on host-a"

        # ... and then the vlan network: nothing of it anywhere, the empty state again
        for host in (a, b):
            port = vlan_ports[host.host]
            ofport = await wait_ofport(host, port["id"])
            await api.delete_port(port["id"])
            host.unplug(port["id"])
            await poll(lambda h=host, p=port, n=ofport: mentioning(h, p["mac_address"])  # type: ignore[misc]
                       + h.flows_on_port(n), lambda left: not left, within=SETTLE,
                       what=f"{host.host}'s flows of its deleted vlan port")  # fmt: skip
        await api.delete_network(vlan["id"])
        seg = vlan["provider:segmentation_id"]
        for host in (a, b):
            await wait_flows_back(host, empty[host.host], "the networks' flows not all gone")
            assert not mentioning(host, f"dl_vlan={seg}", f"vlan_vid={4096 + seg}")
    assert_no_server_errors(server, mark)
