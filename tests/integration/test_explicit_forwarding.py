"""br-int's explicit forwarding (issue 19) on a real OVS, RabbitMQ, the simulator and the agent.

br-int switches by OpenFlow (tables 110-112), not by NORMAL and Port.tag, so these tests check
what a packet actually does, two ways:

- ``ofproto/trace``: the "Datapath actions" of one packet through br-int, br-phys and br-tun (one
  datapath: patch ports), read into "which interface receives it, with which VLAN tags / tunnel
  id" by a small interpreter (``deliveries``);
- injected packets: ``netdev-dummy/receive`` on a VM's or the uplink's dummy interface, and
  every dummy interface writing what it transmits to a pcap (``options:tx_pcap``), read back
  frame by frame (VLAN tag included). Each injected packet is an ARP whose target address is a
  fresh nonce, so it is recognised wherever it lands.

The world: two vlan networks (A: 101, B: 102) and a flat one on physnet1 (br-phys, uplink
``br-phys-up``), a vxlan network (VNI 1001) towards one remote endpoint; the openvswitch
firewall. A3 has no port security (it receives unknown unicast, as NORMAL would give it).

On the NORMAL design these replace, all but the VLAN translation test failed (run before it
landed): NORMAL floods a known unicast in a trace (it has learnt no MAC there); a port plugged
untagged before its flows is a trunk for NORMAL (it floods onto the physical network); the
old agent wrote Port.tag before a port forwarded (reboot, ``port_metadata_delay``).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import struct
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_world import PORT_NUMBER, ofport, running_agent, simulator, wait_until
from benchmarks.reboot_parse import action_tokens as split_actions

from aovs.agent.agent import Agent
from aovs.agent.state import PortPhase
from aovs.agent.tunnels import tunnel_port_name
from aovs.config import AgentConfig
from aovs.sandbox import OVSSandbox, running_sandbox
from aovs.testing.cloud import (
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    CloudTunnel,
    SimulatedCloud,
)
from aovs.testing.simulator import NeutronServerSimulator

pytestmark = pytest.mark.integration

NET_A, NET_B, NET_F, NET_X = "net-a", "net-b", "net-flat", "net-vx"
SEG_A, SEG_B, VNI = 101, 102, 1001
LOCAL_IP, REMOTE_IP = "192.0.2.1", "192.0.2.3"  # the remote endpoint has no agent: traces only
UPLINK = "br-phys-up"  # the sandbox's physical bridge's dummy uplink
MARK_IN, MARK_OUT = "mark-in", "mark-out"  # a bridge of its own, for World.barrier
OUTSIDE_MAC, OUTSIDE_IP = "fa:16:3e:99:99:99", "10.99.0.1"
UNKNOWN_MAC = "fa:16:3e:77:77:77"
BROADCAST = "ff:ff:ff:ff:ff:ff"
SG = "sg-open"
DETAILS = "get_devices_details_list_and_failed_devices"


@dataclass(frozen=True)
class VM:
    port_id: str
    tap: str
    mac: str
    ip: str
    network: str
    port_security: bool = True


def _vm(name: str, network: str, index: int, subnet: int, port_security: bool = True) -> VM:
    return VM(f"port-{name}", f"tap-{name}", f"fa:16:3e:{subnet:02x}:00:{index:02x}",
              f"10.{subnet}.0.{index}", network, port_security)  # fmt: skip


A1, A2, A3 = _vm("a1", NET_A, 1, 1), _vm("a2", NET_A, 2, 1), _vm("a3", NET_A, 3, 1, False)
W0, W4 = _vm("w0", NET_A, 10, 1), _vm("w4", NET_A, 14, 1)  # plugged untagged / with tag 4095
B1, B2 = _vm("b1", NET_B, 1, 2), _vm("b2", NET_B, 2, 2)
F1, F2 = _vm("f1", NET_F, 1, 3), _vm("f2", NET_F, 2, 3)
X1, X2 = _vm("x1", NET_X, 1, 4), _vm("x2", NET_X, 2, 4)
ALL = (A1, A2, A3, W0, W4, B1, B2, F1, F2, X1, X2)
VX_PORT = tunnel_port_name("vxlan", REMOTE_IP) or "vxlan-?"


def cloud() -> SimulatedCloud:
    rules = (CloudRule(direction="egress"), CloudRule(direction="ingress"))
    return SimulatedCloud(
        networks={
            NET_A: CloudNetwork(network_type="vlan", physical_network="physnet1",
                                segmentation_id=SEG_A),
            NET_B: CloudNetwork(network_type="vlan", physical_network="physnet1",
                                segmentation_id=SEG_B),
            NET_F: CloudNetwork(network_type="flat", physical_network="physnet1"),
            NET_X: CloudNetwork(network_type="vxlan", segmentation_id=VNI),
        },
        security_groups={SG: CloudSecurityGroup(rules=rules)},
        ports=tuple(
            CloudPort.model_validate({"port_id": vm.port_id, "network_id": vm.network,
                                      "mac_address": vm.mac, "fixed_ips": [{"ip_address": vm.ip}],
                                      "port_security_enabled": vm.port_security,
                                      "security_groups": [SG] if vm.port_security else []})
            for vm in ALL
        ),
        tunnels=(CloudTunnel(ip_address=REMOTE_IP, host="compute-remote"),),
    )  # fmt: skip


# -- what each interface receives ------------------------------------------------------------
# interface name -> the set of (VLAN tags outermost first, tunnel id or None) it received
Seen = dict[str, set[tuple[tuple[int, ...], int | None]]]
UNTAGGED: tuple[tuple[int, ...], int | None] = ((), None)


def tagged(vlan: int) -> tuple[tuple[int, ...], int | None]:
    return ((vlan,), None)


def tunnelled(vni: int) -> tuple[tuple[int, ...], int | None]:
    return ((), vni)


def deliveries(
    actions: str, ports: dict[int, tuple[str, bool]], vlans: tuple[int, ...] = ()
) -> Seen:
    """Interpret datapath actions: what each output port receives (its VLAN tags; for a tunnel
    port, the tunnel id). ``ports``: datapath port -> (interface name, is a tunnel)."""
    seen: Seen = {}

    def run(tokens: list[str], stack: tuple[int, ...], tunnel: int | None) -> None:
        for token in tokens:
            if token.isdigit():
                name, is_tunnel = ports.get(int(token), (f"odp{token}", False))
                seen.setdefault(name, set()).add((stack, tunnel if is_tunnel else None))
            elif token.startswith("push_vlan("):
                found = re.search(r"vid=(\d+)", token)
                assert found is not None, token
                stack = (int(found.group(1)), *stack)
            elif token == "pop_vlan":
                stack = stack[1:]
            elif token.startswith("set(tunnel("):
                found = re.search(r"tun_id=0x([0-9a-f]+)", token)
                tunnel = int(found.group(1), 16) if found else 0
            elif token.startswith("clone("):
                run(split_actions(token[len("clone(") : -1]), stack, tunnel)
            # ct(), recirc(), set(eth()), ...: nothing an interface would see as VLAN / tunnel

    run(split_actions(actions), vlans, None)
    return seen


def odp_ports(sandbox: OVSSandbox) -> dict[int, tuple[str, bool]]:
    """Datapath port number -> (interface name, is a tunnel), over every bridge (one dummy
    datapath; the tunnel ports of a type share one datapath port)."""
    show = sandbox.appctl("dpif/show")
    return {
        int(m["odp"]): (m["name"], m["type"] in ("vxlan", "gre", "geneve"))
        for m in re.finditer(r"^\s+(?P<name>\S+) \d+/(?P<odp>\d+): \((?P<type>[a-z-]+)", show, re.M)
    }


def trace(sandbox: OVSSandbox, flow: str, bridge: str = "br-int") -> tuple[Seen, str]:
    """Where one packet goes (every interface, unfiltered), and the whole trace for messages."""
    out = sandbox.appctl("ofproto/trace", bridge, flow)
    return trace_deliveries(sandbox, out, flow), out


def trace_deliveries(sandbox: OVSSandbox, out: str, flow: str) -> Seen:
    lines = [line for line in out.splitlines() if line.startswith("Datapath actions:")]
    assert lines, out
    vlan = re.search(r"(?:^|,)dl_vlan=(\d+)", flow)
    start = (int(vlan.group(1)),) if vlan else ()
    return deliveries(lines[-1].split(":", 1)[1].strip(), odp_ports(sandbox), start)


def arp_flow(vm: VM, dst_mac: str, target: str, op: int = 1, ofp: int | None = None) -> str:
    """An ARP from ``vm``, in ofproto/trace's syntax (from its own MAC and IP)."""
    return (f"arp,in_port={ofp},dl_src={vm.mac},dl_dst={dst_mac},arp_op={op},"
            f"arp_spa={vm.ip},arp_tpa={target},arp_sha={vm.mac}")  # fmt: skip


