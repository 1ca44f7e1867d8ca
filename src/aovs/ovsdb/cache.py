"""The row cache behind a monitor: applies ``monitor_cond`` replies and ``update2`` notifications
and says what changed, as events. Pure: no I/O, no asyncio.

The cache keeps every row the server sends (``update2`` modifies carry only differences, so the
full row is needed to apply the next one) and reports only rows that pass the client-side
condition. A full state (the first reply, or the reply after a reconnect) is diffed against what
was shown before, so a resync is just more insert/modify/delete events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb.conditions import Condition
from aovs.ovsdb.datum import Decoder, DiffApplier, Uuid, decoder, diff_applier
from aovs.ovsdb.errors import ProtocolError
from aovs.ovsdb.rows import EventKind, Row, RowEvent
from aovs.ovsdb.schema import DatabaseSchema


@dataclass(frozen=True, slots=True)
class _TableCodec:
    decoders: Mapping[str, Decoder]
    appliers: Mapping[str, DiffApplier]
    defaults: Mapping[str, Any]


class RowCache:
    def __init__(
        self,
        tables: Mapping[str, Sequence[str]],
        conditions: Mapping[str, Condition] | None = None,
    ) -> None:
        self.conditions = dict(conditions or {})
        unknown = set(self.conditions) - set(tables)
        if unknown:
            raise ValueError(f"conditions for tables not monitored: {sorted(unknown)}")
        self.columns: dict[str, tuple[str, ...]] = {}
        for table, columns in tables.items():
            condition = self.conditions.get(table)
            needed = condition.columns if condition is not None else ()
            self.columns[table] = tuple(dict.fromkeys((*columns, *needed)))
        self._codecs: dict[str, _TableCodec] = {}
        self._all: dict[str, dict[Uuid, Row]] = {table: {} for table in tables}
        self._visible: dict[str, dict[Uuid, Row]] = {table: {} for table in tables}

    def bind(self, schema: DatabaseSchema) -> None:
        """Build the decoders for this schema (checks that every table and column exists)."""
        codecs = {}
        for table, columns in self.columns.items():
            table_schema = schema.table(table)
            types = {column: table_schema.column(column) for column in columns}
            codecs[table] = _TableCodec(
                decoders={c: decoder(t) for c, t in types.items()},
                appliers={c: diff_applier(t) for c, t in types.items()},
                defaults={c: t.default() for c, t in types.items()},
            )
        self._codecs = codecs

    def request(self) -> dict[str, list[dict[str, Any]]]:
        """The ``<monitor-cond-requests>`` parameter of ``monitor_cond``."""
        requests: dict[str, list[dict[str, Any]]] = {}
        for table, columns in self.columns.items():
            request: dict[str, Any] = {"columns": list(columns)}
            condition = self.conditions.get(table)
            if condition is not None:
                request["where"] = condition.clauses()
            requests[table] = [request]
        return requests

    def visible(self, table: str) -> Mapping[Uuid, Row]:
        return self._visible[table]

    # -- applying server messages -------------------------------------------------------------
    def replace(self, state: Any) -> list[RowEvent]:
        """Take a full state (a ``monitor_cond`` reply); return how it differs from the last one."""
        fresh: dict[str, dict[Uuid, Row]] = {table: {} for table in self._all}
        for table, uuid, change in self._walk(state):
            values = change.get("initial", change.get("insert"))
            if not isinstance(values, dict):
                raise ProtocolError(f"{table} {uuid}: expected initial row, got {_short(change)}")
            fresh[table][uuid] = self._full_row(table, uuid, values)
        events: list[RowEvent] = []
        for table, rows in fresh.items():
            for uuid in self._all[table].keys() | rows.keys():
                self._settle(table, uuid, rows.get(uuid), events)
            self._all[table] = rows
        return events

    def apply(self, updates: Any) -> list[RowEvent]:
        """Apply an ``update2`` notification. Nothing changes if any part of it is malformed."""
        staged: list[tuple[str, Uuid, Row | None]] = []
        for table, uuid, change in self._walk(updates):
            if len(change) != 1:
                raise ProtocolError(f"{table} {uuid}: bad row update {_short(change)}")
            ((kind, values),) = change.items()
            if kind in ("insert", "initial"):
                row: Row | None = self._full_row(table, uuid, values)
            elif kind == "modify":
                previous = self._all[table].get(uuid)
                if previous is None:
                    raise ProtocolError(f"{table} {uuid}: modify of a row never inserted")
                row = self._modified_row(previous, values)
            elif kind == "delete":
                row = None
            else:
                raise ProtocolError(f"{table} {uuid}: unknown row update {kind!r}")
            staged.append((table, uuid, row))
        events: list[RowEvent] = []
        for table, uuid, row in staged:
            self._settle(table, uuid, row, events)
            if row is None:
                self._all[table].pop(uuid, None)
            else:
                self._all[table][uuid] = row
        return events

    # -- internals ---------------------------------------------------------------------------
    def _walk(self, updates: Any) -> list[tuple[str, Uuid, dict[str, Any]]]:
        if not isinstance(updates, dict):
            raise ProtocolError(f"table updates must be an object, got {_short(updates)}")
        out = []
        for table, rows in updates.items():
            if table not in self._all:
                raise ProtocolError(f"update for table {table!r} not monitored")
            if not isinstance(rows, dict):
                raise ProtocolError(f"{table}: row updates must be an object")
            for uuid, change in rows.items():
                if not isinstance(change, dict):
                    raise ProtocolError(f"{table} {uuid}: bad row update {_short(change)}")
                out.append((table, Uuid(uuid), change))
        return out

    def _full_row(self, table: str, uuid: Uuid, raw: Any) -> Row:
        if not isinstance(raw, dict):
            raise ProtocolError(f"{table} {uuid}: row must be an object, got {_short(raw)}")
        codec = self._codecs[table]
        values = dict(codec.defaults)
        try:
            for column, datum in raw.items():
                values[column] = codec.decoders[column](datum)
        except KeyError as exc:
            raise ProtocolError(f"{table} {uuid}: column {exc} not monitored") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"{table} {uuid}: undecodable row {_short(raw)}: {exc}") from None
        return Row(table, uuid, values)

    def _modified_row(self, old: Row, raw: Any) -> Row:
        if not isinstance(raw, dict):
            raise ProtocolError(f"{old.table} {old.uuid}: modify must be an object")
        appliers = self._codecs[old.table].appliers
        values = dict(old.values)
        try:
            for column, diff in raw.items():
                values[column] = appliers[column](values[column], diff)
        except KeyError as exc:
            raise ProtocolError(f"{old.table} {old.uuid}: column {exc} not monitored") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"{old.table} {old.uuid}: bad diff {_short(raw)}: {exc}") from None
        return Row(old.table, old.uuid, values)

    def _settle(self, table: str, uuid: Uuid, row: Row | None, events: list[RowEvent]) -> None:
        """Record ``row`` as the visible state of ``uuid`` and append the event it implies."""
        shown = self._visible[table]
        before = shown.get(uuid)
        condition = self.conditions.get(table)
        after = (
            row
            if row is not None and (condition is None or condition.matches(row.values))
            else None
        )
        if after is None:
            if before is not None:
                del shown[uuid]
                events.append(
                    RowEvent(EventKind.DELETE, table, uuid, before, None, frozenset(before.values))
                )
            return
        shown[uuid] = after
        if before is None:
            events.append(
                RowEvent(EventKind.INSERT, table, uuid, None, after, frozenset(after.values))
            )
            return
        changed = frozenset(c for c, v in after.values.items() if before.values.get(c) != v)
        if changed:
            events.append(RowEvent(EventKind.MODIFY, table, uuid, before, after, changed))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else f"{text[:160]}..."
