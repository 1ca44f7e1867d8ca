"""Flow values as ``ovs-ofctl add-flows`` lines: for logs, and for the ovs-ofctl baseline.

Rendering only (aovs never runs ovs-ofctl at runtime). Output ``max_len`` is not rendered for
ordinary ports (ovs-ofctl's ``output:N`` sends 0; ``output(max_len=..)`` means truncation).
"""

from __future__ import annotations

from aovs.openflow.flows import (
    CT,
    FIELD_BITS,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPP_LOCAL,
    OFPP_NORMAL,
    Action,
    ApplyMeter,
    Conjunction,
    CTClear,
    Flow,
    GotoTable,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    LearnSpec,
    MatchValue,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    SetQueue,
)

# os-ken (OXM) names that ovs-ofctl spells differently
OFCTL_NAMES = {
    "ipv4_src": "ip_src",
    "ipv4_dst": "ip_dst",
    "icmpv4_type": "icmp_type",
    "icmpv4_code": "icmp_code",
    "ipv6_nd_target": "nd_target",
    "ipv6_nd_sll": "nd_sll",
    "ipv6_nd_tll": "nd_tll",
    "tunnel_id": "tun_id",
}
PORT_NAMES = {OFPP_NORMAL: "NORMAL", OFPP_LOCAL: "LOCAL", OFPP_IN_PORT: "IN_PORT"}


def _name(field: str) -> str:
    return OFCTL_NAMES.get(field, field)


def _value(value: MatchValue | int | str) -> str:
    if isinstance(value, tuple):
        return f"{_value(value[0])}/{_value(value[1])}"
    if isinstance(value, int):
        return hex(value)
    return value


def _bits(field: str, ofs: int, n_bits: int) -> str:
    if field == "in_port" and (ofs, n_bits) == (0, 32):
        return "OXM_OF_IN_PORT[]"  # ovs-ofctl reads "in_port" as the 16-bit NXM_OF_IN_PORT
    return f"{_name(field)}[{ofs}..{ofs + n_bits - 1}]"


def _learn_spec(spec: LearnSpec) -> str:
    if isinstance(spec, LearnOutput):
        return f"output:{_bits(spec.src, spec.src_ofs, spec.n_bits)}"
    dst = _bits(spec.dst, spec.dst_ofs, spec.n_bits)
    src = hex(spec.value or 0) if spec.src is None else _bits(spec.src, spec.src_ofs, spec.n_bits)
    if isinstance(spec, LearnMatch):
        return dst if spec.src == spec.dst and spec.src_ofs == spec.dst_ofs else f"{dst}={src}"
    assert isinstance(spec, LearnLoad)
    return f"load:{src}->{dst}"


def action_text(action: Action) -> str:
    if isinstance(action, Output):
        if action.port == OFPP_CONTROLLER:
            return f"CONTROLLER:{action.max_len}"
        return PORT_NAMES.get(action.port, f"output:{action.port}")
    if isinstance(action, SetField):
        return f"set_field:{_value(action.value)}->{_name(action.field)}"
    if isinstance(action, RegLoad):
        if action.ofs == 0 and action.n_bits == FIELD_BITS.get(action.dst):
            # aovs sends NXAST_REG_LOAD2, which OVS reports as set_field when it is full width
            return f"set_field:{action.value:#x}->{_name(action.dst)}"
        return f"load:{action.value:#x}->{_bits(action.dst, action.ofs, action.n_bits)}"
    if isinstance(action, RegMove):
        src = _bits(action.src, action.src_ofs, action.n_bits)
        return f"move:{src}->{_bits(action.dst, action.dst_ofs, action.n_bits)}"
    if isinstance(action, Resubmit):
        return f"resubmit({'' if action.port is None else action.port},{action.table})"
    if isinstance(action, CT):
        args = ["commit"] if action.commit else []
        args.append(f"zone={_bits(action.zone_src, 0, 16)}" if action.zone_src else
                    f"zone={action.zone}")  # fmt: skip
        if action.table is not None:
            args.append(f"table={action.table}")
        if action.actions:
            args.append(f"exec({','.join(action_text(a) for a in action.actions)})")
        return f"ct({','.join(args)})"
    if isinstance(action, CTClear):
        return "ct_clear"
    if isinstance(action, Conjunction):
        return f"conjunction({action.id},{action.clause}/{action.n_clauses})"
    if isinstance(action, PushVlan):
        return f"push_vlan:{action.ethertype:#x}"
    if isinstance(action, PopVlan):
        return "pop_vlan"
    if isinstance(action, SetQueue):
        return f"set_queue:{action.queue_id}"
    if isinstance(action, GotoTable):
        return f"goto_table:{action.table}"
    if isinstance(action, ApplyMeter):
        return f"meter:{action.meter_id}"
    if isinstance(action, Learn):
        args = [f"table={action.table}", f"priority={action.priority}"]
        for name in ("idle_timeout", "hard_timeout", "fin_idle_timeout", "fin_hard_timeout"):
            if getattr(action, name):
                args.append(f"{name}={getattr(action, name)}")
        if action.cookie:
            args.append(f"cookie={action.cookie:#x}")
        args.extend(_learn_spec(spec) for spec in action.specs)
        return f"learn({','.join(args)})"
    raise ValueError(f"no ovs-ofctl rendering for {action!r}")


def to_ofctl(flow: Flow, cookie: int = 0) -> str:
    """One ``ovs-ofctl -O OpenFlow13 add-flows`` line; ``cookie`` stamps unstamped flows."""
    parts = [
        f"cookie={flow.cookie or cookie:#x}",
        f"table={flow.table}",
        f"priority={flow.priority}",
    ]
    if flow.idle_timeout:
        parts.append(f"idle_timeout={flow.idle_timeout}")
    if flow.hard_timeout:
        parts.append(f"hard_timeout={flow.hard_timeout}")
    parts.extend(
        f"{_name(name)}={value}" if name == "in_port" else f"{_name(name)}={_value(value)}"
        for name, value in flow.match.fields
    )
    actions = ",".join(action_text(a) for a in flow.actions) or "drop"
    return f"{','.join(parts)},actions={actions}"
