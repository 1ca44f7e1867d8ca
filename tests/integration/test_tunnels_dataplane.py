"""Overlay networks on real OVS: br-tun, tunnel ports, l2population and the ARP responder.

Two "hypervisors" are two private OVS sandboxes, each with its own agent, sharing one simulated
neutron-server. The dummy datapath carries no packet between sandboxes, so ``ofproto/trace`` is
the ground truth: with patch ports one trace crosses br-int and br-tun in one datapath.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_world import PORT_METADATA_DELAY, ofport, port_tag, running_agent, simulator, wait_until
from benchmarks.reboot_parse import action_tokens as split_actions

from aovs.agent.agent import Agent
from aovs.agent.tunnels import tunnel_port_name
from aovs.config import AgentConfig
from aovs.sandbox import OVSSandbox, running_sandbox
from aovs.testing.cloud import CloudNetwork, CloudPort, CloudTunnel, SimulatedCloud

pytestmark = pytest.mark.integration

IP_A, IP_B, IP_C = "192.0.2.1", "192.0.2.2", "192.0.2.3"  # C: an endpoint with no agent here
VX_NET, GRE_NET = "net-vx", "net-gre"
VNI, GRE_KEY = 1001, 2002
VM_A = ("port-a", "fa:16:3e:0a:00:01", "10.9.0.1")  # on host A
VM_B = ("port-b", "fa:16:3e:0b:00:01", "10.9.0.2")  # on host B
VM_G = ("port-g", "fa:16:3e:0a:00:02", "10.8.0.1")  # on host A, GRE network
REMOTE = ("fa:16:3e:0c:00:01", "10.9.0.3")  # a VM behind IP_C (l2population only)
FLOOD = ["00:00:00:00:00:00", "0.0.0.0"]


def world() -> SimulatedCloud:
    ports = [
        CloudPort.model_validate({"port_id": pid, "network_id": net, "mac_address": mac,
                             "fixed_ips": [{"ip_address": ip}], "security_groups": []})
        for (pid, mac, ip), net in ((VM_A, VX_NET), (VM_B, VX_NET), (VM_G, GRE_NET))
    ]  # fmt: skip
    return SimulatedCloud(
        networks={
            VX_NET: CloudNetwork(network_type="vxlan", segmentation_id=VNI),
            GRE_NET: CloudNetwork(network_type="gre", segmentation_id=GRE_KEY),
        },
        ports=tuple(ports),
        tunnels=(CloudTunnel(ip_address=IP_C, host="compute-c"),),
    )


def config(sandbox: OVSSandbox, url: str, host: str, local_ip: str, **agent: Any) -> AgentConfig:
    state = tempfile.mkdtemp(prefix=f"state-{host}-", dir=sandbox.directory)  # removed with it
    return AgentConfig.model_validate(
        {
            "host": host,
            "transport_url": url,
            "ovs": {"ovsdb_connection": sandbox.ovsdb_connection, "datapath_type": "dummy",
                    "local_ip": local_ip, "port_metadata_delay": PORT_METADATA_DELAY},
            "agent": {"state_path": state, "report_interval": 0, "tunnel_types": ["vxlan", "gre"],
                      "rpc_response_timeout": 2.0, "rpc_response_max_timeout": 4.0, **agent},
            "securitygroup": {"enable_security_group": False},
        }
    )  # fmt: skip


def plug(sandbox: OVSSandbox, vm: tuple[str, str, str], tap: str) -> None:
    pid, mac, _ = vm
    sandbox.vsctl("add-port", "br-int", tap, "--", "set", "Interface", tap, "type=dummy",
                  f"external_ids:iface-id={pid}", f"external_ids:attached-mac={mac}")  # fmt: skip


def trace(sandbox: OVSSandbox, bridge: str, flow: str) -> str:
    return sandbox.appctl("ofproto/trace", bridge, flow)


def datapath_actions(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("Datapath actions:")]
    assert lines, text
    return lines[-1]


def action_tokens(actions: str) -> list[str]:
    """A "Datapath actions: ..." line's actions, split at the commas outside parentheses."""
    return split_actions(actions.split(":", 1)[1])


def dp_port(sandbox: OVSSandbox, name: str) -> str:
    """A port's datapath number (what "Datapath actions" output to)."""
    found = re.search(rf"^\s+{name} \d+/(\d+):", sandbox.appctl("dpif/show"), re.MULTILINE)
    assert found is not None, name
    return found.group(1)


def tunnel_ports(sandbox: OVSSandbox) -> set[str]:
    return set(sandbox.vsctl("list-ports", "br-tun").split()) - {"patch-int"}


