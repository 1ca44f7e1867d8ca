"""Flow values <-> OpenFlow 1.3 messages, through os-ken's classes (the reference codec).

``flow_mod`` builds the os-ken ``OFPFlowMod`` for a Flow; ``encode_flow_mod`` serialises it.
``decode_flow_stats`` turns a flow-stats entry from the switch back into the Flow a pipeline
would have built, so desired and installed compare with ``==``. The fast struct encoder
(``fast_encoder``) must produce exactly the bytes ``encode_flow_mod`` produces.

Wire conventions that differ from the Flow value (each is undone by the decoder):
- ``Conjunction.clause`` is 1-based (as ovs-ofctl writes it), 0-based on the wire;
- ``RegLoad(dst, value, ofs, n_bits)`` is NXAST_REG_LOAD2 with value and mask shifted by ofs;
- ``Resubmit(port=None)`` is in_port OFPP_IN_PORT (0xfff8, NXAST_RESUBMIT_TABLE is 16-bit);
- ``CT(table=None)`` is recirc_table 255; ``CT(zone_src=f)`` loads the zone from ``f[0..15]``;
- NXM field names that os-ken suffixes with ``_nxm`` (OVS writes NXM headers in learn and
  move actions) are reported under their OXM name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow.flows import (
    CT,
    FIELD_BITS,
    MAC_FIELDS,
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
    Match,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    SetQueue,
)
from aovs.openflow.messages import DATAPATH, serialize

ADD = ofp.OFPFC_ADD
MODIFY_STRICT = ofp.OFPFC_MODIFY_STRICT
DELETE_STRICT = ofp.OFPFC_DELETE_STRICT
ALL_ONES_64 = 0xFFFFFFFFFFFFFFFF
NO_TABLE = 0xFF
MAX_TABLE = 254
RESUBMIT_IN_PORT = 0xFFF8
CT_COMMIT = 1
ZONE_SRC_BITS = nicira_ext.ofs_nbits(0, 15)


class UnsupportedFlowError(ValueError):
    """A flow (or flow-stats entry) uses something the Flow value cannot express."""


def field_bits(name: str) -> int:
    """Width in bits of a field aovs loads or moves (registers, MACs, ...)."""
    if name in FIELD_BITS:
        return FIELD_BITS[name]
    if name in MAC_FIELDS:
        return 48
    raise UnsupportedFlowError(f"unknown width for field {name!r}")


# -- encode ------------------------------------------------------------------------------------
def osken_action(action: Action) -> Any:
    """One Flow action -> the os-ken action object (GotoTable is an instruction, not here)."""
    if isinstance(action, Output):
        return ofpp.OFPActionOutput(action.port, action.max_len)
    if isinstance(action, SetField):
        return ofpp.OFPActionSetField(**{action.field: action.value})
    if isinstance(action, Resubmit):
        port = RESUBMIT_IN_PORT if action.port is None else action.port
        return ofpp.NXActionResubmitTable(in_port=port, table_id=action.table)
    if isinstance(action, RegLoad):
        mask = ((1 << action.n_bits) - 1) << action.ofs
        full = action.ofs == 0 and action.n_bits == field_bits(action.dst)
        return ofpp.NXActionRegLoad2(
            dst=action.dst, value=action.value << action.ofs, mask=None if full else mask
        )
    if isinstance(action, RegMove):
        return ofpp.NXActionRegMove(
            src_field=action.src,
            dst_field=action.dst,
            n_bits=action.n_bits,
            src_ofs=action.src_ofs,
            dst_ofs=action.dst_ofs,
        )
    if isinstance(action, CT):
        return ofpp.NXActionCT(
            flags=CT_COMMIT if action.commit else 0,
            zone_src=action.zone_src or "",
            zone_ofs_nbits=ZONE_SRC_BITS if action.zone_src else action.zone,
            recirc_table=NO_TABLE if action.table is None else action.table,
            alg=0,
            actions=[osken_action(inner) for inner in action.actions],
        )
    if isinstance(action, CTClear):
        return ofpp.NXActionCTClear()
    if isinstance(action, Conjunction):
        return ofpp.NXActionConjunction(
            clause=action.clause - 1, n_clauses=action.n_clauses, id_=action.id
        )
    if isinstance(action, PushVlan):
        return ofpp.OFPActionPushVlan(action.ethertype)
    if isinstance(action, PopVlan):
        return ofpp.OFPActionPopVlan()
    if isinstance(action, SetQueue):
        return ofpp.OFPActionSetQueue(action.queue_id)
    if isinstance(action, Learn):
        return ofpp.NXActionLearn(
            table_id=action.table,
            specs=[_learn_spec(spec) for spec in action.specs],
            idle_timeout=action.idle_timeout,
            hard_timeout=action.hard_timeout,
            priority=action.priority,
            cookie=action.cookie,
            flags=0,
            fin_idle_timeout=action.fin_idle_timeout,
            fin_hard_timeout=action.fin_hard_timeout,
        )
    raise UnsupportedFlowError(f"cannot encode action {action!r}")


def _learn_spec(spec: LearnSpec) -> Any:
    if isinstance(spec, LearnOutput):
        return ofpp.NXFlowSpecOutput(src=(spec.src, spec.src_ofs), n_bits=spec.n_bits)
    src: Any = spec.value if spec.src is None else (spec.src, spec.src_ofs)
    if src is None:
        raise UnsupportedFlowError(f"learn spec {spec!r} has neither src nor value")
    cls = ofpp.NXFlowSpecMatch if isinstance(spec, LearnMatch) else ofpp.NXFlowSpecLoad
    return cls(src=src, dst=(spec.dst, spec.dst_ofs), n_bits=spec.n_bits)


def instructions(actions: Sequence[Action]) -> list[Any]:
    """Flow actions -> os-ken instructions: meter (if any), apply-actions (if any), then
    goto-table (if any), in the order ovs-vswitchd reports them."""
    result: list[Any] = []
    if actions and isinstance(actions[0], ApplyMeter):
        result.append(ofpp.OFPInstructionMeter(actions[0].meter_id, ofp.OFPIT_METER))
        actions = actions[1:]
    goto = actions[-1] if actions and isinstance(actions[-1], GotoTable) else None
    applied = actions[:-1] if goto is not None else actions
    if applied:
        result.append(
            ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [osken_action(a) for a in applied])
        )
    if goto is not None:
        result.append(ofpp.OFPInstructionGotoTable(goto.table))
    return result


def flow_mod(flow: Flow, command: int, cookie: int) -> Any:
    """The os-ken OFPFlowMod for ``flow``; ``cookie`` is stamped when ``flow.cookie`` is 0.

    Strict modify and delete do NOT match the cookie (cookie_mask 0): with a cookie mask,
    ovs-vswitchd 3.1 walks every rule sharing that cookie for each one (all of a bridge's aovs
    flows share it): 2000 strict deletes among 60k flows took 5.1 s, against 0.04 s by exact
    key alone. The exact key already names one rule, and the reconciler only modifies or
    deletes keys it installed or dumped under its own cookie.
    """
    stamped = flow.cookie or cookie
    return ofpp.OFPFlowMod(
        DATAPATH,
        cookie=stamped,
        cookie_mask=0,
        table_id=flow.table,
        command=command,
        idle_timeout=flow.idle_timeout,
        hard_timeout=flow.hard_timeout,
        priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        flags=0,
        match=ofpp.OFPMatch(**dict(flow.match.fields)),
        instructions=[] if command == DELETE_STRICT else instructions(flow.actions),
    )


def encode_flow_mod(flow: Flow, command: int, cookie: int, xid: int = 0) -> bytes:
    """Reference encoding of one FlowMod (slow: ~70 us); the fast encoder must match it."""
    try:
        return serialize(flow_mod(flow, command, cookie), xid)
    except UnsupportedFlowError:
        raise
    except Exception as exc:  # os-ken raises KeyError/struct.error/... for bad values
        raise UnsupportedFlowError(f"cannot encode {flow!r}: {exc!r}") from exc


# -- decode ------------------------------------------------------------------------------------
def field_name(name: str) -> str:
    """os-ken's name for an OXM/NXM header -> the name aovs uses (``reg5_nxm`` -> ``reg5``)."""
    return name[: -len("_nxm")] if name.endswith("_nxm") else name


