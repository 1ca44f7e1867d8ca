"""The database schema as the client needs it: each column's type, to decode datums once.

OVSDB encodes a one-element set as a bare atom and an empty optional value as an empty set, so a
datum cannot be decoded without knowing its column's type. The client fetches the schema with
``get_schema`` on every (re)connect and decodes through the column types built here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb.errors import SchemaError

UNLIMITED = -1


class Shape(enum.Enum):
    """How a column's values look in Python (see :mod:`aovs.ovsdb.datum`)."""

    SCALAR = "scalar"  # exactly one atom: the atom
    OPTIONAL = "optional"  # zero or one atom: None or the atom
    SET = "set"  # any other set: frozenset of atoms
    MAP = "map"  # key/value pairs: dict


_ATOMIC_DEFAULTS: dict[str, Any] = {
    "integer": 0,
    "real": 0.0,
    "boolean": False,
    "string": "",
    "uuid": None,
}


@dataclass(frozen=True, slots=True)
class ColumnType:
    key: str  # atomic type of the key (or of the elements)
    value: str | None  # atomic type of the values for maps
    min: int
    max: int  # UNLIMITED for "unlimited"

    @property
    def shape(self) -> Shape:
        if self.value is not None:
            return Shape.MAP
        if self.min == 1 and self.max == 1:
            return Shape.SCALAR
        if self.max == 1:
            return Shape.OPTIONAL
        return Shape.SET

    @classmethod
    def parse(cls, raw: Any) -> ColumnType:
        """Parse RFC 7047 ``<type>``: an atomic type name or an object with key/value/min/max."""
        if isinstance(raw, str):
            return cls(key=raw, value=None, min=1, max=1)
        if not isinstance(raw, dict):
            raise SchemaError(f"bad column type {raw!r}")
        key = _atomic(raw.get("key"))
        value = _atomic(raw["value"]) if "value" in raw else None
        max_ = raw.get("max", 1)
        return cls(
            key=key,
            value=value,
            min=int(raw.get("min", 1)),
            max=UNLIMITED if max_ == "unlimited" else int(max_),
        )

    def default(self) -> Any:
        """The value a column has when an insert leaves it out."""
        shape = self.shape
        if shape is Shape.SCALAR:
            return _ATOMIC_DEFAULTS[self.key]
        if shape is Shape.OPTIONAL:
            return None
        if shape is Shape.SET:
            return frozenset()
        return {}


def _atomic(raw: Any) -> str:
    name = raw.get("type") if isinstance(raw, dict) else raw
    if name not in _ATOMIC_DEFAULTS:
        raise SchemaError(f"bad atomic type {raw!r}")
    return str(name)


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str
    columns: Mapping[str, ColumnType]

    def column(self, name: str) -> ColumnType:
        try:
            return self.columns[name]
        except KeyError:
            raise SchemaError(f"table {self.name} has no column {name!r}") from None


UUID_COLUMN = ColumnType(key="uuid", value=None, min=1, max=1)


@dataclass(frozen=True, slots=True)
class DatabaseSchema:
    name: str
    version: str
    tables: Mapping[str, TableSchema]

    @classmethod
    def parse(cls, raw: Any) -> DatabaseSchema:
        if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
            raise SchemaError("get_schema returned no tables")
        tables = {}
        for table_name, table in raw["tables"].items():
            columns = {
                name: ColumnType.parse(column["type"]) for name, column in table["columns"].items()
            }
            columns["_uuid"] = UUID_COLUMN
            tables[table_name] = TableSchema(table_name, columns)
        return cls(name=str(raw.get("name")), version=str(raw.get("version")), tables=tables)

    def table(self, name: str) -> TableSchema:
        try:
            return self.tables[name]
        except KeyError:
            raise SchemaError(f"database {self.name} has no table {name!r}") from None
