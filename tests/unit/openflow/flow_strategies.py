"""Hypothesis strategies for Flow values in the shapes aovs pipelines generate."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

from aovs.openflow.flows import (
    CT,
    CT_STATE_BITS,
    Action,
    Conjunction,
    CTClear,
    Flow,
    GotoTable,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Match,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    vid,
)

REGS = [f"reg{i}" for i in range(8)]
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ports = st.integers(1, 0xFEFF)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


def _masked(values: st.SearchStrategy[Any], masks: st.SearchStrategy[Any]) -> Any:
    return st.one_of(values, st.tuples(values, masks))


ipv4 = st.builds(
    lambda addr, plen: (str(ipaddress.IPv4Address(addr)), plen), u32, st.integers(1, 32)
).map(lambda t: f"{t[0]}/{t[1]}")
ipv6 = st.builds(
    lambda addr, plen: f"{ipaddress.IPv6Address(addr)}/{plen}",
    st.integers(0, (1 << 128) - 1),
    st.integers(1, 128),
)
ct_states = st.builds(
    lambda value, mask: (value & mask, mask),
    st.integers(0, 0xFF),
    st.integers(1, 0xFF),
)

MATCH_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "in_port": ports,
    "eth_src": st.one_of(macs, st.tuples(macs, st.just("ff:ff:ff:00:00:00"))),
    "eth_dst": macs,
    "eth_type": st.sampled_from([0x0800, 0x0806, 0x86DD]),
    "vlan_vid": st.one_of(st.integers(1, 4094).map(vid), st.just((0x1000, 0x1000))),
    "ip_proto": st.sampled_from([1, 6, 17, 58, 132]),
    "ipv4_src": ipv4,
    "ipv4_dst": ipv4,
    "ipv6_src": ipv6,
    "ipv6_dst": ipv6,
    "tcp_dst": _masked(u16, u16.filter(bool)),
    "udp_src": u16,
    "icmpv6_type": st.integers(0, 255),
    "arp_spa": ipv4,
    "arp_tpa": ipv4,
    "arp_op": st.integers(1, 2),
    "tunnel_id": st.integers(0, (1 << 64) - 1),
    "metadata": st.integers(0, (1 << 64) - 1),
    "ct_state": ct_states,
    "ct_zone": u16,
    "ct_mark": _masked(u32, u32.filter(bool)),
    "conj_id": u32,
    **{reg: _masked(u32, u32.filter(bool)) for reg in REGS},
}

matches = st.dictionaries(st.sampled_from(sorted(MATCH_FIELDS)), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: MATCH_FIELDS[k] for k in keys}).map(lambda d: Match(**d))
)


@st.composite
def reg_loads(draw: st.DrawFn) -> RegLoad:
    n_bits = draw(st.integers(1, 32))
    ofs = draw(st.integers(0, 32 - n_bits))
    value = draw(st.integers(0, (1 << n_bits) - 1))
    return RegLoad(draw(st.sampled_from(REGS)), value, ofs, n_bits)


@st.composite
def reg_moves(draw: st.DrawFn) -> RegMove:
    n_bits = draw(st.integers(1, 32))
    return RegMove(
        draw(st.sampled_from(REGS)),
        draw(st.sampled_from(REGS)),
        n_bits,
        draw(st.integers(0, 32 - n_bits)),
        draw(st.integers(0, 32 - n_bits)),
    )


set_fields = st.one_of(
    st.builds(SetField, st.sampled_from(REGS), u32),
    st.builds(SetField, st.just("vlan_vid"), st.integers(1, 4094).map(vid)),
    st.builds(SetField, st.just("eth_dst"), macs),
    st.builds(SetField, st.just("tunnel_id"), st.integers(0, (1 << 64) - 1)),
)

cts = st.builds(
    CT,
    commit=st.booleans(),
    zone=u16,
    zone_src=st.none(),
    table=st.one_of(st.none(), st.integers(0, 254)),
    actions=st.one_of(st.just(()), st.tuples(st.builds(SetField, st.just("ct_mark"), u32))),
) | st.builds(
    CT,
    commit=st.booleans(),
    zone=st.just(0),
    zone_src=st.sampled_from(REGS),
    table=st.one_of(st.none(), st.integers(0, 254)),
)

learns = st.builds(
    Learn,
    table=st.integers(0, 254),
    specs=st.just(
        (
            LearnMatch(dst="vlan_tci", n_bits=12, src="vlan_tci"),
            LearnMatch(dst="eth_dst", n_bits=48, src="eth_src"),
            LearnLoad(dst="vlan_tci", n_bits=16, value=0),
            LearnLoad(dst="tunnel_id", n_bits=64, src="tunnel_id"),
            LearnOutput(src="in_port"),
        )
    ),
    priority=u16,
    idle_timeout=u16,
    hard_timeout=u16,
    cookie=st.integers(0, (1 << 64) - 1),
)

plain_actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Output, ports, u16),
    st.builds(PushVlan, st.sampled_from([0x8100, 0x88A8])),
    st.just(PopVlan()),
    set_fields,
    reg_loads(),
    reg_moves(),
    st.builds(Resubmit, st.integers(0, 254), st.one_of(st.none(), ports)),
    cts,
    st.just(CTClear()),
    st.builds(
        lambda cid, n, c: Conjunction(cid, min(c, n), n),
        u32,
        st.integers(2, 64),
        st.integers(1, 64),
    ),
    learns,
)


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    actions: list[Action] = draw(st.lists(plain_actions, max_size=5))
    if draw(st.booleans()):
        actions.append(GotoTable(draw(st.integers(0, 254))))
    return Flow(
        table=draw(st.integers(0, 254)),
        priority=draw(u16),
        match=draw(matches),
        actions=actions,
        idle_timeout=draw(st.sampled_from([0, 0, 30])),
        hard_timeout=draw(st.sampled_from([0, 0, 300])),
    )


__all__ = ["CT_STATE_BITS", "flows", "matches", "plain_actions"]
