"""Stateless security groups in a real OVS: ofproto/trace verdicts, and no conntrack on the way.

The same kind of bridge as test_firewall_dataplane (VM ports with os-vif's dead tag, an uplink,
br-int's own flows, the driver's flows installed in one bundle). VM1 and VM2 are in a stateless
group, VM3 in a stateful one: a stateless port admits what its rules say and nothing else, in
particular not a packet that conntrack would call an established reply to its own egress.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from test_firewall_dataplane import DEAD_TAG, Bridge, br_int_flows

from aovs.firewall import FilteredPort, SecurityGroupState, load_driver
from aovs.model import FixedIP, PortDetails, SecurityGroup, SecurityGroupRule
from aovs.openflow.flows import Flow
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration

VLAN = 5
UPLINK = 9
VM1, VM2, VM3 = 1, 2, 3
MAC = {VM1: "fa:16:3e:00:01:01", VM2: "fa:16:3e:00:01:02", VM3: "fa:16:3e:00:01:03"}
IP = {VM1: "10.0.1.1", VM2: "10.0.1.2", VM3: "10.0.1.3"}
OUTSIDE_MAC, OUTSIDE_IP = "fa:16:3e:00:01:99", "10.0.1.99"
NEW = ("trk,new",)
EST_REPLY = ("trk,est,rpl",)


def rule(direction: str, **fields: object) -> SecurityGroupRule:
    return SecurityGroupRule.model_validate({"direction": direction, **fields})


BARE = SecurityGroup(
    id="bare",
    stateful=False,
    rules=(
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        rule("ingress", protocol="tcp", port_range_min=5000, port_range_max=5000,
             remote_group_id="bare"),
        rule("egress", ethertype="IPv4"),
    ),
)  # fmt: skip
WEB = SecurityGroup(
    id="web",
    rules=(
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        rule("egress", ethertype="IPv4"),
    ),
)
SGS = SecurityGroupState(
    groups={"bare": BARE, "web": WEB},
    members={"bare": {"IPv4": frozenset({IP[VM1], IP[VM2]})}, "web": {"IPv4": frozenset()}},
)


def port(ofport: int, groups: tuple[str, ...]) -> FilteredPort:
    details = PortDetails(
        device=f"vm{ofport}", port_id=f"vm{ofport}", network_id="net", network_type="vlan",
        segmentation_id=100, physical_network="phys", mac_address=MAC[ofport],
        fixed_ips=(FixedIP(ip_address=IP[ofport]),), security_groups=groups,
    )  # fmt: skip
    return FilteredPort(details, ofport, VLAN)


PORTS = {"vm1": port(VM1, ("bare",)), "vm2": port(VM2, ("bare",)), "vm3": port(VM3, ("web",))}


def all_flows() -> frozenset[Flow]:
    driver = load_driver("openvswitch")
    flows = set(br_int_flows(PORTS) | driver.base_flows())
    for filtered in PORTS.values():
        flows |= driver.port_flows(filtered, SGS)
    for owned in driver.shared_flows(PORTS, SGS).values():
        flows |= owned
    return frozenset(flows)


class TracingBridge(Bridge):
    def trace_text(self, packet: str, ct_next: Iterable[str] = ()) -> str:
        args = ["ofproto/trace", self.name, packet]
        for states in ct_next:
            args += ["--ct-next", states]
        return self.sandbox.appctl(*args)


@pytest.fixture
def bridge(ovs_sandbox: OVSSandbox, tmp_path: Path) -> Iterator[TracingBridge]:
    name = "br-fwsl"
    args = ["add-br", name, "--", "set", "Bridge", name, "datapath_type=dummy",
            "protocols=OpenFlow13", "fail-mode=secure"]  # fmt: skip
    for ofport in (VM1, VM2, VM3):
        args += ["--", "add-port", name, f"fwsl{ofport}", f"tag={DEAD_TAG}",
                 "--", "set", "Interface", f"fwsl{ofport}", "type=dummy",
                 f"ofport_request={ofport}"]  # fmt: skip
    args += ["--", "add-port", name, "fwslup", "--", "set", "Interface", "fwslup",
             "type=dummy", f"ofport_request={UPLINK}"]  # fmt: skip
    ovs_sandbox.vsctl(*args)
    try:
        show = ovs_sandbox.appctl("dpif/show")
        odp = {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"(?:fwsl\d|fwslup|br-fwsl) (\d+)/(\d+):", show)
        }
        assert len(odp) == 5, show
        traced = TracingBridge(ovs_sandbox, name, odp, tmp_path)
        traced.install(all_flows())
        yield traced
    finally:
        ovs_sandbox.vsctl("--if-exists", "del-br", name)


def ip_from(ofport: int, dst: int | None, l4: str) -> str:
    dst_mac, dst_ip = (MAC[dst], IP[dst]) if dst else (OUTSIDE_MAC, OUTSIDE_IP)
    return (f"in_port={ofport},dl_src={MAC[ofport]},dl_dst={dst_mac},{l4},"
            f"nw_src={IP[ofport]},nw_dst={dst_ip}")  # fmt: skip


def from_outside(dst: int, l4: str) -> str:
    return (f"in_port={UPLINK},dl_vlan={VLAN},dl_src={OUTSIDE_MAC},dl_dst={MAC[dst]},"
            f"{l4},nw_src={OUTSIDE_IP},nw_dst={IP[dst]}")  # fmt: skip


FLOOD_FROM_VM1 = {VM2, VM3, UPLINK}

# (what, packet, ct states for recirculations, expected output ofports or None = drop,
#  whether conntrack is on the path at all)
MATRIX: list[tuple[str, str, tuple[str, ...], set[int] | None, bool]] = [
    ("ingress tcp/22 admitted", from_outside(VM1, "tcp,tp_dst=22"), (), {VM1}, False),
    ("ingress tcp/80 dropped", from_outside(VM1, "tcp,tp_dst=80"), (), None, False),
    # VM1 sent tcp 40000 -> 80 out (egress any): the answer is not admitted without a rule
    ("reply to its egress from outside dropped",
     from_outside(VM1, "tcp,tp_src=80,tp_dst=40000"), EST_REPLY, None, False),
    ("reply to its egress from a stateless neighbour dropped",
     ip_from(VM2, VM1, "tcp,tp_src=80,tp_dst=40000"), EST_REPLY, None, False),
    # a stateful neighbour's conntrack calls it a reply (72 -> 94): VM1's rules still decide
    ("reply from a stateful neighbour dropped", ip_from(VM3, VM1, "tcp,tp_src=80,tp_dst=40000"),
     EST_REPLY, None, True),
    ("tcp/22 from a stateful neighbour, even as its reply",
     ip_from(VM3, VM1, "tcp,tp_src=22,tp_dst=22"), EST_REPLY, {VM1}, True),
    ("new tcp/22 from a stateful neighbour (committed for it)",
     ip_from(VM3, VM1, "tcp,tp_dst=22"), NEW, {VM1}, True),
    ("tcp/5000 from a remote-group member", ip_from(VM2, VM1, "tcp,tp_dst=5000"), (), {VM1},
     False),
    ("tcp/5000 from a non-member neighbour", ip_from(VM3, VM1, "tcp,tp_dst=5000"), NEW, None,
     True),
    ("tcp/5000 from outside the group", from_outside(VM1, "tcp,tp_dst=5000"), (), None, False),
    ("egress tcp/80 (egress any)", ip_from(VM1, None, "tcp,tp_dst=80"), (), {UPLINK}, False),
    ("egress to a stateful neighbour's tcp/22", ip_from(VM1, VM3, "tcp,tp_dst=22"), NEW, {VM3},
     True),
    ("egress with a spoofed source IP",
     ip_from(VM1, None, "tcp,tp_dst=80").replace(f"nw_src={IP[VM1]}", "nw_src=10.0.1.50"), (),
     None, False),
    ("DHCP offer to the VM", from_outside(VM1, "udp,udp_src=67,udp_dst=68"), (), {VM1}, False),
    ("ARP to the VM", f"in_port={UPLINK},dl_vlan={VLAN},dl_src={OUTSIDE_MAC},"
     f"dl_dst={MAC[VM1]},arp,arp_op=1,arp_spa={OUTSIDE_IP},arp_tpa={IP[VM1]}", (), {VM1},
     False),
    ("ARP from own address", f"in_port={VM1},dl_src={MAC[VM1]},dl_dst=ff:ff:ff:ff:ff:ff,arp,"
     f"arp_op=1,arp_spa={IP[VM1]},arp_tpa={IP[VM2]},arp_sha={MAC[VM1]}", (), FLOOD_FROM_VM1,
     False),
]  # fmt: skip


def test_stateless_port_verdicts(bridge: TracingBridge) -> None:
    wrong = []
    for what, packet, ct_next, expected, conntrack in MATRIX:
        got = bridge.trace(packet, ct_next)
        if got != expected:
            wrong.append(f"{what}: expected {expected}, got {got} ({packet})")
        text = bridge.trace_text(packet, ct_next)
        if ("ct(" in text or "ct_clear" in text) != conntrack:
            wrong.append(f"{what}: conntrack {'missing' if conntrack else 'used'}:\n{text}")
    assert not wrong, "\n".join(wrong)


def test_a_stateful_neighbours_new_connection_is_committed_for_it(bridge: TracingBridge) -> None:
    """VM3 (stateful) opens tcp/22 to VM1 (stateless): table 73 commits it in the shared zone,
    as it would for a remote VM1, so that VM3's conntrack admits VM1's answer."""
    text = bridge.trace_text(ip_from(VM3, VM1, "tcp,tp_dst=22"), NEW)
    assert re.search(r"^\s*73\. .*priority 101", text, re.M), text
    assert "ct(commit,zone=NXM_NX_REG6[0..15])" in text
    # VM1's answer: its egress rule (any), then VM3's ingress in conntrack (+est+rpl)
    answer = ip_from(VM1, VM3, "tcp,tp_src=22,tp_dst=40000")
    assert bridge.trace(answer, EST_REPLY) == {VM3}
    assert bridge.trace(answer, NEW) is None  # not tcp/22: without the commit, no answer
