"""The Flow value: what the pure pipelines return and the reconciler compares.

A ``Flow`` is immutable and hashable (hash cached: sets of 50k+ flows are diffed on hot paths).
Match fields use os-ken's OXM/NXM names (``in_port``, ``eth_src``, ``reg5``, ``ct_state``, ...),
so encoding is a direct mapping. Values are normalised ON CONSTRUCTION to the form the switch
reports back in flow-stats (lower-case MACs, compressed IPv6, masks dropped when full, CIDR as
``(network, netmask)``), so a Flow built by a pipeline equals the Flow decoded from a dump.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

# -- well-known port numbers (OpenFlow 1.3) ---------------------------------------------------
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_NORMAL = 0xFFFFFFFA
OFPP_FLOOD = 0xFFFFFFFB
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPVID_PRESENT = 0x1000

# -- conntrack state bits (NXM_NX_CT_STATE) ---------------------------------------------------
CT_STATE_BITS = {
    "new": 0x01,
    "est": 0x02,
    "rel": 0x04,
    "rpl": 0x08,
    "inv": 0x10,
    "trk": 0x20,
    "snat": 0x40,
    "dnat": 0x80,
}

# Bit widths of the integer fields aovs uses; a mask covering all bits is the same as no mask.
FIELD_BITS: dict[str, int] = {
    "in_port": 32,
    "metadata": 64,
    "eth_type": 16,
    "vlan_vid": 13,
    "vlan_pcp": 3,
    "ip_dscp": 6,
    "ip_proto": 8,
    "tcp_src": 16,
    "tcp_dst": 16,
    "udp_src": 16,
    "udp_dst": 16,
    "sctp_src": 16,
    "sctp_dst": 16,
    "icmpv4_type": 8,
    "icmpv4_code": 8,
    "icmpv6_type": 8,
    "icmpv6_code": 8,
    "arp_op": 16,
    "tunnel_id": 64,
    "ct_state": 32,
    "ct_zone": 16,
    "ct_mark": 32,
    "conj_id": 32,
    "pkt_mark": 32,
    "tcp_flags": 16,
    "ip_frag": 8,
    **{f"reg{i}": 32 for i in range(16)},
}
MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"})
IPV4_FIELDS = frozenset(
    {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}
)
IPV6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "ipv6_nd_target"})
_ADDRESS_FIELDS = MAC_FIELDS | IPV4_FIELDS | IPV6_FIELDS

MatchValue: TypeAlias = int | str | tuple[int, int] | tuple[str, str]


def vid(vlan: int) -> int:
    """An OpenFlow 1.3 ``vlan_vid`` value for a tagged packet with VLAN ``vlan``."""
    return vlan | OFPVID_PRESENT


def ct_state(spec: str) -> tuple[int, int]:
    """``"+trk+est-rel"`` -> (value, mask), as ovs-ofctl spells conntrack states."""
    value = mask = 0
    for token in spec.replace("+", " +").replace("-", " -").split():
        sign, name = token[0], token[1:]
        if sign not in "+-" or name not in CT_STATE_BITS:
            raise ValueError(f"bad ct_state token {token!r} in {spec!r}")
        bit = CT_STATE_BITS[name]
        mask |= bit
        if sign == "+":
            value |= bit
    return value, mask


def _prefix(mask: Any) -> str:
    """A netmask as a prefix length: ipaddress parses IPv4 netmasks but not IPv6 ones, and
    decoded IPv6 matches arrive as (address, netmask)."""
    text = str(mask)
    if ":" not in text:
        return text
    bits = int(ipaddress.IPv6Address(text))
    length = bin(bits).count("1")
    if bits != ((1 << 128) - 1) ^ ((1 << (128 - length)) - 1):
        raise ValueError(f"non-contiguous IPv6 mask {text}")
    return str(length)


def _normalise(name: str, value: Any) -> MatchValue:
    if name in MAC_FIELDS:
        if isinstance(value, tuple):
            mac, mask = str(value[0]).lower(), str(value[1]).lower()
            if mask == "ff:ff:ff:ff:ff:ff":
                return mac
            # the switch reports value & mask, as for integer fields
            raw = int(mac.replace(":", ""), 16) & int(mask.replace(":", ""), 16)
            masked = raw.to_bytes(6, "big").hex(":")
            return masked, mask
        return str(value).lower()
    if name in IPV4_FIELDS or name in IPV6_FIELDS:
        text = f"{value[0]}/{_prefix(value[1])}" if isinstance(value, tuple) else str(value)
        net = ipaddress.ip_network(text, strict=False)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return str(net.network_address), str(net.netmask)
    if isinstance(value, tuple):
        number, bitmask = int(value[0]), int(value[1])
        bits = FIELD_BITS.get(name)
        if bits is not None and bitmask == (1 << bits) - 1:
            return number
        return number & bitmask, bitmask
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"match field {name}: expected int or (value, mask), got {value!r}")
    return value


# Pipelines build 100k+ matches from a few thousand distinct values (the same rule on every
# port): normalising each (field, value) once makes Match() ~4x cheaper, and every match holding
# that field shares one (name, value) pair (1000 ports: 258k pairs, 8k distinct). By field
# name, then value: no key tuple per entry. Bounded: cleared when full (matches keep theirs).
_FIELDS: dict[str, dict[Any, tuple[str, MatchValue]]] = {}
_fields_cached = 0
MAX_CACHED_FIELDS = 1 << 17


def _field(name: str, value: Any) -> tuple[str, MatchValue]:
    global _fields_cached
    by_value = _FIELDS.get(name)
    try:
        if by_value is not None and (pair := by_value.get(value)) is not None:
            return pair
        pair = name, _normalise(name, value)
        if _fields_cached >= MAX_CACHED_FIELDS:
            _FIELDS.clear()
            _fields_cached = 0
        _FIELDS.setdefault(name, {})[value] = pair
    except TypeError:  # an unhashable value (a list): normalise it uncached
        return name, _normalise(name, value)
    _fields_cached += 1
    return pair


def _normalised(name: str, value: Any) -> MatchValue:
    return _field(name, value)[1]


class Match:
    """An OpenFlow match: os-ken field names -> normalised values, order-independent."""

    __slots__ = ("_hash", "fields")
    fields: tuple[tuple[str, MatchValue], ...]
    _hash: int

    def __init__(self, **fields: Any) -> None:
        items = tuple(
            sorted(_field(name, value) for name, value in fields.items() if value is not None)
        )
        object.__setattr__(self, "fields", items)
        object.__setattr__(self, "_hash", hash(items))

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, Any]]) -> Match:
        return cls(**dict(items))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Match is immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Match) and self._hash == other._hash and self.fields == other.fields
        )

    def get(self, name: str) -> MatchValue | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def as_dict(self) -> dict[str, MatchValue]:
        return dict(self.fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields)
        return f"Match({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Match.from_items, (self.fields,))


# -- actions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Output:
    port: int
    max_len: int = 0xFFE5  # OFPCML_NO_BUFFER for controller; OVS reports 0 for other ports


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = 0x8100


@dataclass(frozen=True, slots=True)
class PopVlan:
    pass


@dataclass(frozen=True, slots=True)
class SetField:
    """OpenFlow 1.3 set_field; ``SetField("vlan_vid", vid(5))``, ``SetField("reg5", 7)``."""

    field: str
    value: int | str

    def __post_init__(self) -> None:
        # normalised like a match value, so a pipeline's SetField equals the one the switch reports
        if self.field in _ADDRESS_FIELDS and isinstance(self.value, str):
            normalised = _normalised(self.field, self.value)
            if isinstance(normalised, str):
                object.__setattr__(self, "value", normalised)


@dataclass(frozen=True, slots=True)
class RegMove:
    """NXAST_REG_MOVE: copy ``n_bits`` from ``src`` (at ``src_ofs``) to ``dst`` (at ``dst_ofs``)."""

    src: str
    dst: str
    n_bits: int
    src_ofs: int = 0
    dst_ofs: int = 0


@dataclass(frozen=True, slots=True)
class RegLoad:
    """NXAST_REG_LOAD2 of part of a field: ``load:value->dst[ofs..ofs+n_bits-1]``."""

    dst: str
    value: int
    ofs: int = 0
    n_bits: int = 32


@dataclass(frozen=True, slots=True)
class Resubmit:
    """NXAST_RESUBMIT_TABLE: ``resubmit(port,table)``; port None means the packet's in_port."""

    table: int
    port: int | None = None


