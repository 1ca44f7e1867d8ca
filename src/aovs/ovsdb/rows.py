"""Rows and row events: what a monitor hands to its consumer."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb.datum import Uuid


@dataclass(frozen=True, slots=True)
class Row:
    """One row as last seen: every monitored column, decoded (see :mod:`aovs.ovsdb.datum`)."""

    table: str
    uuid: Uuid
    values: Mapping[str, Any]

    def __getitem__(self, column: str) -> Any:
        return self.values[column]

    def get(self, column: str, default: Any = None) -> Any:
        return self.values.get(column, default)


class EventKind(enum.StrEnum):
    INSERT = "insert"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class RowEvent:
    """A row appeared, changed or disappeared (including across a reconnect).

    ``old`` is None for an insert, ``new`` is None for a delete; ``changed`` names the columns
    whose values differ (every column for an insert or a delete).
    """

    kind: EventKind
    table: str
    uuid: Uuid
    old: Row | None
    new: Row | None
    changed: frozenset[str]

    @property
    def row(self) -> Row:
        """The row as it is now (as it was, for a delete)."""
        row = self.new if self.new is not None else self.old
        assert row is not None
        return row