def arp_packet(src_mac: str, src_ip: str, dst_mac: str, target: str, op: int = 1,
               vlan: int | None = None) -> str:  # fmt: skip
    """The same ARP in netdev-dummy/receive's (datapath flow) syntax, optionally tagged."""
    arp = (f"eth_type(0x0806),arp(sip={src_ip},tip={target},op={op},sha={src_mac},"
           "tha=00:00:00:00:00:00)")  # fmt: skip
    eth = f"eth(src={src_mac},dst={dst_mac})"
    if vlan is None:
        return f"{eth},{arp}"
    return f"{eth},eth_type(0x8100),vlan(vid={vlan},pcp=0),encap({arp})"


@dataclass(frozen=True)
class Frame:
    vlans: tuple[int, ...]
    ethertype: int
    arp_target: str | None


def read_pcap(path: Path) -> list[Frame]:
    """A pcap (little-endian, microseconds, as netdev-dummy writes it), frame by frame."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    frames, offset = [], 24
    while offset + 16 <= len(data):
        _, _, length, _ = struct.unpack_from("<IIII", data, offset)
        offset += 16
        if offset + length > len(data):
            break  # a record being written
        raw = data[offset : offset + length]
        offset += length
        vlans: list[int] = []
        at = 12
        (ethertype,) = struct.unpack_from("!H", raw, at)
        while ethertype in (0x8100, 0x88A8):
            (tci,) = struct.unpack_from("!H", raw, at + 2)
            vlans.append(tci & 0xFFF)
            at += 4
            (ethertype,) = struct.unpack_from("!H", raw, at)
        body = raw[at + 2 :]
        target = ".".join(str(b) for b in body[24:28]) if ethertype == 0x0806 else None
        frames.append(Frame(tuple(vlans), ethertype, target))
    return frames


class Wire:
    """Every watched dummy interface transmits into its own pcap; ``seen`` reads them back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, Path] = {}
        self._generation = itertools.count()
        self._nonces = itertools.count(1)

    def capture(self, name: str) -> str:
        """The Interface option that makes ``name`` write what it transmits to a new file (a
        re-plugged interface gets a new one: the old file may still be open)."""
        path = self.directory / f"{name}-{next(self._generation)}.pcap"
        self.files[name] = path
        return f"options:tx_pcap={path}"

    def nonce(self) -> str:
        n = next(self._nonces)
        return f"10.250.{n // 250}.{n % 250 + 1}"

    def seen(self, nonce: str) -> Seen:
        out: Seen = {}
        for name, path in self.files.items():
            for frame in read_pcap(path):
                if frame.arp_target == nonce:
                    out.setdefault(name, set()).add((frame.vlans, None))
        return out