@dataclass(frozen=True, slots=True)
class CT:
    """NXAST_CT. Zone is an immediate ``zone`` or a field (``zone_src="reg6"``, low 16 bits)."""

    commit: bool = False
    zone: int = 0
    zone_src: str | None = None
    table: int | None = None
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class CTClear:
    pass


@dataclass(frozen=True, slots=True)
class Conjunction:
    """``conjunction(id, clause/n_clauses)`` with ``clause`` 1-based, as ovs-ofctl writes it."""

    id: int
    clause: int
    n_clauses: int


@dataclass(frozen=True, slots=True)
class LearnMatch:
    """In a learned flow, match ``dst`` (bits) against the packet's ``src`` field or a value."""

    dst: str
    n_bits: int
    src: str | None = None
    value: int | None = None
    src_ofs: int = 0
    dst_ofs: int = 0


@dataclass(frozen=True, slots=True)
class LearnLoad:
    """In a learned flow, load ``dst`` from the packet's ``src`` field or a value."""

    dst: str
    n_bits: int
    src: str | None = None
    value: int | None = None
    src_ofs: int = 0
    dst_ofs: int = 0


@dataclass(frozen=True, slots=True)
class LearnOutput:
    """In a learned flow, output to the port held in the packet's ``src`` field."""

    src: str
    n_bits: int = 32
    src_ofs: int = 0


