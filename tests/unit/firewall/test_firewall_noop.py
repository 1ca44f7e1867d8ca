"""The noop driver: no filtering, neutron's ARP / ND / MAC anti-spoofing for secured ports."""

from __future__ import annotations

from fw_scenarios import make_port

from aovs.firewall import SecurityGroupState
from aovs.firewall.noop import NoopFirewall
from aovs.model import AllowedAddressPair
from aovs.openflow.flows import Flow, GotoTable, Match
from aovs.owners import port_owner

SGS = SecurityGroupState({})


def test_port_flows_are_neutrons_spoofing_protection() -> None:
    pairs = (
        AllowedAddressPair(ip_address="10.9.0.0/24", mac_address="fa:16:3e:aa:aa:aa"),
        AllowedAddressPair(ip_address="fd00:9::5"),
    )
    port = make_port(1, ("web",), vlan=5, pairs=pairs)
    flows = NoopFirewall().port_flows(port, SGS)
    na = {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 136}
    expected = {
        Flow(0, 9, Match(in_port=2), [GotoTable(25)]),
        Flow(0, 10, Match(in_port=2, eth_type=0x806), [GotoTable(24)]),
        Flow(0, 10, Match(in_port=2, **na), [GotoTable(24)]),
        Flow(25, 2, Match(in_port=2, eth_src="fa:16:3e:00:00:01"), [GotoTable(60)]),
        Flow(25, 2, Match(in_port=2, eth_src="fa:16:3e:aa:aa:aa"), [GotoTable(60)]),
        Flow(24, 2, Match(in_port=2, eth_type=0x806, arp_spa="10.5.0.1"), [GotoTable(25)]),
        Flow(24, 2, Match(in_port=2, eth_type=0x806, arp_spa="10.9.0.0/24"), [GotoTable(25)]),
    }
    for target in ("fd00:5::1", "fd00:9::5", "fe80::f816:3eff:fe00:1",
                   "fe80::f816:3eff:feaa:aaaa"):  # fmt: skip
        expected.add(Flow(24, 2, Match(in_port=2, ipv6_nd_target=target, **na), [GotoTable(60)]))
    assert flows == expected


def test_zero_prefix_pair_disables_that_family_protection() -> None:
    port = make_port(1, ("web",), pairs=(AllowedAddressPair(ip_address="0.0.0.0/0"),))
    flows = NoopFirewall().port_flows(port, SGS)
    assert not [f for f in flows if f.match.get("eth_type") == 0x806]
    assert [f for f in flows if f.match.get("icmpv6_type") == 136]
    assert Flow(0, 9, Match(in_port=2), [GotoTable(25)]) in flows  # MACs still checked


def test_unprotected_ports_get_nothing() -> None:
    driver = NoopFirewall()
    assert driver.port_flows(make_port(1, (), security=False), SGS) == frozenset()
    assert driver.port_flows(make_port(1, (), owner="network:router_interface"), SGS) == (
        frozenset()
    )


def test_security_group_changes_dirty_nothing() -> None:
    driver = NoopFirewall()
    ports = {"a": make_port(1, ("web",)), "b": make_port(2, ("web",))}
    moved = {**ports, "b": make_port(2, ("db",))}
    assert driver.owners_for_change(ports, SGS, ports, SecurityGroupState({})) == frozenset()
    assert driver.owners_for_change(ports, SGS, moved, SGS) == {port_owner("b")}
    assert driver.shared_flows(ports, SGS) == {}
    assert driver.base_flows() == {Flow(24, 0), Flow(25, 0)}
