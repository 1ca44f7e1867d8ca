"""The Flow value: what the pure pipelines return and the reconciler compares.

A ``Flow`` is immutable and hashable (hash cached: sets of 50k+ flows are diffed on hot paths).
Match fields use os-ken's OXM/NXM names (``in_port``, ``eth_src``, ``reg5``, ``ct_state``, ...),
so encoding is a direct mapping. Values are normalised ON CONSTRUCTION to the form the switch
reports back in flow-stats (lower-case MACs, compressed IPv6, masks dropped when full, CIDR as
``(network, netmask)``), so a Flow built by a pipeline equals the Flow decoded from a dump.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

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


@functools.lru_cache(maxsize=1 << 14)
def canonical_address(text: str) -> str:
    """A plain IPv4 or IPv6 address (no prefix) as the switch prints it, what its /32 or /128
    network would print, without building the network; ValueError if it is neither. One
    parse per address for all its fields (a port's: ipv4_src, arp_spa, ...)."""
    address = ipaddress.IPv6Address(text) if ":" in text else ipaddress.IPv4Address(text)
    return str(address)


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
        if isinstance(value, str) and "/" not in value and "%" not in value:
            return canonical_address(value)
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


def field_pair(name: str, value: Any) -> tuple[str, MatchValue]:
    """``(name, normalised value)``, shared with every match holding it: what
    :meth:`Match.of_pairs` takes, so a pipeline normalises a port's values once for all of its
    flows."""
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


_field = field_pair


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

    @classmethod
    def of_pairs(cls, pairs: Iterable[tuple[str, MatchValue]]) -> Match:
        """The Match of pairs :func:`field_pair` made (one per field name): equal to
        ``Match(**dict(pairs))`` without normalising again, the cost of Match() on hot paths."""
        return cls.of_sorted_pairs(tuple(sorted(pairs)))

    @classmethod
    def of_sorted_pairs(cls, items: tuple[tuple[str, MatchValue], ...]) -> Match:
        """As :meth:`of_pairs`, of pairs already in name order (a precompiled template's)."""
        match = object.__new__(cls)
        object.__setattr__(match, "fields", items)
        object.__setattr__(match, "_hash", hash(items))
        return match

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


class _HashOf:
    """Hashes as the value it stands for. A tuple's hash combines only its elements' hashes, so
    a Flow hashes an interned action list through this (or the int itself, when an int hashes
    as itself) instead of hashing every action again (each a Python-level dataclass hash)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __hash__(self) -> int:
        return self.value


def _hash_token(actions: tuple[Action, ...]) -> object:
    value = hash(actions)
    return value if hash(value) == value else _HashOf(value)


# One shared, checked tuple per distinct action list, with its hash token. By value, and by id:
# a caller passing back a tuple it got from interning (a pipeline's per-port action lists, every
# Flow's actions) is recognised without hashing its actions again. The id map holds only tuples
# the value map keeps alive, so an id cannot be reused while it is there; both cleared together.
_ACTIONS: dict[tuple[Action, ...], tuple[tuple[Action, ...], object]] = {}
_INTERNED_IDS: dict[int, tuple[tuple[Action, ...], object]] = {}
MAX_INTERNED_ACTIONS = 1 << 16


def _check_actions(actions: tuple[Action, ...]) -> None:
    for index, act in enumerate(actions):
        if isinstance(act, GotoTable) and index != len(actions) - 1:
            raise ValueError("GotoTable must be the last action")
        if isinstance(act, ApplyMeter) and index != 0:
            raise ValueError("ApplyMeter must be the first action")


def _interned(actions: Iterable[Action]) -> tuple[tuple[Action, ...], object]:
    """(shared tuple, what hashes as it) of an action list, checked; an interned tuple passed
    back is recognised by id, without checking or hashing it again."""
    entry = _INTERNED_IDS.get(id(actions))
    if entry is not None and entry[0] is actions:
        return entry
    acts = tuple(actions)
    _check_actions(acts)
    try:
        candidate = acts, _hash_token(acts)
    except TypeError:  # an unhashable value inside an action: kept as it is
        return acts, acts
    if len(_ACTIONS) >= MAX_INTERNED_ACTIONS:
        _ACTIONS.clear()
        _INTERNED_IDS.clear()
    # most lists arriving here are new (a port's own): two hashes of them, not three
    entry = _ACTIONS.setdefault(acts, candidate)
    if entry is candidate:
        _INTERNED_IDS[id(acts)] = entry
    return entry


def interned_actions(actions: Iterable[Action]) -> tuple[Action, ...]:
    """One shared, checked tuple per distinct action list: 1000 ports' 66k flows carry 10k
    distinct ones (and their action objects: 53k built, 2k distinct). Bounded: cleared when
    full (the flows built meanwhile keep theirs)."""
    return _interned(actions)[0]


def normal() -> Output:
    return Output(OFPP_NORMAL, 0)


class _FlowSlots:
    """A Flow's storage. Flow forbids assignment; its __init__ fills a new instance while it is
    briefly a _FlowFill (the same slots, plain assignment): nine ``object.__setattr__`` calls
    were half the cost of building a Flow, and a cold boot builds 66k of them."""

    __slots__ = (
        "_hash",
        "actions",
        "cookie",
        "hard_timeout",
        "idle_timeout",
        "key",
        "match",
        "priority",
        "table",
    )


class Flow(_FlowSlots):
    """One OpenFlow rule. Identity on the switch is ``key`` = (table, priority, match).

    ``actions`` empty means drop. ``cookie`` 0 lets the reconciler stamp its bridge cookie.
    """

    __slots__ = ()
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    idle_timeout: int
    hard_timeout: int
    _hash: int
    # What OpenFlow uses to tell flows apart: a second add with the same key replaces. A slot,
    # not a property: the ledger and each reconciler's views key their dicts by it (hundreds of
    # thousands of reads a cold boot), sharing one tuple per flow.
    key: tuple[int, int, Match]

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
        entry = _INTERNED_IDS.get(id(actions))
        if entry is None or entry[0] is not actions:
            entry = _interned(actions)
        acts, acts_hash = entry
        if not 0 <= table <= 254:
            raise ValueError(f"table {table} out of range")
        if not 0 <= priority <= 0xFFFF:
            raise ValueError(f"priority {priority} out of range")
        if match is None:
            match = Match()
        cls = type(self)
        object.__setattr__(self, "__class__", _FlowFill)  # see _FlowSlots
        self.table = table
        self.priority = priority
        self.match = match
        self.key = (table, priority, match)
        self.actions = acts
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.hard_timeout = hard_timeout
        # == hash((table, priority, match, acts, ...)): what flow_stats' decoder computes
        self._hash = hash((table, priority, match, acts_hash, cookie, idle_timeout, hard_timeout))
        self.__class__ = cls

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Flow is immutable")

    if not TYPE_CHECKING:  # (kept from mypy: it would accept any attribute name)

        def __getattr__(self, name: str) -> Any:
            """``key`` of a Flow built without __init__ (flow_stats' decoder), on first use."""
            if name != "key":
                raise AttributeError(name)
            key = (self.table, self.priority, self.match)
            object.__setattr__(self, "key", key)
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


class _FlowFill(_FlowSlots):
    """A Flow being filled in by Flow.__init__ (see _FlowSlots); never seen outside it."""

    __slots__ = ()