def mask_to_ofs_bits(mask: int) -> tuple[int, int]:
    """A contiguous load mask -> (offset, number of bits)."""
    ofs = (mask & -mask).bit_length() - 1
    n_bits = (mask >> ofs).bit_length()
    if (mask >> ofs) != (1 << n_bits) - 1:
        raise UnsupportedFlowError(f"non-contiguous load mask {mask:#x}")
    return ofs, n_bits


def decode_action(act: Any) -> Action:
    """An os-ken action object (as parsed from the switch) -> the Flow action value."""
    if isinstance(act, ofpp.OFPActionOutput):
        return Output(act.port, act.max_len)
    if isinstance(act, ofpp.OFPActionSetField):
        return SetField(act.key, act.value)
    if isinstance(act, ofpp.NXActionResubmitTable):
        port = None if act.in_port == RESUBMIT_IN_PORT else act.in_port
        return Resubmit(table=act.table_id, port=port)
    if isinstance(act, ofpp.NXActionRegLoad2):
        dst = field_name(act.dst)
        if act.mask is None:
            return RegLoad(dst=dst, value=act.value, ofs=0, n_bits=field_bits(dst))
        ofs, n_bits = mask_to_ofs_bits(act.mask)
        return RegLoad(dst=dst, value=(act.value & act.mask) >> ofs, ofs=ofs, n_bits=n_bits)
    if isinstance(act, ofpp.NXActionRegMove):
        return RegMove(
            src=field_name(act.src_field),
            dst=field_name(act.dst_field),
            n_bits=act.n_bits,
            src_ofs=act.src_ofs,
            dst_ofs=act.dst_ofs,
        )
    if isinstance(act, ofpp.NXActionCT):
        if act.alg:
            raise UnsupportedFlowError(f"ct alg={act.alg}")
        zone_src = field_name(act.zone_src) if act.zone_src else None
        if zone_src is not None and act.zone_ofs_nbits != ZONE_SRC_BITS:
            raise UnsupportedFlowError(f"ct zone from {zone_src} bits {act.zone_ofs_nbits:#x}")
        return CT(
            commit=bool(act.flags & CT_COMMIT),
            zone=0 if zone_src else act.zone_ofs_nbits,
            zone_src=zone_src,
            table=None if act.recirc_table == NO_TABLE else act.recirc_table,
            actions=tuple(decode_action(inner) for inner in act.actions),
        )
    if isinstance(act, ofpp.NXActionCTClear):
        return CTClear()
    if isinstance(act, ofpp.NXActionConjunction):
        return Conjunction(id=act.id, clause=act.clause + 1, n_clauses=act.n_clauses)
    if isinstance(act, ofpp.OFPActionPushVlan):
        return PushVlan(act.ethertype)
    if isinstance(act, ofpp.OFPActionPopVlan):
        return PopVlan()
    if isinstance(act, ofpp.OFPActionSetQueue):
        return SetQueue(act.queue_id)
    if isinstance(act, ofpp.NXActionLearn):
        return Learn(
            table=act.table_id,
            specs=tuple(_decode_learn_spec(spec) for spec in act.specs),
            priority=act.priority,
            idle_timeout=act.idle_timeout,
            hard_timeout=act.hard_timeout,
            fin_idle_timeout=act.fin_idle_timeout,
            fin_hard_timeout=act.fin_hard_timeout,
            cookie=act.cookie,
        )
    raise UnsupportedFlowError(f"cannot decode action {type(act).__name__}")


