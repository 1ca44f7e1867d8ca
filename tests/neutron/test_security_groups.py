"""Security groups edited through a REAL neutron 29 server's REST API reach aovs' flows.

One hypervisor (host-a: a private OVS and an aovs agent with the openvswitch firewall) and one
VLAN network on physnet1 serve every test of this module (they cost seconds to start and stop).
Each test creates its own groups and ports, changes them through the API only, and checks the
verdicts with ``ovs-appctl ofproto/trace`` on br-int: packets from the network enter on the
``int-br-phys`` patch port with the network's segmentation VLAN, packets from a VM on its tap;
``--ct-next`` continues through conntrack as tests/integration/test_firewall_dataplane.py does
(its ``Bridge.trace`` parses the datapath actions). A change must show within a few seconds
(polled with a deadline; ~1-2 s expected).

Every test also checks that neutron-server logged no ERROR/Traceback, and no warning about the
``security_group_info_for_devices`` version (aovs calls it at 1.3, the server's version).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from neutron_world import Hypervisor, hypervisors, in_thread, poll, wait_agents_alive
from neutron_world import wait_port_status as wait_status
from server.neutron_server import LogMark, NeutronApiError, NeutronServer
from tests.integration.test_firewall_dataplane import Bridge

from aovs.rpc.events import SecurityGroupsMemberUpdated
from aovs.rpc.resources import AddressGroupPush

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CIDR = "10.77.0.0/24"
SEG_VLAN_NET = {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
OUTSIDE_MAC = "fa:16:3e:99:99:99"
NEW = ("trk,new",)
EST = ("trk,est",)
EST_REPLY = ("trk,est,rpl",)
WITHIN = 6.0  # s for an API change to show in the flows (expected: 1-2 s; the box is shared)
SG_VERSION_WARNING = "inconsistent version between server and agents"


# -- the world: one hypervisor and one VLAN network for the module -----------------------------
@dataclass
class World:
    server: NeutronServer
    host: Hypervisor
    network: dict[str, Any]
    subnet: dict[str, Any]
    received: list[object] = field(default_factory=list)  # what the agent got from neutron
    latencies: list[tuple[str, float]] = field(default_factory=list)  # expect(): what, seconds

    @property
    def segmentation_id(self) -> int:
        return int(self.network["provider:segmentation_id"])

    # -- REST, in a thread (the agent runs on this event loop) --
    async def security_group(self, *, stateful: bool = True, **attrs: Any) -> dict[str, Any]:
        body = {"name": f"sg-{uuid.uuid4().hex[:6]}", "stateful": stateful, **attrs}
        group: dict[str, Any] = (
            await in_thread(self.server.post, "/v2.0/security-groups", {"security_group": body})
        )["security_group"]
        return group

    async def rule(self, group_id: str, direction: str = "ingress", **attrs: Any) -> str:
        body = {"security_group_id": group_id, "direction": direction, "ethertype": "IPv4",
                **attrs}  # fmt: skip
        rule: dict[str, Any] = (
            await in_thread(
                self.server.post, "/v2.0/security-group-rules", {"security_group_rule": body}
            )
        )["security_group_rule"]
        return str(rule["id"])

    async def delete_rule(self, rule_id: str) -> None:
        await in_thread(self.server.delete, f"/v2.0/security-group-rules/{rule_id}")

    async def vm(self, *, ip: str | None = None, **attrs: Any) -> dict[str, Any]:
        """A port bound to host-a, plugged as nova does, ACTIVE (its flows committed)."""
        if ip is not None:
            attrs["fixed_ips"] = [{"subnet_id": self.subnet["id"], "ip_address": ip}]
        port: dict[str, Any] = await in_thread(
            self.server.create_port, self.network["id"], self.host.host, **attrs
        )
        assert port["binding:vif_type"] == "ovs", port
        self.host.plug(port)
        await wait_status(self.server, port["id"], "ACTIVE", within=30)
        await poll(lambda: self.host.ofport(port["id"]), lambda n: n > 0, within=10,
                   what="the tap's ofport")  # fmt: skip
        return port

    async def update_port(self, port_id: str, **attrs: Any) -> dict[str, Any]:
        port: dict[str, Any] = await in_thread(self.server.update_port, port_id, **attrs)
        return port

    async def remove_vm(self, port_id: str) -> None:
        self.host.unplug(port_id)
        await in_thread(self.server.delete_port, port_id)

    # -- packets and verdicts --
    def datapath_ports(self) -> dict[str, int]:
        """Every datapath port of the host (all its bridges share one dummy datapath)."""
        show = self.host.sandbox.appctl("dpif/show")
        return {name: int(odp) for name, odp in re.findall(r"^\s+(\S+) \d+/(\d+):", show, re.M)}

    def trace(self, packet: str, ct_next: Iterable[str] = ()) -> set[str] | None:
        """The datapath ports (by name) the packet leaves by on br-int, None if dropped."""
        odp = self.datapath_ports()
        identity = {n: n for n in odp.values()}  # Bridge.trace's ofports: datapath numbers here
        bridge = Bridge(self.host.sandbox, "br-int", identity, self.host.sandbox.directory)
        outputs = bridge.trace(packet, ct_next)
        if outputs is None:
            return None
        by_odp = {number: name for name, number in odp.items()}
        return {by_odp[n] for n in outputs}

    def trace_text(self, packet: str) -> str:
        return self.host.sandbox.appctl("ofproto/trace", "br-int", packet)

    def from_network(self, port: dict[str, Any], l4: str, src_ip: str) -> str:
        """A packet to ``port`` arriving from physnet1 (its segmentation VLAN, on int-br-phys)."""
        patch = self.host.sandbox.vsctl("get", "Interface", "int-br-phys", "ofport").strip()
        return (f"in_port={patch},dl_vlan={self.segmentation_id},dl_src={OUTSIDE_MAC},"
                f"dl_dst={port['mac_address']},{l4},nw_src={src_ip},"
                f"nw_dst={fixed_ip(port)}")  # fmt: skip

    def from_vm(self, port: dict[str, Any], l4: str, *, src_ip: str | None = None,
                src_mac: str | None = None, dst_ip: str = "203.0.113.1",
                dst_mac: str = OUTSIDE_MAC) -> str:  # fmt: skip
        """A packet the VM behind ``port`` sends (by default to the network)."""
        return (f"in_port={self.host.ofport(port['id'])},dl_src={src_mac or port['mac_address']},"
                f"dl_dst={dst_mac},{l4},nw_src={src_ip or fixed_ip(port)},"
                f"nw_dst={dst_ip}")  # fmt: skip

    async def expect(
        self, what: str, packet: str, ct_next: Iterable[str], verdict: Any, within: float = WITHIN
    ) -> set[str] | None:
        """Poll the trace until ``verdict(outputs)`` holds (a change reaching the flows)."""
        states, started = tuple(ct_next), time.monotonic()
        result: set[str] | None = await poll(
            lambda: self.trace(packet, states), verdict, within=within, what=what
        )
        self.latencies.append((what, time.monotonic() - started))
        return result

    def tap(self, port: dict[str, Any]) -> str:
        return self.host.plugged[port["id"]]

    def admitted_to(self, port: dict[str, Any]) -> Any:
        tap = self.tap(port)
        return lambda out: out is not None and tap in out

    def sent_out(self, out: set[str] | None) -> bool:
        """Left by physnet1's uplink (br-int NORMAL -> int-br-phys -> br-phys -> uplink)."""
        return out is not None and "br-phys-up" in out

    def received_since(self, index: int, kind: type) -> list[object]:
        return [item for item in self.received[index:] if isinstance(item, kind)]