LearnSpec: TypeAlias = LearnMatch | LearnLoad | LearnOutput


@dataclass(frozen=True, slots=True)
class Learn:
    """NXAST_LEARN (br-tun table 10 learns remote MACs)."""

    table: int
    specs: tuple[LearnSpec, ...]
    priority: int = 1
    idle_timeout: int = 0
    hard_timeout: int = 0
    fin_idle_timeout: int = 0
    fin_hard_timeout: int = 0
    cookie: int = 0


@dataclass(frozen=True, slots=True)
class SetQueue:
    """OFPAT_SET_QUEUE: the egress queue of the port the packet leaves by (``set_queue:N``);
    ovs-vswitchd carries it across patch ports as the datapath's skb_priority."""

    queue_id: int


@dataclass(frozen=True, slots=True)
class GotoTable:
    """The goto-table INSTRUCTION; only valid as the last element of ``Flow.actions``."""

    table: int


@dataclass(frozen=True, slots=True)
class ApplyMeter:
    """The meter INSTRUCTION (``meter:N``); only valid as the first element of ``Flow.actions``
    (OpenFlow applies it before the actions; ovs-vswitchd reports it first)."""

    meter_id: int


METER_UNITS = ("kbps", "pktps")


@dataclass(frozen=True, slots=True)
class Meter:
    """An OpenFlow 1.3 meter with one drop band: ``rate`` in ``unit`` (kbps or pktps),
    ``burst`` in kb or packets (0: no burst flag, the datapath's default bucket). Not a flow:
    sent as OFPMeterMod outside bundles (see aovs.openflow.meters)."""

    id: int
    unit: str
    rate: int
    burst: int = 0

    def __post_init__(self) -> None:
        if self.unit not in METER_UNITS:
            raise ValueError(f"meter {self.id}: unit {self.unit!r} is not one of {METER_UNITS}")
        if not 0 < self.id < 0xFFFF0000:
            raise ValueError(f"meter id {self.id} out of range")
        if not 0 < self.rate <= 0xFFFFFFFF or not 0 <= self.burst <= 0xFFFFFFFF:
            raise ValueError(f"meter {self.id}: rate {self.rate} / burst {self.burst} invalid")


Action: TypeAlias = (
    Output | PushVlan | PopVlan | SetField | RegMove | RegLoad | Resubmit | CT | CTClear
    | Conjunction | Learn | SetQueue | GotoTable | ApplyMeter
)  # fmt: skip


