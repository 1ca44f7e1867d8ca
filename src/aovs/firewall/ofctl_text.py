"""Flow values as ``ovs-ofctl -O OpenFlow13 add-flows`` lines (OpenFlow 1.3 + Nicira extensions).

For the firewall's dataplane tests, its benchmark baseline (``ovs-ofctl --bundle add-flows``)
and for reading a driver's output the way an operator reads ``dump-flows``. It covers the
fields and actions the pipelines use; anything else raises ValueError naming it. (When
``aovs.openflow`` grows a text codec, this should give way to it.)
"""

from __future__ import annotations

from collections.abc import Iterable

from aovs.openflow.flows import (
    CT,
    CT_STATE_BITS,
    OFPP_IN_PORT,
    OFPP_LOCAL,
    OFPP_NORMAL,
    Action,
    Conjunction,
    CTClear,
    Flow,
    GotoTable,
    MatchValue,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
)

FIELD_NAMES = {
    "eth_src": "dl_src",
    "eth_dst": "dl_dst",
    "eth_type": "dl_type",
    "ip_proto": "nw_proto",
    "ipv4_src": "nw_src",
    "ipv4_dst": "nw_dst",
    "ipv6_nd_target": "nd_target",
    "icmpv4_type": "icmp_type",
    "icmpv4_code": "icmp_code",
}
HEX_FIELDS = frozenset({"eth_type", "ct_mark", "metadata", "tunnel_id", "pkt_mark"})
PORT_NAMES = {OFPP_NORMAL: "NORMAL", OFPP_LOCAL: "LOCAL", OFPP_IN_PORT: "IN_PORT"}
NXM_REGISTERS = {f"reg{i}": f"NXM_NX_REG{i}" for i in range(16)}


def _ct_state(value: int, mask: int) -> str:
    return "".join(
        ("+" if value & bit else "-") + name for name, bit in CT_STATE_BITS.items() if mask & bit
    )


def _match_item(name: str, value: MatchValue) -> str:
    if name == "ct_state":
        pair = value if isinstance(value, tuple) else (value, value)
        return f"ct_state={_ct_state(int(pair[0]), int(pair[1]))}"
    if name == "vlan_vid":  # OpenFlow 1.3 vlan_vid includes the CFI (present) bit
        number = value[0] if isinstance(value, tuple) else value
        mask = value[1] if isinstance(value, tuple) else 0x1FFF
        return f"vlan_tci=0x{int(number):04x}/0x{int(mask):04x}"
    text_name = FIELD_NAMES.get(name, name)
    if isinstance(value, tuple):
        first, second = value
        if isinstance(first, int) and isinstance(second, int):
            return f"{text_name}=0x{first:x}/0x{second:x}"
        return f"{text_name}={first}/{second}"
    if isinstance(value, int) and name in HEX_FIELDS:
        return f"{text_name}=0x{value:x}"
    return f"{text_name}={value}"


def _field_ref(name: str) -> str:
    return NXM_REGISTERS.get(name, name)


def _action(act: Action) -> str:
    if isinstance(act, Output):
        return f"output:{PORT_NAMES.get(act.port, act.port)}"
    if isinstance(act, SetField):
        value = act.value
        if act.field == "vlan_vid" and isinstance(value, int):
            return f"set_field:{value}->vlan_vid"
        return f"set_field:{value}->{act.field}"
    if isinstance(act, Resubmit):
        port = "" if act.port is None else str(act.port)
        return f"resubmit({port},{act.table})"
    if isinstance(act, GotoTable):
        return f"goto_table:{act.table}"
    if isinstance(act, PopVlan):
        return "pop_vlan"
    if isinstance(act, PushVlan):
        return f"push_vlan:0x{act.ethertype:04x}"
    if isinstance(act, CTClear):
        return "ct_clear"
    if isinstance(act, Conjunction):
        return f"conjunction({act.id},{act.clause}/{act.n_clauses})"
    if isinstance(act, RegLoad):
        return f"load:{act.value}->{_field_ref(act.dst)}[{act.ofs}..{act.ofs + act.n_bits - 1}]"
    if isinstance(act, RegMove):
        src = f"{_field_ref(act.src)}[{act.src_ofs}..{act.src_ofs + act.n_bits - 1}]"
        dst = f"{_field_ref(act.dst)}[{act.dst_ofs}..{act.dst_ofs + act.n_bits - 1}]"
        return f"move:{src}->{dst}"
    if isinstance(act, CT):
        parts = ["commit"] if act.commit else []
        if act.zone_src is not None:
            parts.append(f"zone={_field_ref(act.zone_src)}[0..15]")
        elif act.zone:
            parts.append(f"zone={act.zone}")
        if act.table is not None:
            parts.append(f"table={act.table}")
        if act.actions:
            parts.append(f"exec({','.join(_action(inner) for inner in act.actions)})")
        return f"ct({','.join(parts)})"
    raise ValueError(f"no ovs-ofctl text for action {act!r}")


def flow_to_ofctl(flow: Flow) -> str:
    """One ``add-flows`` line, e.g. ``table=71,priority=95,...,actions=resubmit(,94)``."""
    head = [f"table={flow.table}", f"priority={flow.priority}"]
    if flow.cookie:
        head.append(f"cookie=0x{flow.cookie:x}")
    head += (_match_item(name, value) for name, value in flow.match.fields)
    actions = ",".join(_action(act) for act in flow.actions) or "drop"
    return ",".join(head) + f",actions={actions}"


def flows_to_ofctl(flows: Iterable[Flow]) -> str:
    """An ``add-flows`` file, sorted so that the same flows always give the same text."""
    return "".join(f"{line}\n" for line in sorted(flow_to_ofctl(flow) for flow in flows))