def fixed_ip(port: dict[str, Any]) -> str:
    return str(port["fixed_ips"][0]["ip_address"])


def dropped(out: set[str] | None) -> bool:
    return out is None


def check_server_log(world: World, start: Start) -> None:
    """No ERROR/Traceback since the test's start, and no warning about the version of the
    security_group_info_for_devices calls the agent made since (at least one)."""
    server, mark = world.server, start.mark
    assert world.host.agent.stats.rpc_sg_calls > start.sg_calls, "no security group info fetched"
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)
    version = [
        line
        for line in server.warning_lines(since=mark)
        if SG_VERSION_WARNING in line or "security_group_info_for_devices" in line
    ]
    assert not version, "neutron-server warned about security_group_info_for_devices:\n" + (
        "\n".join(version)
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(neutron_server: NeutronServer) -> AsyncIterator[World]:
    server = neutron_server
    async with hypervisors(server.transport_url, "aovs-nsg-") as factory:
        host = await factory("host-a")
        await wait_agents_alive(server, ["host-a"])
        network = await in_thread(server.create_network, **SEG_VLAN_NET)
        subnet = await in_thread(server.create_subnet, network["id"], CIDR)
        world = World(server, host, network, subnet)
        apply = host.agent._apply

        def recording_apply(item: object, now: float) -> None:
            if not type(item).__name__.endswith("Event"):  # OVSDB rows are not neutron's
                world.received.append(item)
            apply(item, now)

        host.agent._apply = recording_apply  # type: ignore[method-assign]
        try:
            yield world
        finally:
            kinds = sorted({type(item).__name__ for item in world.received})
            print(f"\nhost-a's agent received from neutron-server: {kinds}")
            print("API change -> flows (s): " + ", ".join(
                f"{what}: {seconds:.2f}" for what, seconds in world.latencies))  # fmt: skip
            await cleanup_network(server, host, network["id"])


async def cleanup_network(server: NeutronServer, host: Hypervisor, network_id: str) -> None:
    ports = (await in_thread(server.get, f"/v2.0/ports?network_id={network_id}"))["ports"]
    for port in ports:
        host.unplug(port["id"])
        await in_thread(server.delete_port, port["id"])
    await in_thread(server.delete_network, network_id)


@dataclass(frozen=True)
class Start:
    """Where a test starts: the server's log mark, the agent's security group fetches."""

    mark: LogMark
    sg_calls: int


@pytest.fixture
def start(world: World) -> Start:
    return Start(world.server.log_mark(), world.host.agent.stats.rpc_sg_calls)


async def quiet_sg_calls(world: World, quiet: float = 1.0, within: float = 15.0) -> int:
    """Until the agent made no security_group_info_for_devices call for ``quiet`` s (earlier
    notifications answered); the count then."""
    stats = world.host.agent.stats
    deadline = time.monotonic() + within
    last, since = stats.rpc_sg_calls, time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the agent keeps fetching security group info"
        await asyncio.sleep(0.1)
        if stats.rpc_sg_calls != last:
            last, since = stats.rpc_sg_calls, time.monotonic()
    return last


# -- 1. rules added and deleted ----------------------------------------------------------------
async def test_rule_added_then_deleted_and_a_remote_ip_prefix(world: World, start: Start) -> None:
    group = await world.security_group()
    vm = await world.vm(security_groups=[group["id"]])
    ssh = world.from_network(vm, "tcp,tp_dst=22", "192.0.2.5")
    assert dropped(world.trace(ssh, NEW)), "ssh admitted before any ingress rule"

    rule = await world.rule(group["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                            remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    assert await world.expect("ssh admitted by the new rule", ssh, NEW, world.admitted_to(vm)) \
        == {world.tap(vm)}  # fmt: skip
    assert dropped(world.trace(world.from_network(vm, "tcp,tp_dst=80", "192.0.2.5"), NEW))

    await world.delete_rule(rule)
    await world.expect("ssh denied once the rule is deleted", ssh, NEW, dropped)

    await world.rule(group["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                     remote_ip_prefix="192.0.2.0/24")  # fmt: skip
    await world.expect("ssh from 192.0.2.5 admitted by 192.0.2.0/24", ssh, NEW,
                       world.admitted_to(vm))  # fmt: skip
    other = world.from_network(vm, "tcp,tp_dst=22", "198.51.100.5")
    assert dropped(world.trace(other, NEW)), "198.51.100.5 admitted by a 192.0.2.0/24 rule"
    # the established half of the rule: a packet of an admitted connection, and not of others
    assert world.trace(ssh, EST) == {world.tap(vm)}
    assert dropped(world.trace(other, EST))

    await world.remove_vm(vm["id"])
    check_server_log(world, start)


# -- 2. remote security group: members join and leave ---------------------------------------
async def test_remote_group_member_joins_and_leaves(world: World, start: Start) -> None:
    group = await world.security_group()
    await world.rule(group["id"], protocol="tcp", port_range_min=5432, port_range_max=5432,
                     remote_group_id=group["id"])  # fmt: skip
    db = await world.vm(security_groups=[group["id"]])
    member_ip = "10.77.0.150"
    pg = world.from_network(db, "tcp,tp_dst=5432", member_ip)
    assert dropped(world.trace(pg, NEW)), f"{member_ip} admitted before it is a member"

    index = len(world.received)
    app = await world.vm(ip=member_ip, security_groups=[group["id"]])  # joins the group
    assert await world.expect(f"{member_ip} admitted once its port is in the group", pg, NEW,
                              world.admitted_to(db)) == {world.tap(db)}  # fmt: skip
    assert world.received_since(index, SecurityGroupsMemberUpdated)
    # the member's own traffic, from its tap (its egress, then db's ingress): admitted
    to_db = world.from_vm(app, "tcp,tp_dst=5432", dst_ip=fixed_ip(db), dst_mac=db["mac_address"])
    assert world.trace(to_db, NEW) == {world.tap(db)}
    assert dropped(world.trace(world.from_network(db, "tcp,tp_dst=5432", "10.77.0.151"), NEW))
    assert dropped(world.trace(world.from_network(db, "tcp,tp_dst=5433", member_ip), NEW))

    await world.update_port(app["id"], security_groups=[])  # leaves the group
    await world.expect(f"{member_ip} denied once its port left the group", pg, NEW, dropped)

    await world.update_port(app["id"], security_groups=[group["id"]])  # back in
    await world.expect(f"{member_ip} admitted again", pg, NEW, world.admitted_to(db))

    await world.remove_vm(app["id"])  # port deleted: leaves for good
    await world.expect(f"{member_ip} denied once its port is deleted", pg, NEW, dropped)

    await world.remove_vm(db["id"])
    check_server_log(world, start)


# -- 3. remote address group: fails closed, follows add/remove_addresses pushes -------------
async def test_remote_address_group_fails_closed_and_follows_pushes(
    world: World, start: Start
) -> None:
    server = world.server
    body = {"name": f"ag-{uuid.uuid4().hex[:6]}", "addresses": ["192.0.2.0/24"]}
    reply = await in_thread(server.post, "/v2.0/address-groups", {"address_group": body})
    ag = reply["address_group"]["id"]
    group = await world.security_group()
    await world.rule(group["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                     remote_address_group_id=ag)  # fmt: skip
    vm = await world.vm(security_groups=[group["id"]])
    inside = world.from_network(vm, "tcp,tp_dst=22", "192.0.2.7")
    outside = world.from_network(vm, "tcp,tp_dst=22", "198.51.100.7")
    await world.expect("192.0.2.7 admitted by the address group", inside, NEW,
                       world.admitted_to(vm))  # fmt: skip
    assert dropped(world.trace(outside, NEW)), "198.51.100.7 admitted: not in the address group"
    assert dropped(world.trace(world.from_network(vm, "tcp,tp_dst=23", "192.0.2.7"), NEW))

    fetched = await quiet_sg_calls(world)
    index = len(world.received)
    await in_thread(server.put, f"/v2.0/address-groups/{ag}/add_addresses",
                    {"addresses": ["198.51.100.0/24"]})  # fmt: skip
    await world.expect("198.51.100.7 admitted after add_addresses", outside, NEW,
                       world.admitted_to(vm))  # fmt: skip
    assert world.received_since(index, AddressGroupPush), world.received[index:]
    assert world.trace(inside, NEW) == {world.tap(vm)}

    await in_thread(server.put, f"/v2.0/address-groups/{ag}/remove_addresses",
                    {"addresses": ["198.51.100.0/24"]})  # fmt: skip
    await world.expect("198.51.100.7 denied after remove_addresses", outside, NEW, dropped)
    assert world.trace(inside, NEW) == {world.tap(vm)}
    # the pushes carried the changes: no security_group_info_for_devices call for them
    assert world.host.agent.stats.rpc_sg_calls == fetched, world.received[index:]

    await world.remove_vm(vm["id"])
    check_server_log(world, start)


# -- 4. port security off and on ------------------------------------------------------------
async def test_port_security_off_passes_everything_and_on_filters_again(
    world: World, start: Start
) -> None:
    group = await world.security_group()
    await world.rule(group["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    vm = await world.vm(port_security_enabled=False, security_groups=[])
    web = world.from_network(vm, "tcp,tp_dst=80", "198.51.100.9")
    ssh = world.from_network(vm, "tcp,tp_dst=22", "198.51.100.9")
    spoofed = world.from_vm(vm, "tcp,tp_dst=80", src_ip="198.51.100.66",
                            src_mac="fa:16:3e:66:66:66")  # fmt: skip
    assert world.tap(vm) in (world.trace(web, NEW) or set()), "port security off: tcp/80 denied"
    assert world.sent_out(world.trace(spoofed, NEW)), "port security off: spoofed source denied"
    # no filtering: the same verdicts whatever conntrack says, and no ct() on the way
    assert world.tap(vm) in (world.trace(web) or set())
    assert "ct(" not in world.trace_text(web)

    updated = await world.update_port(vm["id"], port_security_enabled=True,
                                      security_groups=[group["id"]])  # fmt: skip
    assert updated["port_security_enabled"] is True
    await world.expect("tcp/80 dropped once port security is on", web, NEW, dropped)
    assert world.trace(ssh, NEW) == {world.tap(vm)}
    assert dropped(world.trace(spoofed, NEW)), "spoofed source passes with port security on"
    assert world.sent_out(world.trace(world.from_vm(vm, "tcp,tp_dst=80"), NEW))

    await world.remove_vm(vm["id"])
    check_server_log(world, start)


# -- 5. allowed address pairs ---------------------------------------------------------------
async def test_allowed_address_pair_may_send_and_spoofing_is_dropped(
    world: World, start: Start
) -> None:
    group = await world.security_group()  # neutron's default egress rules: any
    await world.rule(group["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    pair_ip, pair_mac = "10.77.0.200", "fa:16:3e:aa:bb:cc"
    vm = await world.vm(security_groups=[group["id"]],
                        allowed_address_pairs=[{"ip_address": pair_ip,
                                                "mac_address": pair_mac}])  # fmt: skip
    assert world.sent_out(world.trace(world.from_vm(vm, "tcp,tp_dst=80"), NEW))
    from_pair = world.from_vm(vm, "tcp,tp_dst=80", src_ip=pair_ip, src_mac=pair_mac)
    assert world.sent_out(world.trace(from_pair, NEW)), "the allowed address pair may not send"
    for what, packet in [
        ("spoofed source IP", world.from_vm(vm, "tcp,tp_dst=80", src_ip="10.77.0.201")),
        ("spoofed source MAC", world.from_vm(vm, "tcp,tp_dst=80", src_mac="fa:16:3e:66:66:66")),
        ("pair IP from another MAC",
         world.from_vm(vm, "tcp,tp_dst=80", src_ip=pair_ip, src_mac="fa:16:3e:66:66:66")),
    ]:  # fmt: skip
        assert dropped(world.trace(packet, NEW)), f"{what} passes"
    # the pair receives too (its MAC is the port's for ingress)
    patch = world.host.sandbox.vsctl("get", "Interface", "int-br-phys", "ofport").strip()
    to_pair = (f"in_port={patch},dl_vlan={world.segmentation_id},dl_src={OUTSIDE_MAC},"
               f"dl_dst={pair_mac},tcp,tp_dst=22,nw_src=198.51.100.9,nw_dst={pair_ip}")  # fmt: skip
    assert world.trace(to_pair, NEW) == {world.tap(vm)}

    # the pair removed through the API: its source is spoofed from then on
    await world.update_port(vm["id"], allowed_address_pairs=[])
    await world.expect("the removed pair's source dropped", from_pair, NEW, dropped)
    assert world.sent_out(world.trace(world.from_vm(vm, "tcp,tp_dst=80"), NEW))

    await world.remove_vm(vm["id"])
    check_server_log(world, start)


# -- 6. stateless security groups -----------------------------------------------------------
async def test_stateless_group_admits_its_rules_without_conntrack_and_no_replies(
    world: World, start: Start
) -> None:
    bare = await world.security_group(stateful=False)
    assert bare["stateful"] is False, bare
    rules = {(r["direction"], r["ethertype"], r["protocol"]) for r in
             bare["security_group_rules"]}  # fmt: skip
    if ("egress", "IPv4", None) not in rules:
        await world.rule(bare["id"], "egress")
    await world.rule(bare["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    stateful = await world.security_group()
    await world.rule(stateful["id"], protocol="tcp", port_range_min=22, port_range_max=22)

    vm = await world.vm(security_groups=[bare["id"]])
    ssh = world.from_network(vm, "tcp,tp_dst=22", "198.51.100.9")
    await world.expect("stateless ssh admitted", ssh, (), world.admitted_to(vm))
    assert world.trace(ssh) == {world.tap(vm)}
    text = world.trace_text(ssh)
    assert "ct(" not in text, f"a stateless port's ingress meets conntrack:\n{text}"
    assert dropped(world.trace(world.from_network(vm, "tcp,tp_dst=80", "198.51.100.9"), NEW))
    assert dropped(world.trace(world.from_network(vm, "tcp,tp_dst=80", "198.51.100.9")))
    # egress any, no conntrack either
    egress = world.from_vm(vm, "tcp,tp_dst=80")
    assert world.sent_out(world.trace(egress))
    assert "ct(" not in world.trace_text(egress)
    # the "reply" to that egress: stateless admits no implicit replies, whatever conntrack says
    reply = world.from_network(vm, "tcp,tp_src=80,tp_dst=40000", "203.0.113.1")
    for states in (EST, EST_REPLY):
        assert dropped(world.trace(reply, states)), f"stateless port admitted a reply ({states})"
    assert dropped(world.trace(reply))

    # the control: the same reply to a port in a stateful group is admitted (conntrack's est)
    control = await world.vm(security_groups=[stateful["id"]])
    control_reply = world.from_network(control, "tcp,tp_src=80,tp_dst=40000", "203.0.113.1")
    assert world.trace(control_reply, EST_REPLY) == {world.tap(control)}
    assert dropped(world.trace(control_reply, NEW))

    # neutron refuses to change stateful on a group in use
    with pytest.raises(NeutronApiError) as refused:
        await in_thread(world.server.put, f"/v2.0/security-groups/{bare['id']}",
                        {"security_group": {"stateful": True}})  # fmt: skip
    assert refused.value.status == 409, refused.value

    await world.remove_vm(control["id"])
    await world.remove_vm(vm["id"])
    check_server_log(world, start)