@dataclass
class World:
    sandbox: OVSSandbox
    wire: Wire
    sim: NeutronServerSimulator
    state_path: Path
    url: str

    def config(self, **ovs: Any) -> AgentConfig:
        return AgentConfig.model_validate(
            {
                "host": "compute-efw",
                "transport_url": self.url,
                "ovs": {"ovsdb_connection": self.sandbox.ovsdb_connection,
                        "datapath_type": "dummy", "bridge_mappings": ["physnet1:br-phys"],
                        "local_ip": LOCAL_IP, **ovs},
                "agent": {"state_path": str(self.state_path), "report_interval": 0,
                          "tunnel_types": ["vxlan"], "rpc_response_timeout": 2.0,
                          "rpc_response_max_timeout": 4.0},
            }
        )  # fmt: skip

    def plug(self, *vms: VM, tag: int | None = None) -> None:
        """Nova/os-vif's add-port, all in one transaction; ``tag=4095`` is isolate_vif."""
        args: list[str] = []
        for vm in vms:
            port_tag = [] if tag is None else [f"tag={tag}"]
            args += ["--", "--may-exist", "add-port", "br-int", vm.tap, *port_tag,
                     "--", "set", "Interface", vm.tap, "type=dummy",
                     f"external_ids:iface-id={vm.port_id}", f"external_ids:attached-mac={vm.mac}",
                     self.wire.capture(vm.tap)]  # fmt: skip
        self.sandbox.vsctl(*args[1:])

    def unplug(self, *vms: VM) -> None:
        args: list[str] = []
        for vm in vms:
            args += ["--", "--if-exists", "del-port", "br-int", vm.tap]
        self.sandbox.vsctl(*args[1:])

    def ofport(self, vm: VM) -> int:
        return ofport(self.sandbox, vm.tap)

    def tag(self, vm: VM) -> str:
        return self.sandbox.vsctl("get", "Port", vm.tap, "tag").strip()

    def trace_from(self, vm: VM, dst_mac: str = BROADCAST, op: int = 1) -> tuple[Seen, str]:
        target = "10.250.0.1" if op == 1 else OUTSIDE_IP
        return trace(self.sandbox, arp_flow(vm, dst_mac, target, op, self.ofport(vm)))

    def trace_uplink(self, dst_mac: str, vlan: int | None) -> tuple[Seen, str]:
        tag = "" if vlan is None else f",dl_vlan={vlan}"
        flow = (f"arp,in_port={ofport(self.sandbox, UPLINK)}{tag},dl_src={OUTSIDE_MAC},"
                f"dl_dst={dst_mac},arp_op=1,arp_spa={OUTSIDE_IP},arp_tpa=10.250.0.1,"
                f"arp_sha={OUTSIDE_MAC}")  # fmt: skip
        return trace(self.sandbox, flow, "br-phys")

    def rx_packets(self, bridge: str, name: str) -> int:
        found = re.search(r"rx pkts=(\d+)", self.sandbox.ofctl("dump-ports", bridge, name))
        assert found is not None, name
        return int(found.group(1))

    async def inject(self, interface: str, packet: str, nonce: str, reaches: set[str]) -> Seen:
        """Inject ``packet`` (carrying ``nonce``) on ``interface``; wait until every interface
        in ``reaches`` transmitted it, then until the datapath is done with it; return where
        it went."""
        self.sandbox.appctl("netdev-dummy/receive", interface, packet)
        await wait_until(lambda: reaches <= set(self.wire.seen(nonce)), within=10,
                         what=f"{nonce} from {interface} at {sorted(reaches)}")  # fmt: skip
        await self.barrier()
        return self.wire.seen(nonce)

    async def barrier(self) -> None:
        """Every dummy interface is polled, and its packets executed, by ovs-vswitchd's main
        thread one after the other: once a packet injected now on br-mark came out, whatever
        was injected and received before it has been executed to the end (all its outputs)."""
        nonce = self.wire.nonce()
        packet = arp_packet(OUTSIDE_MAC, OUTSIDE_IP, BROADCAST, nonce)
        self.sandbox.appctl("netdev-dummy/receive", MARK_IN, packet)
        await wait_until(lambda: MARK_OUT in self.wire.seen(nonce), within=10,
                         what="the barrier packet")  # fmt: skip

    async def inject_from(self, vm: VM, dst_mac: str, reaches: set[str], op: int = 1) -> Seen:
        nonce = self.wire.nonce()
        return await self.inject(vm.tap, arp_packet(vm.mac, vm.ip, dst_mac, nonce, op), nonce,
                                 reaches)  # fmt: skip

    async def inject_uplink(self, dst_mac: str, vlan: int | None, reaches: set[str]) -> Seen:
        nonce = self.wire.nonce()
        packet = arp_packet(OUTSIDE_MAC, OUTSIDE_IP, dst_mac, nonce, vlan=vlan)
        return await self.inject(UPLINK, packet, nonce, reaches)

    async def inject_dropped(self, vm: VM) -> Seen:
        """A broadcast from ``vm`` that should go nowhere: once its interface counted it (the
        main thread received it and executes it at once) and a barrier went through, whatever
        it did is in the pcaps."""
        before = self.rx_packets("br-int", vm.tap)
        nonce = self.wire.nonce()
        self.sandbox.appctl("netdev-dummy/receive", vm.tap,
                            arp_packet(vm.mac, vm.ip, BROADCAST, nonce))  # fmt: skip
        await wait_until(lambda: self.rx_packets("br-int", vm.tap) > before, within=10,
                         what=f"{vm.tap} received the packet")  # fmt: skip
        await self.barrier()
        return self.wire.seen(nonce)


