"""The datum codec: decode(encode(v)) == v per column shape, and update2 diffs applied exactly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aovs.ovsdb.datum import NamedUuid, Uuid, decoder, diff_applier, encode
from aovs.ovsdb.errors import ProtocolError
from aovs.ovsdb.schema import ColumnType, DatabaseSchema, Shape

uuids = st.uuids().map(lambda u: Uuid(str(u)))
strings = st.text(max_size=12)
integers = st.integers(min_value=-(2**63), max_value=2**63 - 1)

SCALAR_INT = ColumnType("integer", None, 1, 1)
OPTIONAL_INT = ColumnType("integer", None, 0, 1)
UUID_SET = ColumnType("uuid", None, 0, -1)
STRING_SET = ColumnType("string", None, 1, -1)
STRING_MAP = ColumnType("string", "string", 0, -1)


def test_shapes_from_schema() -> None:
    schema = DatabaseSchema.parse(
        {
            "name": "db",
            "version": "1",
            "tables": {
                "T": {
                    "columns": {
                        "n": {"type": "integer"},
                        "o": {"type": {"key": "integer", "min": 0, "max": 1}},
                        "s": {
                            "type": {"key": {"type": "uuid", "refTable": "T"}, "max": "unlimited"}
                        },
                        "m": {
                            "type": {
                                "key": "string",
                                "value": "string",
                                "min": 0,
                                "max": "unlimited",
                            }
                        },
                    }
                }
            },
        }
    )
    table = schema.table("T")
    assert [table.column(c).shape for c in "nosm"] == [
        Shape.SCALAR,
        Shape.OPTIONAL,
        Shape.SET,
        Shape.MAP,
    ]
    assert table.column("_uuid").shape is Shape.SCALAR


@pytest.mark.parametrize(
    ("column", "raw", "value"),
    [
        (OPTIONAL_INT, ["set", []], None),  # ofport before ovs-vswitchd assigns one
        (OPTIONAL_INT, 7, 7),
        (OPTIONAL_INT, -1, -1),
        (UUID_SET, ["uuid", "0b8e4e37-0000-4000-8000-000000000001"],
         {"0b8e4e37-0000-4000-8000-000000000001"}),
        (STRING_SET, ["set", ["OpenFlow10", "OpenFlow13"]], {"OpenFlow10", "OpenFlow13"}),
        (STRING_MAP, ["map", [["iface-id", "x"], ["attached-mac", "fa:16:3e:00:00:01"]]],
         {"iface-id": "x", "attached-mac": "fa:16:3e:00:00:01"}),
        (STRING_MAP, ["map", []], {}),
        (ColumnType("real", None, 1, 1), 2, 2.0),
    ],
)  # fmt: skip
def test_decode_wire_forms(column: ColumnType, raw: Any, value: Any) -> None:
    decoded = decoder(column)(raw)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(decoded, frozenset)


def test_uuid_atoms_decode_to_uuid_and_encode_back() -> None:
    value = decoder(UUID_SET)(["set", [["uuid", "a"], ["uuid", "b"]]])
    assert all(isinstance(v, Uuid) for v in value)
    assert encode(Uuid("a")) == ["uuid", "a"]
    assert encode(NamedUuid("row1")) == ["named-uuid", "row1"]
    assert encode(None) == ["set", []]


@pytest.mark.parametrize(
    ("column", "raw"),
    [
        (OPTIONAL_INT, ["set", [1, 2]]),
        (STRING_MAP, ["set", []]),
        (STRING_MAP, ["map", [["k"]]]),
        (UUID_SET, ["named-uuid", "x"]),
        (UUID_SET, ["set", "notalist"]),
    ],
)
def test_malformed_datums_raise_protocol_error(column: ColumnType, raw: Any) -> None:
    with pytest.raises(ProtocolError):
        decoder(column)(raw)


@given(st.one_of(st.none(), integers))
def test_optional_round_trip(value: int | None) -> None:
    assert decoder(OPTIONAL_INT)(encode(value)) == value


@given(st.frozensets(uuids, max_size=6))
def test_uuid_set_round_trip(value: frozenset[Uuid]) -> None:
    assert decoder(UUID_SET)(encode(value)) == value


@given(st.dictionaries(strings, strings, max_size=6))
def test_map_round_trip(value: dict[str, str]) -> None:
    assert decoder(STRING_MAP)(encode(value)) == value


# -- update2 diffs, written as RFC 7047bis / ovsdb-server compute them --------------------------
def _set_diff(old: frozenset[Any], new: frozenset[Any]) -> Any:
    members = old ^ new
    return encode(next(iter(members))) if len(members) == 1 else encode(members)


def _map_diff(old: dict[str, str], new: dict[str, str]) -> Any:
    pairs = {k: v for k, v in new.items() if old.get(k) != v}
    pairs.update({k: v for k, v in old.items() if k not in new})
    return encode(pairs)


@given(st.one_of(st.none(), integers), st.one_of(st.none(), integers))
def test_optional_diff(old: int | None, new: int | None) -> None:
    as_set = lambda v: frozenset() if v is None else frozenset((v,))  # noqa: E731
    if old == new:
        return
    assert diff_applier(OPTIONAL_INT)(old, _set_diff(as_set(old), as_set(new))) == new


def test_optional_diff_as_ovsdb_server_sends_it() -> None:
    """Measured on ovsdb-server 3.1 (Port.tag 5 -> 6 -> none): the new value, not a diff."""
    apply = diff_applier(OPTIONAL_INT)
    assert apply(5, 6) == 6
    assert apply(5, ["set", []]) is None
    assert apply(None, 7) == 7


@given(st.frozensets(uuids, max_size=5), st.frozensets(uuids, max_size=5))
def test_set_diff(old: frozenset[Uuid], new: frozenset[Uuid]) -> None:
    if old != new:
        assert diff_applier(UUID_SET)(old, _set_diff(old, new)) == new


@given(st.dictionaries(strings, strings, max_size=5), st.dictionaries(strings, strings, max_size=5))
def test_map_diff(old: dict[str, str], new: dict[str, str]) -> None:
    before = dict(old)
    assert diff_applier(STRING_MAP)(old, _map_diff(old, new)) == new
    assert old == before  # copy on write: rows already handed out never change


def test_scalar_diff_is_the_new_value() -> None:
    assert diff_applier(SCALAR_INT)(3, 9) == 9