_ACTIONS: dict[tuple[Action, ...], tuple[Action, ...]] = {}
MAX_INTERNED_ACTIONS = 1 << 16


def _interned_actions(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """One shared tuple per distinct action list: 1000 ports' 66k flows carry 10k distinct
    ones (and their action objects: 53k built, 2k distinct). Bounded: cleared when full (the
    flows built meanwhile keep theirs)."""
    try:
        shared = _ACTIONS.get(actions)
    except TypeError:  # an unhashable value inside an action: kept as it is
        return actions
    if shared is not None:
        return shared
    if len(_ACTIONS) >= MAX_INTERNED_ACTIONS:
        _ACTIONS.clear()
    _ACTIONS[actions] = actions
    return actions


def normal() -> Output:
    return Output(OFPP_NORMAL, 0)


class Flow:
    """One OpenFlow rule. Identity on the switch is ``key`` = (table, priority, match).

    ``actions`` empty means drop. ``cookie`` 0 lets the reconciler stamp its bridge cookie.
    """

    __slots__ = (
        "_hash",
        "_key",
        "actions",
        "cookie",
        "hard_timeout",
        "idle_timeout",
        "match",
        "priority",
        "table",
    )
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    idle_timeout: int
    hard_timeout: int
    _hash: int
    _key: tuple[int, int, Match]  # set on first use of ``key``

    def __init__(
        self,
        table: int,
        priority: int,
        match: Match | None = None,
        actions: Iterable[Action] = (),
        cookie: int = 0,
        idle_timeout: int = 0,
        hard_timeout: int = 0,
    ) -> None:
        acts = _interned_actions(tuple(actions))
        for index, act in enumerate(acts):
            if isinstance(act, GotoTable) and index != len(acts) - 1:
                raise ValueError("GotoTable must be the last action")
            if isinstance(act, ApplyMeter) and index != 0:
                raise ValueError("ApplyMeter must be the first action")
        if not 0 <= table <= 254:
            raise ValueError(f"table {table} out of range")
        if not 0 <= priority <= 0xFFFF:
            raise ValueError(f"priority {priority} out of range")
        setter = object.__setattr__
        setter(self, "table", table)
        setter(self, "priority", priority)
        setter(self, "match", match if match is not None else Match())
        setter(self, "actions", acts)
        setter(self, "cookie", cookie)
        setter(self, "idle_timeout", idle_timeout)
        setter(self, "hard_timeout", hard_timeout)
        setter(
            self,
            "_hash",
            hash((table, priority, self.match, acts, cookie, idle_timeout, hard_timeout)),
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Flow is immutable")

    @property
    def key(self) -> tuple[int, int, Match]:
        """What OpenFlow uses to tell flows apart: a second add with the same key replaces.

        Built once and kept: the ledger and each reconciler's views key their dicts by it, so
        they share one tuple per flow instead of three."""
        try:
            return self._key
        except AttributeError:  # first use (or a Flow built without __init__: flow_stats)
            key = (self.table, self.priority, self.match)
            object.__setattr__(self, "_key", key)
            return key

    def replace(self, **changes: Any) -> Flow:
        values: dict[str, Any] = {
            "table": self.table,
            "priority": self.priority,
            "match": self.match,
            "actions": self.actions,
            "cookie": self.cookie,
            "idle_timeout": self.idle_timeout,
            "hard_timeout": self.hard_timeout,
        }
        values.update(changes)
        return Flow(**values)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.table == other.table
            and self.priority == other.priority
            and self.match == other.match
            and self.actions == other.actions
            and self.cookie == other.cookie
            and self.idle_timeout == other.idle_timeout
            and self.hard_timeout == other.hard_timeout
        )

    def __repr__(self) -> str:
        extra = f", cookie={self.cookie:#x}" if self.cookie else ""
        return (
            f"Flow(table={self.table}, priority={self.priority}, match={self.match!r}, "
            f"actions={self.actions!r}{extra})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Flow,
            (self.table, self.priority, self.match, self.actions, self.cookie,
             self.idle_timeout, self.hard_timeout),
        )  # fmt: skip