def vx(ip: str) -> str:
    name = tunnel_port_name("vxlan", ip)
    assert name is not None
    return name


def gre(ip: str) -> str:
    name = tunnel_port_name("gre", ip)
    assert name is not None
    return name


def tunnel_sandbox(prefix: str) -> Iterator[OVSSandbox]:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    with running_sandbox(directory, tunnels=True) as sandbox:
        yield sandbox


@pytest.fixture
def host_a() -> Iterator[OVSSandbox]:
    yield from tunnel_sandbox("aovs-ta-")


@pytest.fixture
def host_b() -> Iterator[OVSSandbox]:
    yield from tunnel_sandbox("aovs-tb-")


@contextlib.asynccontextmanager
async def wired(agent: Agent, *devices: str) -> AsyncIterator[None]:
    core = agent.core
    assert core is not None
    await wait_until(lambda: all(d in core.ports and core.ports[d].phase.value == "wired"
                                 for d in devices), what=f"{devices} wired")  # fmt: skip
    yield


async def test_two_hosts_flood_over_vxlan_and_gre_and_receive_on_the_local_vlan(
    host_a: OVSSandbox, host_b: OVSSandbox, rabbit_vhost: str
) -> None:
    a, b = host_a, host_b
    async with (
        simulator(rabbit_vhost, world()) as sim,
        running_agent(config(a, rabbit_vhost, "compute-a", IP_A)) as agent_a,
        running_agent(config(b, rabbit_vhost, "compute-b", IP_B)) as agent_b,
    ):
        plug(a, VM_A, "tapa")
        plug(a, VM_G, "tapg")
        plug(b, VM_B, "tapb")
        async with wired(agent_a, VM_A[0], VM_G[0]), wired(agent_b, VM_B[0]):
            pass
        # A learned B from the server's tunnel_update, B learned A from tunnel_sync's answer
        want_a = {vx(IP_B), vx(IP_C), gre(IP_B), gre(IP_C)}
        # the simulator keeps one endpoint per IP (neutron: one per type driver), so B's second
        # tunnel_sync (gre) is not fanned out as new: send what neutron-server would
        await wait_until(lambda: sim.calls["tunnel_sync"] == 4, what="both agents synced")
        await sim.notify_tunnel_update(IP_B, "gre")
        await wait_until(lambda: tunnel_ports(a) == want_a, what="A's tunnel ports")
        await wait_until(lambda: tunnel_ports(b) == {vx(IP_A), vx(IP_C), gre(IP_A), gre(IP_C)},
                         what="B's tunnel ports")  # fmt: skip
        options = a.vsctl("get", "Interface", vx(IP_B), "options")
        for expected in (f'local_ip="{IP_A}"', f'remote_ip="{IP_B}"', "in_key=flow",
                         "out_key=flow", 'df_default="true"'):  # fmt: skip
            assert expected in options
        await agent_a.settled()
        a.kernel_style_tunnels("br-int")

        # a broadcast from the VM leaves on every remote endpoint with the network's VNI
        out = datapath_actions(trace(a, "br-int", f"in_port={ofport(a, 'tapa')},"
                                     f"dl_src={VM_A[1]},dl_dst=ff:ff:ff:ff:ff:ff"))  # fmt: skip
        for remote in (IP_B, IP_C):
            assert re.search(rf"set\(tunnel\(tun_id=0x{VNI:x},src={IP_A},dst={remote}", out), out
        gre_out = datapath_actions(trace(a, "br-int", f"in_port={ofport(a, 'tapg')},"
                                         f"dl_src={VM_G[1]},dl_dst=ff:ff:ff:ff:ff:ff"))  # fmt: skip
        assert f"tun_id=0x{GRE_KEY:x},src={IP_A},dst={IP_B}" in gre_out, gre_out
        assert f"tun_id=0x{VNI:x}" not in gre_out  # networks do not leak into each other

        # from B's tunnel with the VNI: onto the VM's local VLAN, out to the VM only
        vlan = await port_tag(a, "tapa")
        inbound = trace(a, "br-tun", f"in_port={ofport(a, vx(IP_B))},tun_id={VNI},"
                                     f"tun_src={IP_B},tun_dst={IP_A},"
                                     f"dl_src={VM_B[1]},dl_dst={VM_A[1]}")  # fmt: skip
        assert f"set_field:{4096 + vlan}->vlan_vid" in inbound, inbound
        assert "learn(table=20" in inbound
        outputs = set(re.findall(r"(?:,|: )(\d+)", datapath_actions(inbound)))
        assert dp_port(a, "tapa") in outputs and dp_port(a, "tapg") not in outputs, inbound
        # an unknown tunnel id goes nowhere
        assert datapath_actions(
            trace(a, "br-tun", f"in_port={ofport(a, vx(IP_B))},tun_id=4242,dl_dst={VM_A[1]}")
        ).endswith("drop")

        # the endpoint C goes away: its ports go, the flood lists shrink
        await sim.notify_tunnel_delete(IP_C, "vxlan")
        await wait_until(lambda: vx(IP_C) not in tunnel_ports(a), what="C's vxlan port gone")
        await agent_a.settled()
        out = datapath_actions(trace(a, "br-int", f"in_port={ofport(a, 'tapa')},"
                                     f"dl_src={VM_A[1]},dl_dst=ff:ff:ff:ff:ff:ff"))  # fmt: skip
        assert f"dst={IP_B}" in out and f"dst={IP_C}" not in out
        assert gre(IP_C) in tunnel_ports(a)