def vms(seen: Seen, *extra: str) -> Seen:
    """Only the interfaces the tests reason about: the VMs, the uplink, the tunnel port."""
    names = {vm.tap for vm in ALL} | {UPLINK, VX_PORT, *extra}
    return {name: what for name, what in seen.items() if name in names}


def flows_naming_ofport(sandbox: OVSSandbox, number: int, bridge: str = "br-int") -> list[str]:
    """br-int's flows that match, output to or load ``number`` as an ofport."""

    def names(line: str) -> bool:
        for m in PORT_NUMBER.finditer(line):
            if m["head"] == "set_field:0x" and not m["tail"]:
                continue
            if int(m["n"], 16 if m["head"].endswith("0x") else 10) == number:
                return True
        return False

    return [line for line in sandbox.dump_flows(bridge) if names(line)]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def sandbox() -> Iterator[OVSSandbox]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-xf-", dir="/tmp"))
    with running_sandbox(directory, tunnels=True) as box:  # tunnels: real vxlan vports
        box.add_physical_bridge("br-phys")
        yield box


@contextlib.asynccontextmanager
async def world(sandbox: OVSSandbox, url: str, state_path: Path) -> AsyncIterator[World]:
    wire = Wire(sandbox.directory)
    sandbox.vsctl("set", "Interface", UPLINK, wire.capture(UPLINK))
    # br-mark: MARK_IN -> MARK_OUT, nothing else; see World.barrier
    sandbox.vsctl("add-br", "br-mark", "--", "set", "Bridge", "br-mark", "datapath_type=dummy",
                  "fail-mode=secure", "protocols=OpenFlow13",
                  "--", "add-port", "br-mark", MARK_IN,
                  "--", "set", "Interface", MARK_IN, "type=dummy", "ofport_request=1",
                  "--", "add-port", "br-mark", MARK_OUT,
                  "--", "set", "Interface", MARK_OUT, "type=dummy", "ofport_request=2",
                  wire.capture(MARK_OUT))  # fmt: skip
    sandbox.ofctl("add-flow", "br-mark", "in_port=1,actions=output:2")
    async with simulator(url, cloud()) as sim:
        yield World(sandbox, wire, sim, state_path, url)


