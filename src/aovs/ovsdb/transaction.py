"""Transactions built from composable commands, run with optimistic concurrency.

A command (see :mod:`aovs.ovsdb.commands`) says which rows it needs to look at (``reads``) and
then appends operations given what it saw (``build``). Running commands is: one read-only
transaction with every command's ``select``; then ONE transaction holding a ``wait`` guard per
read (it fails if what we read has changed since) followed by every command's operations. A
failed guard means someone raced us: read again and rebuild (like ovs-vsctl's "try again"). This
gives ovs-vsctl's ``--may-exist``/``--if-exists`` semantics without an IDL thread or a cache.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aovs.ovsdb.datum import NamedUuid, Uuid, decoder, encode
from aovs.ovsdb.errors import (
    ProtocolError,
    RowNotFound,
    TransactionConflict,
    TransactionError,
    transaction_error,
)
from aovs.ovsdb.schema import DatabaseSchema

MAX_ATTEMPTS = 8
Clause = tuple[str, str, Any]


def where(*clauses: Clause) -> tuple[Clause, ...]:
    """Clauses ``(column, function, python value)``; values are encoded when sent."""
    return clauses


def _encode_where(clauses: Sequence[Clause]) -> list[list[Any]]:
    return [[column, function, encode(value)] for column, function, value in clauses]


@dataclass(frozen=True)
class Select:
    """A read a command needs: rows of ``table`` matching ``where``, with ``columns``."""

    table: str
    where: tuple[Clause, ...]
    columns: tuple[str, ...] = ("_uuid",)

    @property
    def key(self) -> str:
        return json.dumps([self.table, _encode_where(self.where), self.columns], sort_keys=True)

    def op(self) -> dict[str, Any]:
        return {
            "op": "select",
            "table": self.table,
            "where": _encode_where(self.where),
            "columns": list(self.columns),
        }


class SelectedRows:
    """What the reads returned, decoded."""

    def __init__(self, schema: DatabaseSchema, results: Mapping[str, list[dict[str, Any]]]) -> None:
        self._schema = schema
        self._results = results

    def rows(self, select: Select) -> list[dict[str, Any]]:
        table = self._schema.table(select.table)
        decoders = {c: decoder(table.column(c)) for c in select.columns}
        return [
            {c: decoders[c](v) for c, v in row.items() if c in decoders}
            for row in self._results[select.key]
        ]

    def uuids(self, select: Select) -> list[Uuid]:
        return [row["_uuid"] for row in self.rows(select)]


@dataclass
class TransactionBuilder:
    """Operations of one transaction, with what each failure of ours means."""

    schema: DatabaseSchema
    ops: list[dict[str, Any]] = field(default_factory=list)
    guards: set[int] = field(default_factory=set)
    requirements: dict[int, str] = field(default_factory=dict)
    inserted: list[NamedUuid] = field(default_factory=list)
    _names: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    @property
    def changes(self) -> int:
        """Operations that change something (not guards, requirements or reads)."""
        return sum(1 for op in self.ops if op["op"] not in ("wait", "select", "comment"))

    def insert(self, table: str, row: Mapping[str, Any]) -> NamedUuid:
        self.schema.table(table)
        name = NamedUuid(f"{table.lower()}{self._names()}")
        self.ops.append(
            {"op": "insert", "table": table, "row": _encode_row(row), "uuid-name": name}
        )
        self.inserted.append(name)
        return name

    def update(self, table: str, where: Sequence[Clause], row: Mapping[str, Any]) -> None:
        if row:
            self.ops.append(
                {
                    "op": "update",
                    "table": table,
                    "where": _encode_where(where),
                    "row": _encode_row(row),
                }
            )

    def mutate(self, table: str, where: Sequence[Clause], mutations: Sequence[Clause]) -> None:
        if mutations:
            self.ops.append(
                {
                    "op": "mutate",
                    "table": table,
                    "where": _encode_where(where),
                    "mutations": [[c, m, encode(v)] for c, m, v in mutations],
                }
            )

    def set_keys(
        self, table: str, where: Sequence[Clause], column: str, pairs: Mapping[str, str]
    ) -> None:
        """Set map keys, keeping the others (``insert`` alone never overwrites a key)."""
        if pairs:
            self.mutate(
                table, where, [(column, "delete", set(pairs)), (column, "insert", dict(pairs))]
            )

    def remove_keys(
        self, table: str, where: Sequence[Clause], column: str, keys: Sequence[str]
    ) -> None:
        if keys:
            self.mutate(table, where, [(column, "delete", set(keys))])

    def require(self, table: str, where: Sequence[Clause], what: str) -> None:
        """Abort the transaction with :class:`RowNotFound` (``what``) unless a row matches."""
        self.requirements[len(self.ops)] = what
        self.ops.append(_wait(table, _encode_where(where), [], "!=", []))

    def guard(self, select: Select, rows: list[dict[str, Any]]) -> None:
        """Abort (and retry) if ``select`` would no longer return ``rows``."""
        self.guards.add(len(self.ops))
        self.ops.append(
            _wait(select.table, _encode_where(select.where), list(select.columns), "==", rows)
        )


def _wait(
    table: str, where: Any, columns: list[str], until: str, rows: list[Any]
) -> dict[str, Any]:
    return {
        "op": "wait",
        "timeout": 0,
        "table": table,
        "where": where,
        "columns": columns,
        "until": until,
        "rows": rows,
    }


def _encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {column: encode(value) for column, value in row.items()}


class Command(Protocol):
    def reads(self) -> Sequence[Select]:
        """Rows this command must see before it can decide what to do."""
        ...

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        """Append this command's operations (or raise, e.g. :class:`RowNotFound`)."""
        ...