def l2pop_fdb(*entries: list[str], agent_ip: str = IP_C) -> dict[str, Any]:
    return {VX_NET: {"segment_id": VNI, "network_type": "vxlan",
                     "ports": {agent_ip: [FLOOD, *entries]}}}  # fmt: skip


async def test_l2population_unicast_arp_responder_and_restarts(
    host_a: OVSSandbox, rabbit_vhost: str
) -> None:
    a = host_a
    cfg = config(a, rabbit_vhost, "compute-a", IP_A, l2_population=True, arp_responder=True)
    async with simulator(rabbit_vhost, world()) as sim:
        async with running_agent(cfg) as agent:
            plug(a, VM_A, "tapa")
            async with wired(agent, VM_A[0]):
                pass
            # tunnel_sync is called once the notification queues are bound
            await wait_until(lambda: sim.calls["tunnel_sync"] == 2, what="tunnel_sync")
            assert tunnel_ports(a) == set()  # l2population: no tunnel before an FDB entry
            await sim.notify_add_fdb_entries(l2pop_fdb(list(REMOTE)), host="compute-a")
            await wait_until(lambda: tunnel_ports(a) == {vx(IP_C)}, what="C's port")
            await agent.settled()
            a.kernel_style_tunnels("br-int")
            await wait_until(lambda: bool([f for f in a.dump_flows("br-tun", "table=21")
                                           if REMOTE[1] in f]), what="ARP entry")  # fmt: skip

            tap = ofport(a, "tapa")
            unicast = datapath_actions(trace(a, "br-int", f"in_port={tap},dl_src={VM_A[1]},"
                                             f"dl_dst={REMOTE[0]}"))  # fmt: skip
            assert unicast.count("set(tunnel(") == 1 and f"dst={IP_C}" in unicast, unicast

            arp = trace(a, "br-int", f"arp,in_port={tap},dl_src={VM_A[1]},"
                                     f"dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={VM_A[2]},"
                                     f"arp_tpa={REMOTE[1]},arp_sha={VM_A[1]}")  # fmt: skip
            assert "21. arp," in arp and "set_field:2->arp_op" in arp, arp
            answer = datapath_actions(arp)
            assert "set(tunnel(" not in answer  # answered locally, not flooded
            assert f"arp(sip={REMOTE[1]},tip={VM_A[2]},op=2,sha={REMOTE[0]},tha={VM_A[1]})" in (
                answer
            ), answer

            installed = a.dump_flows("br-tun")
            bundles = agent.stats.bundles

        # agent restart: the snapshot brings the FDB back, nothing is sent to br-tun
        async with running_agent(cfg) as again:
            assert again.reconcilers["br-tun"].flowmods_sent == 0
            await wait_until(lambda: sim.calls["tunnel_sync"] == 4, what="queues bound again")
            assert tunnel_ports(a) == {vx(IP_C)}
            await again.settled()
            assert a.dump_flows("br-tun") == installed
            assert bundles > 0

            # OVS restart: vswitchd comes back empty, br-tun's flows are replayed
            a.kill("ovs-vswitchd")
            a.start_vswitchd()
            await wait_until(lambda: a.dump_flows("br-tun") == installed, within=30,
                             what="br-tun replayed")  # fmt: skip

            # the remote VM leaves and with it the only reason for the tunnel
            await sim.notify_remove_fdb_entries(l2pop_fdb(list(REMOTE)))
            await wait_until(lambda: tunnel_ports(a) == set(), what="C's port removed")
            await again.settled()
            assert not [f for f in a.dump_flows("br-tun") if "table=21" in f and "arp_tpa" in f]