def _decode_learn_spec(spec: Any) -> LearnSpec:
    if isinstance(spec, ofpp.NXFlowSpecOutput):
        name, ofs = spec.src
        return LearnOutput(src=field_name(name), n_bits=spec.n_bits, src_ofs=ofs)
    dst, dst_ofs = spec.dst
    if isinstance(spec.src, tuple):
        src, src_ofs = spec.src
        source: dict[str, Any] = {"src": field_name(src), "src_ofs": src_ofs}
    else:
        source = {"value": spec.src}
    cls = LearnMatch if isinstance(spec, ofpp.NXFlowSpecMatch) else LearnLoad
    return cls(dst=field_name(dst), n_bits=spec.n_bits, dst_ofs=dst_ofs, **source)


def decode_instructions(insts: Iterable[Any]) -> tuple[Action, ...]:
    actions: list[Action] = []
    goto: GotoTable | None = None
    meter: ApplyMeter | None = None
    for inst in insts:
        if isinstance(inst, ofpp.OFPInstructionGotoTable):
            goto = GotoTable(inst.table_id)
        elif isinstance(inst, ofpp.OFPInstructionMeter):
            meter = ApplyMeter(inst.meter_id)
        elif isinstance(inst, ofpp.OFPInstructionActions) and (
            inst.type == ofp.OFPIT_APPLY_ACTIONS
        ):
            actions.extend(decode_action(a) for a in inst.actions)
        else:
            raise UnsupportedFlowError(f"cannot decode instruction {type(inst).__name__}")
    if goto is not None:
        actions.append(goto)
    if meter is not None:
        actions.insert(0, meter)
    return tuple(actions)


def decode_match(match: Any) -> Match:
    return Match(**{field_name(name): value for name, value in match._fields2})


def decode_flow_stats(stats: Any, bridge_cookie: int | None = None) -> Flow:
    """One os-ken OFPFlowStats -> Flow; the bridge cookie is reported as 0 (unstamped)."""
    cookie = 0 if stats.cookie == bridge_cookie else stats.cookie
    return Flow(
        table=stats.table_id,
        priority=stats.priority,
        match=decode_match(stats.match),
        actions=decode_instructions(stats.instructions),
        cookie=cookie,
        idle_timeout=stats.idle_timeout,
        hard_timeout=stats.hard_timeout,
    )


def decode_flow_mod(data: bytes) -> Flow:
    """A FlowMod we encoded -> the Flow (used to name the flow in an error, and in tests)."""
    from aovs.openflow.messages import parse

    msg = parse(data)
    return Flow(
        table=msg.table_id,
        priority=msg.priority,
        match=decode_match(msg.match),
        actions=decode_instructions(msg.instructions),
        cookie=msg.cookie,
        idle_timeout=msg.idle_timeout,
        hard_timeout=msg.hard_timeout,
    )