async def wired(w: World, agent: Agent, *ports: VM, within: float = 20.0) -> None:
    core = agent.core
    assert core is not None

    def done() -> bool:
        return all(
            vm.port_id in core.ports and core.ports[vm.port_id].phase is PortPhase.WIRED
            for vm in ports
        )

    await wait_until(done, within=within, what=f"{[vm.port_id for vm in ports]} wired")
    await agent.settled()


async def tunnel_ready(w: World, agent: Agent) -> None:
    """The vxlan port to the remote endpoint exists and traces show tunnel headers."""
    await wait_until(lambda: VX_PORT in w.sandbox.vsctl("list-ports", "br-tun").split(),
                     what="the vxlan port")  # fmt: skip
    await agent.settled()
    w.sandbox.kernel_style_tunnels("br-int")


def taps(*ports: VM) -> set[str]:
    return {vm.tap for vm in ports}


# -- 1. isolation -----------------------------------------------------------------------------
async def test_networks_on_one_br_int_are_isolated_by_trace_and_by_packets(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    async with (
        world(sandbox, rabbit_vhost, state_path) as w,
        running_agent(w.config(), canary_interval=0) as agent,
    ):
        w.plug(A1, A2, A3, B1, B2, F1, F2, X1, X2)
        await wired(w, agent, A1, A2, A3, B1, B2, F1, F2, X1, X2)
        await tunnel_ready(w, agent)

        # broadcast: the network's other ports (untagged) and its uplink (its segment)
        expected_flood: list[tuple[VM, Seen]] = [
            (A1, {A2.tap: {UNTAGGED}, A3.tap: {UNTAGGED}, UPLINK: {tagged(SEG_A)}}),
            (B1, {B2.tap: {UNTAGGED}, UPLINK: {tagged(SEG_B)}}),
            (F1, {F2.tap: {UNTAGGED}, UPLINK: {UNTAGGED}}),
            (X1, {X2.tap: {UNTAGGED}, VX_PORT: {tunnelled(VNI)}}),
        ]
        for sender, expected in expected_flood:
            seen, out = w.trace_from(sender)
            assert vms(seen) == expected, f"broadcast from {sender.tap}:\n{out}"

        # unknown unicast: the uplink, and a port without port security may get it too;
        # never outside the network
        seen, out = w.trace_from(A1, UNKNOWN_MAC, op=2)
        assert vms(seen).get(UPLINK) == {tagged(SEG_A)}, out
        assert vms(seen).get(A3.tap) == {UNTAGGED}, out  # port security off: NORMAL's due
        assert set(vms(seen)) <= {UPLINK, A2.tap, A3.tap}, out
        seen, out = w.trace_from(B1, UNKNOWN_MAC, op=2)
        assert vms(seen).get(UPLINK) == {tagged(SEG_B)}, out
        assert set(vms(seen)) <= {UPLINK, B2.tap}, out

        # unicast to a known local MAC: that port only
        for sender, receiver in ((A1, A2), (A2, A3), (B2, B1), (F1, F2), (X2, X1)):
            seen, out = w.trace_from(sender, receiver.mac, op=2)
            assert vms(seen) == {receiver.tap: {UNTAGGED}}, out
        # a MAC of another network is unknown on this one: never delivered across
        seen, out = w.trace_from(A1, B1.mac, op=2)
        assert B1.tap not in seen and set(vms(seen)) <= {UPLINK, A2.tap, A3.tap}, out
        assert vms(seen).get(UPLINK) == {tagged(SEG_A)}, out

        # the same with packets: ARP requests and replies injected on the VMs' interfaces
        got = await w.inject_from(A1, BROADCAST, taps(A2, A3) | {UPLINK})
        assert got == {A2.tap: {UNTAGGED}, A3.tap: {UNTAGGED}, UPLINK: {tagged(SEG_A)}}
        got = await w.inject_from(B2, BROADCAST, taps(B1) | {UPLINK})
        assert got == {B1.tap: {UNTAGGED}, UPLINK: {tagged(SEG_B)}}
        got = await w.inject_from(F2, BROADCAST, taps(F1) | {UPLINK})
        assert got == {F1.tap: {UNTAGGED}, UPLINK: {UNTAGGED}}
        got = await w.inject_from(A2, UNKNOWN_MAC, {UPLINK, A3.tap}, op=2)
        assert got[UPLINK] == {tagged(SEG_A)} and set(got) <= {UPLINK, A1.tap, A3.tap}, got
        got = await w.inject_from(A1, A2.mac, taps(A2), op=2)
        assert got == {A2.tap: {UNTAGGED}}
        got = await w.inject_from(B1, B2.mac, taps(B2), op=2)
        assert got == {B2.tap: {UNTAGGED}}


# -- 2. VLAN translation ------------------------------------------------------------------------
async def test_vlan_translation_to_the_physical_bridge_and_tunnels_and_back(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    async with (
        world(sandbox, rabbit_vhost, state_path) as w,
        running_agent(w.config(), canary_interval=0) as agent,
    ):
        w.plug(A1, A2, B1, F1, F2, X1)
        await wired(w, agent, A1, A2, B1, F1, F2, X1)
        await tunnel_ready(w, agent)
        core = agent.core
        assert core is not None
        local = {net: core.vlans.get(net) for net in (NET_A, NET_B, NET_F, NET_X)}
        assert None not in local.values() and len(set(local.values())) == 4, local

        # out: local VLAN -> segmentation id (vlan), untagged (flat), VNI (vxlan)
        for sender, uplink, expected in (
            (A1, UPLINK, tagged(SEG_A)),
            (B1, UPLINK, tagged(SEG_B)),
            (F1, UPLINK, UNTAGGED),
            (X1, VX_PORT, tunnelled(VNI)),
        ):
            seen, out = w.trace_from(sender, UNKNOWN_MAC, op=2)
            assert vms(seen).get(uplink) == {expected}, out
            assert not ({UPLINK, VX_PORT} - {uplink}) & set(seen), out
            assert ("set(tunnel(" in out) == (sender is X1), out
        seen, out = w.trace_from(X1)
        assert f"set(tunnel(tun_id=0x{VNI:x},src={LOCAL_IP},dst={REMOTE_IP}" in out, out

        # back: segmentation id / untagged / VNI -> the right local port, untagged
        for dst, vlan in ((A1, SEG_A), (B1, SEG_B), (F1, None)):
            seen, out = w.trace_uplink(dst.mac, vlan)
            assert vms(seen) == {dst.tap: {UNTAGGED}}, out
        seen, out = w.trace_uplink(BROADCAST, SEG_A)
        assert vms(seen) == {A1.tap: {UNTAGGED}, A2.tap: {UNTAGGED}}, out
        seen, out = w.trace_uplink(BROADCAST, None)
        assert vms(seen) == {F1.tap: {UNTAGGED}, F2.tap: {UNTAGGED}}, out
        for vlan in (999, local[NET_A]):  # no network there / a local VLAN is not a segment
            assert vlan is not None
            seen, out = w.trace_uplink(BROADCAST, vlan)
            assert not set(vms(seen)) - {UPLINK}, out
        seen, out = trace(
            w.sandbox,
            f"in_port={ofport(w.sandbox, VX_PORT)},tun_id={VNI},tun_src={REMOTE_IP},"
            f"tun_dst={LOCAL_IP},arp,dl_src={OUTSIDE_MAC},dl_dst={X1.mac},arp_op=1,"
            f"arp_spa={OUTSIDE_IP},arp_tpa={X1.ip}",
            "br-tun",
        )
        assert vms(seen) == {X1.tap: {UNTAGGED}}, out

        # the same with packets from the wire
        got = await w.inject_uplink(BROADCAST, SEG_A, taps(A1, A2))
        assert got == {A1.tap: {UNTAGGED}, A2.tap: {UNTAGGED}}
        got = await w.inject_uplink(A2.mac, SEG_A, taps(A2))
        assert got == {A2.tap: {UNTAGGED}}
        got = await w.inject_uplink(BROADCAST, SEG_B, taps(B1))
        assert got == {B1.tap: {UNTAGGED}}
        got = await w.inject_uplink(BROADCAST, None, taps(F1, F2))
        assert got == {F1.tap: {UNTAGGED}, F2.tap: {UNTAGGED}}
        got = await w.inject_from(B1, BROADCAST, {UPLINK})
        assert got == {UPLINK: {tagged(SEG_B)}}
        got = await w.inject_from(F1, BROADCAST, {UPLINK, F2.tap})
        assert got == {UPLINK: {UNTAGGED}, F2.tap: {UNTAGGED}}


# -- 3. admin down ----------------------------------------------------------------------------
async def set_admin_state(w: World, agent: Agent, vm: VM, up: bool) -> None:
    core = agent.core
    assert core is not None
    w.sim.add_port(w.sim.ports[vm.port_id].model_copy(update={"admin_state_up": up}))
    await w.sim.notify_port_update(vm.port_id)
    phase = PortPhase.WIRED if up else PortPhase.DEAD
    await wait_until(lambda: core.ports[vm.port_id].phase is phase, what=f"{vm.tap} {phase}")
    await agent.settled()


async def test_admin_down_port_drops_everything_from_and_to_it_until_up_again(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    async with (
        world(sandbox, rabbit_vhost, state_path) as w,
        running_agent(w.config(port_metadata_delay=0.1), canary_interval=0) as agent,
    ):
        w.plug(A1, A2, A3)
        await wired(w, agent, A1, A2, A3)
        seen, out = w.trace_from(A2)
        flood_a2 = {A1.tap: {UNTAGGED}, A3.tap: {UNTAGGED}, UPLINK: {tagged(SEG_A)}}
        assert vms(seen) == flood_a2, out

        await set_admin_state(w, agent, A2, up=False)
        for dst in (BROADCAST, A1.mac, UNKNOWN_MAC):  # from it: nothing at all
            seen, out = w.trace_from(A2, dst, op=1 if dst == BROADCAST else 2)
            assert seen == {}, out
        seen, out = w.trace_from(A1)  # to it: neither floods ...
        assert vms(seen) == {A3.tap: {UNTAGGED}, UPLINK: {tagged(SEG_A)}}, out
        seen, out = w.trace_from(A1, A2.mac, op=2)  # ... nor its own MAC
        assert A2.tap not in seen, out
        seen, out = w.trace_uplink(A2.mac, SEG_A)
        assert A2.tap not in seen, out
        seen, out = w.trace_uplink(BROADCAST, SEG_A)
        assert vms(seen) == {A1.tap: {UNTAGGED}, A3.tap: {UNTAGGED}}, out
        # packets: nothing from it gets anywhere, nothing reaches it
        assert await w.inject_dropped(A2) == {}
        got = await w.inject_from(A1, BROADCAST, taps(A3) | {UPLINK})
        assert A2.tap not in got, got
        got = await w.inject_uplink(BROADCAST, SEG_A, taps(A1, A3))
        assert A2.tap not in got, got
        await wait_until(lambda: w.tag(A2) == "4095", what="the dead VLAN tag written")

        await set_admin_state(w, agent, A2, up=True)
        seen, out = w.trace_from(A2)
        assert vms(seen) == flood_a2, out
        seen, out = w.trace_from(A1, A2.mac, op=2)
        assert vms(seen) == {A2.tap: {UNTAGGED}}, out
        got = await w.inject_from(A2, BROADCAST, taps(A1, A3) | {UPLINK})
        assert got == {A1.tap: {UNTAGGED}, A3.tap: {UNTAGGED}, UPLINK: {tagged(SEG_A)}}
        got = await w.inject_uplink(A2.mac, SEG_A, taps(A2))
        assert got == {A2.tap: {UNTAGGED}}


# -- 4. the windows before a port is wired ------------------------------------------------------
async def assert_isolated_window(w: World, *waiting: VM) -> None:
    """Ports not wired yet: nothing from them goes anywhere, nothing of their network (or any
    other) reaches them."""
    for vm in waiting:
        seen, out = w.trace_from(vm)
        assert seen == {}, f"{vm.tap} forwards before its flows are in:\n{out}"
        seen, out = w.trace_from(vm, UNKNOWN_MAC, op=2)
        assert seen == {}, f"{vm.tap} forwards before its flows are in:\n{out}"
    for sender in (A1, B1):
        seen, out = w.trace_from(sender)
        assert not taps(*waiting) & set(seen), out
    for vlan in (SEG_A, SEG_B, None):
        seen, out = w.trace_uplink(BROADCAST, vlan)
        assert not taps(*waiting) & set(seen), out
    for vm in waiting:
        seen, out = w.trace_from(A1, vm.mac, op=2)
        assert vm.tap not in seen, out
        assert await w.inject_dropped(vm) == {}
    got = await w.inject_from(A1, BROADCAST, taps(A2) | {UPLINK})
    assert not taps(*waiting) & set(got), got
    got = await w.inject_uplink(BROADCAST, None, taps(F1))  # flat: untagged, as the VM sends
    assert not taps(*waiting) & set(got), got


async def assert_forwarding(w: World, *ports: VM) -> None:
    """``ports`` forward both ways, by trace and packets, on network A, whose wired ports are
    exactly A1, A2 and ``ports``."""
    members = taps(A1, A2, *ports)
    for vm in ports:
        seen, out = w.trace_from(vm)
        expected = {tap: {UNTAGGED} for tap in members - {vm.tap}} | {UPLINK: {tagged(SEG_A)}}
        assert vms(seen) == expected, out
        seen, out = w.trace_from(A1, vm.mac, op=2)
        assert vms(seen) == {vm.tap: {UNTAGGED}}, out
        got = await w.inject_from(vm, BROADCAST, members - {vm.tap} | {UPLINK})
        assert got == expected, got
        got = await w.inject_uplink(vm.mac, SEG_A, {vm.tap})
        assert got == {vm.tap: {UNTAGGED}}, got
    seen, out = w.trace_uplink(BROADCAST, SEG_A)
    assert vms(seen) == {tap: {UNTAGGED} for tap in members}, out
    seen, out = w.trace_from(B1)  # another network's broadcast
    assert not members & set(seen), out


async def test_window_while_the_server_has_no_details_then_forwarding_whatever_the_tag(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    """Plugged untagged and with os-vif's 4095: isolated while neutron-server fails their
    details; forwarding as soon as they are wired, while Port.tag is still what os-vif left
    (the metadata delay is 30 s here). Fails on the NORMAL design (the tag comes first)."""
    async with world(sandbox, rabbit_vhost, state_path) as w:
        config = w.config(port_metadata_delay=30.0)
        async with running_agent(config, canary_interval=0) as agent:
            w.plug(A1, A2, B1, F1)
            core = agent.core
            assert core is not None
            await wired(w, agent, A1, A2, B1, F1)
            w.sim.fail_devices = {W0.port_id, W4.port_id}
            asked = w.sim.calls[DETAILS]
            w.plug(W0)
            w.plug(W4, tag=4095)
            await assert_isolated_window(w, W0, W4)  # whatever the agent has seen so far
            await wait_until(
                lambda: w.sim.calls[DETAILS] > asked
                and all(vm.port_id in core.ports
                        and core.ports[vm.port_id].phase is PortPhase.FAILED for vm in (W0, W4)),
                what="the server failed W0's and W4's details",
            )  # fmt: skip
            await assert_isolated_window(w, W0, W4)
            assert (w.tag(W0), w.tag(W4)) in (("[]", "4095"), ("4095", "4095"))

            w.sim.fail_devices = set()
            await w.sim.notify_port_update(W0.port_id)
            await w.sim.notify_port_update(W4.port_id)
            await wired(w, agent, W0, W4)
            tags = (w.tag(W0), w.tag(W4))
            await assert_forwarding(w, W0, W4)
            # all of the above ran with the tags os-vif left, not the local VLAN
            assert (w.tag(W0), w.tag(W4)) == tags == ("[]", "4095"), tags


async def test_window_while_the_agent_is_stopped_then_wired_and_the_tag_written(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    """Ports plugged while no agent runs (the switch keeps the last agent's flows): isolated
    until the agent is back and wires them; then the local VLAN tag is written (small delay).
    Fails on the NORMAL design: an untagged port is a trunk for NORMAL."""
    async with world(sandbox, rabbit_vhost, state_path) as w:
        config = w.config(port_metadata_delay=0.2)
        async with running_agent(config, canary_interval=0) as agent:
            w.plug(A1, A2, B1, F1)
            await wired(w, agent, A1, A2, B1, F1)
            await wait_until(lambda: w.tag(A1) != "[]", what="A1's tag written")
        w.plug(W0)
        w.plug(W4, tag=4095)
        await assert_isolated_window(w, W0, W4)

        async with running_agent(config, canary_interval=0) as agent:
            core = agent.core
            assert core is not None
            await wired(w, agent, W0, W4)
            await assert_forwarding(w, W0, W4)
            vlan = core.vlans.get(NET_A)
            assert vlan is not None and vlan != 4095
            await wait_until(lambda: w.tag(W0) == w.tag(W4) == str(vlan),
                             what="the local VLAN written as Port.tag")  # fmt: skip
            other = w.sandbox.vsctl("get", "Port", W4.tap, "other_config").replace('"', "")
            assert f"net_uuid={NET_A}" in other and f"segmentation_id={SEG_A}" in other, other
            await assert_forwarding(w, W0, W4)


# -- 5. VM reboot -----------------------------------------------------------------------------
async def test_vm_reboot_new_ofport_forwards_and_the_old_one_leaves_every_flow(
    sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path
) -> None:
    async with world(sandbox, rabbit_vhost, state_path) as w:
        config = w.config(port_metadata_delay=30.0)
        grace = 1.0
        async with running_agent(config, canary_interval=0, unplug_grace=grace) as agent:
            w.plug(A1, A2, A3, B1)
            core = agent.core
            assert core is not None
            await wired(w, agent, A1, A2, A3, B1)
            old = w.ofport(A2)
            assert flows_naming_ofport(w.sandbox, old)

            w.unplug(A2)  # libvirt's del-port, then add-port: a new ofport
            w.plug(A2)
            new = w.ofport(A2)
            assert new != old
            await wait_until(lambda: core.ports[A2.port_id].ofport == new, what="rewired")
            await wired(w, agent, A2)
            assert w.tag(A2) == "[]"  # nothing written yet (30 s): it forwards all the same
            await assert_forwarding(w, A2, A3)
            seen, out = w.trace_from(B1)
            assert A2.tap not in seen, out

            await wait_until(lambda: not flows_naming_ofport(w.sandbox, old),
                             within=grace + 10, what="no flow names the old ofport")  # fmt: skip
            assert flows_naming_ofport(w.sandbox, new)
            await assert_forwarding(w, A2, A3)
