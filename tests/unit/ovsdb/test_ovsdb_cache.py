"""The row cache: update2 applied, conditions re-checked, a resync reported as plain events."""

from __future__ import annotations

from typing import Any

import pytest
from ovsdb_fake import SCHEMA

from aovs.ovsdb.cache import RowCache
from aovs.ovsdb.conditions import HasKey
from aovs.ovsdb.errors import ProtocolError
from aovs.ovsdb.rows import EventKind
from aovs.ovsdb.schema import DatabaseSchema

COLUMNS = {"Interface": ["name", "ofport", "external_ids"]}


def _cache(**where: Any) -> RowCache:
    cache = RowCache(COLUMNS, where or None)
    cache.bind(DatabaseSchema.parse(SCHEMA))
    return cache


def _ids(iface_id: str) -> list[Any]:
    return ["map", [["iface-id", iface_id]]]


def _kinds(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.kind.value, e.row["name"]) for e in events]


def test_insert_without_ofport_then_modify_with_it() -> None:
    cache = _cache()
    [insert] = cache.apply(
        {"Interface": {"u1": {"insert": {"name": "tap1", "external_ids": _ids("a")}}}}
    )
    assert insert.kind is EventKind.INSERT
    assert insert.new is not None and insert.new["ofport"] is None  # left out = the default
    [modify] = cache.apply({"Interface": {"u1": {"modify": {"ofport": 5}}}})
    assert modify.kind is EventKind.MODIFY and modify.changed == {"ofport"}
    assert modify.old is not None and modify.old["ofport"] is None
    assert modify.new is not None and modify.new["ofport"] == 5
    [renumber] = cache.apply({"Interface": {"u1": {"modify": {"ofport": ["set", [5, 9]]}}}})
    assert renumber.new is not None and renumber.new["ofport"] == 9
    [delete] = cache.apply({"Interface": {"u1": {"delete": None}}})
    assert delete.kind is EventKind.DELETE and delete.old is not None
    assert cache.visible("Interface") == {}


def test_client_side_condition_turns_key_changes_into_insert_and_delete() -> None:
    cache = _cache(Interface=HasKey("external_ids", "iface-id"))
    assert cache.request()["Interface"][0]["where"] == [["external_ids", "!=", ["map", []]]]
    assert cache.apply({"Interface": {"u1": {"insert": {"name": "x", "external_ids": _ids("a")}}}})
    assert (
        cache.apply(
            {
                "Interface": {
                    "u2": {"insert": {"name": "y", "external_ids": ["map", [["other", "1"]]]}}
                }
            }
        )
        == []
    )
    gained = cache.apply({"Interface": {"u2": {"modify": {"external_ids": _ids("b")}}}})
    assert _kinds(gained) == [("insert", "y")]
    lost = cache.apply(
        {"Interface": {"u1": {"modify": {"external_ids": _ids("a")}}}}
    )  # key removed
    assert _kinds(lost) == [("delete", "x")]
    assert set(cache.visible("Interface")) == {"u2"}


def test_resync_emits_only_the_difference() -> None:
    cache = _cache()
    first = cache.replace(
        {
            "Interface": {
                u: {"initial": {"name": u, "ofport": n}} for u, n in [("a", 1), ("b", 2), ("c", 3)]
            }
        }
    )
    assert sorted(_kinds(first)) == [("insert", "a"), ("insert", "b"), ("insert", "c")]
    # while disconnected: b vanished, c got a new ofport, d appeared, a untouched
    second = cache.replace(
        {
            "Interface": {
                u: {"initial": {"name": u, "ofport": n}} for u, n in [("a", 1), ("c", 7), ("d", 4)]
            }
        }
    )
    assert sorted(_kinds(second)) == [("delete", "b"), ("insert", "d"), ("modify", "c")]
    [modify] = [e for e in second if e.kind is EventKind.MODIFY]
    assert modify.old is not None and modify.new is not None
    assert (modify.old["ofport"], modify.new["ofport"], modify.changed) == (3, 7, {"ofport"})
    assert cache.replace({}) and cache.visible("Interface") == {}


def _with_valid_insert(update: Any) -> Any:
    """``update`` plus a valid insert, which must not be applied either."""
    if not isinstance(update, dict):
        return update
    rows = update.get("Interface", {})
    valid = {"u2": {"insert": {"name": "tap2"}}}
    return {**update, "Interface": {**valid, **rows} if isinstance(rows, dict) else rows}


@pytest.mark.parametrize(
    "update",
    [
        {"Interface": {"u9": {"modify": {"ofport": 1}}}},  # never inserted
        {"Interface": {"u1": {"modify": {"nope": 1}}}},  # column not monitored
        {"Interface": {"u1": {"explode": {}}}},
        {"Interface": {"u1": {"modify": {"ofport": ["set", [1, 2, 3]]}}}},
        {"Port": {}},
        {"Interface": []},
        [],
    ],
)
def test_malformed_update_raises_and_changes_nothing(update: Any) -> None:
    cache = _cache()
    cache.apply({"Interface": {"u1": {"insert": {"name": "tap1", "ofport": 3}}}})
    before = dict(cache.visible("Interface"))
    with pytest.raises(ProtocolError):
        cache.apply(_with_valid_insert(update))
    assert dict(cache.visible("Interface")) == before
