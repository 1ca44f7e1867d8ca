"""OVSDB datums <-> Python values, in one place.

Decoded shapes, by column type (see :class:`aovs.ovsdb.schema.Shape`):

- exactly one atom (``name``, ``cur_cfg``): the atom (str, int, float, bool or ``Uuid``)
- zero or one atom (``ofport``, ``tag``, ``datapath_id``): ``None`` when empty, else the atom
- any other set (``ports``, ``protocols``): ``frozenset`` of atoms
- a map (``external_ids``, ``options``): ``dict`` (treat as read-only; the cache copies on write)

Encoding needs no schema: ``None`` is the empty set, a ``dict`` a map, a set/list/tuple a set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aovs.ovsdb.errors import ProtocolError
from aovs.ovsdb.schema import ColumnType, Shape

Decoder = Callable[[Any], Any]
DiffApplier = Callable[[Any, Any], Any]


class Uuid(str):
    """A row's UUID: a ``str`` (cheap, hashable, prints plainly); encodes as ``["uuid", ..]``."""

    __slots__ = ()


class NamedUuid(str):
    """A row inserted earlier in the same transaction (``["named-uuid", ..]``)."""

    __slots__ = ()


def _uuid_atom(raw: Any) -> Uuid:
    if raw.__class__ is list and len(raw) == 2 and raw[0] == "uuid" and raw[1].__class__ is str:
        return Uuid(raw[1])
    raise ProtocolError(f"bad OVSDB uuid {raw!r:.80}")


def _typed_atom(kind: type) -> Callable[[Any], Any]:
    def atom(raw: Any) -> Any:
        if raw.__class__ is kind:
            return raw
        raise ProtocolError(f"expected an OVSDB {kind.__name__}, got {raw!r:.80}")

    return atom


def _real_atom(raw: Any) -> float:
    if raw.__class__ is float or raw.__class__ is int:
        return float(raw)
    raise ProtocolError(f"expected an OVSDB real, got {raw!r:.80}")


_ATOMS: dict[str, Callable[[Any], Any]] = {
    "integer": _typed_atom(int),
    "real": _real_atom,
    "boolean": _typed_atom(bool),
    "string": _typed_atom(str),
    "uuid": _uuid_atom,
}


def _elements(raw: Any) -> list[Any]:
    """The members of a set datum: ``["set", [..]]`` or one bare atom."""
    if raw.__class__ is list and raw and raw[0] == "set":
        if len(raw) != 2 or raw[1].__class__ is not list:
            raise ProtocolError(f"bad OVSDB set {raw!r}")
        members: list[Any] = raw[1]
        return members
    return [raw]


def _pairs(raw: Any) -> list[Any]:
    if (
        raw.__class__ is not list
        or len(raw) != 2
        or raw[0] != "map"
        or raw[1].__class__ is not list
    ):
        raise ProtocolError(f"bad OVSDB map {raw!r}")
    pairs: list[Any] = raw[1]
    return pairs


def decoder(column: ColumnType) -> Decoder:
    """A function turning this column's datum (as JSON) into its Python value."""
    key_atom = _ATOMS[column.key]
    value_atom = _ATOMS[column.value or column.key]
    shape = column.shape

    if shape is Shape.SCALAR:
        return key_atom

    if shape is Shape.OPTIONAL:

        def optional(raw: Any) -> Any:
            members = _elements(raw)
            if not members:
                return None
            if len(members) > 1:
                raise ProtocolError(f"more than one value for an optional column: {raw!r}")
            return key_atom(members[0])

        return optional

    if shape is Shape.SET:
        return lambda raw: frozenset(key_atom(m) for m in _elements(raw))

    def mapping(raw: Any) -> dict[Any, Any]:
        try:
            return {key_atom(k): value_atom(v) for k, v in _pairs(raw)}
        except (TypeError, ValueError):
            raise ProtocolError(f"bad OVSDB map {raw!r}") from None

    return mapping


def diff_applier(column: ColumnType) -> DiffApplier:
    """A function ``(old value, update2 modify datum) -> new value`` for this column.

    In ``update2`` a scalar column carries its new value, a set column the symmetric difference
    between the old and new sets, a map column the pairs added, changed (new value) or removed
    (old value). An optional column is a set of at most one atom.
    """
    decode = decoder(column)
    shape = column.shape
    if shape is Shape.SCALAR:
        return lambda _old, raw: decode(raw)

    if shape is Shape.OPTIONAL:
        as_set = decoder(ColumnType(column.key, None, 0, 2))

        def optional(old: Any, raw: Any) -> Any:
            # ovsdb-server 3.1 sends an optional column's NEW value (5 -> 6 is ``6``, 5 -> none
            # is ``["set", []]``), not the symmetric difference; accept both forms (an unchanged
            # column is never sent, so a lone ``old`` is the symmetric form of a removal)
            given = as_set(raw)
            members = given - {old} if old in given else given
            if len(members) > 1:
                raise ProtocolError(
                    f"diff leaves more than one value in an optional column: {raw!r}"
                )
            return next(iter(members), None)

        return optional

    if shape is Shape.SET:
        return lambda old, raw: old ^ decode(raw)

    def mapping(old: Mapping[Any, Any], raw: Any) -> dict[Any, Any]:
        new = dict(old)
        for key, value in decode(raw).items():
            if key in new and new[key] == value:
                del new[key]
            else:
                new[key] = value
        return new

    return mapping


def encode(value: Any) -> Any:
    """A Python value as an OVSDB datum (JSON). The server interprets it by its column type."""
    if value is None:
        return ["set", []]
    if isinstance(value, Mapping):
        return ["map", [[encode_atom(k), encode_atom(v)] for k, v in value.items()]]
    if isinstance(value, set | frozenset | list | tuple):
        return ["set", [encode_atom(v) for v in value]]
    return encode_atom(value)


def encode_atom(value: Any) -> Any:
    if isinstance(value, NamedUuid):
        return ["named-uuid", str(value)]
    if isinstance(value, Uuid):
        return ["uuid", str(value)]
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot encode {value!r} as an OVSDB atom")