@dataclass(frozen=True)
class TransactionResult:
    inserted: Mapping[NamedUuid, Uuid]
    next_cfg: int | None = None
    attempts: int = 1


class TransactionTarget(Protocol):
    """What a transaction needs of a connection (:class:`aovs.ovsdb.client.OVSDBClient`):
    the schema and one ``transact`` request. Keeps this module free of the client (no cycle)."""

    @property
    def schema(self) -> DatabaseSchema: ...

    async def transact_ops(self, ops: Sequence[Mapping[str, Any]]) -> list[Any]: ...


async def run_transaction(
    client: TransactionTarget, commands: Sequence[Command], *, bump_cfg: bool = False
) -> TransactionResult:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        selects = list({s.key: s for c in commands for s in c.reads()}.values())
        results: dict[str, list[dict[str, Any]]] = {}
        if selects:
            raw = await client.transact_ops([s.op() for s in selects])
            _raise_first_error(raw, [s.op() for s in selects])
            results = {s.key: _rows_of(r) for s, r in zip(selects, raw, strict=False)}
        txn = TransactionBuilder(client.schema)
        for select in selects:
            txn.guard(select, results[select.key])
        snapshot = SelectedRows(client.schema, results)
        for command in commands:
            command.build(snapshot, txn)
        if not txn.changes:
            return TransactionResult({}, None, attempt)
        cfg_index = None
        if bump_cfg:
            txn.mutate("Open_vSwitch", [], [("next_cfg", "+=", 1)])
            cfg_index = len(txn.ops)
            txn.ops.append(
                {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]}
            )
        raw = await client.transact_ops(txn.ops)
        failed = _first_error(raw)
        if failed is None:
            inserted = {
                name: Uuid(raw[i]["uuid"][1])
                for i, op in enumerate(txn.ops)
                if op["op"] == "insert"
                for name in [op["uuid-name"]]
            }
            next_cfg = _rows_of(raw[cfg_index])[0]["next_cfg"] if cfg_index is not None else None
            return TransactionResult(inserted, next_cfg, attempt)
        index, error, details = failed
        if index in txn.guards:
            continue
        if index in txn.requirements:
            raise RowNotFound(txn.requirements[index])
        raise transaction_error(error, details, txn.ops[index] if index < len(txn.ops) else None)
    raise TransactionConflict(
        "conflict", f"database kept changing; gave up after {MAX_ATTEMPTS} attempts"
    )


def _rows_of(result: Any) -> list[dict[str, Any]]:
    rows = result.get("rows") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise ProtocolError(f"select result without rows: {result!r:.200}")
    return rows


def _first_error(results: list[Any]) -> tuple[int, str, str] | None:
    for index, result in enumerate(results):
        if isinstance(result, dict) and result.get("error") is not None:
            return index, str(result["error"]), str(result.get("details", ""))
    return None


def _raise_first_error(results: list[Any], ops: list[dict[str, Any]]) -> None:
    failed = _first_error(results)
    if failed is not None:
        index, error, details = failed
        raise transaction_error(error, details, ops[index] if index < len(ops) else None)


__all__ = [
    "Command",
    "Select",
    "SelectedRows",
    "TransactionBuilder",
    "TransactionError",
    "TransactionResult",
    "run_transaction",
    "where",
]
