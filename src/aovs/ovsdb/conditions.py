"""Which rows a monitor shows: a server-side clause list plus the same test on the client.

RFC 7047 conditions cannot say "this map has key K whatever its value" (``includes`` with a map
matches key AND value). :class:`HasKey` therefore asks the server for rows whose map is not empty
(``!=`` the empty map, which ovsdb-server 3.1 evaluates in ``monitor_cond``) and keeps only the
rows with the key on the client. Every condition is re-checked on the client, so the server-side
part is only ever a narrowing: a row that stops matching is reported as a delete, one that starts
matching as an insert, whichever side filtered it.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Protocol

from aovs.ovsdb.datum import encode
from aovs.ovsdb.rows import Row


class Condition(Protocol):
    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the client-side test reads (the monitor always fetches them)."""
        ...

    def clauses(self) -> list[list[Any]]:
        """RFC 7047 ``<condition>`` clauses for ``monitor_cond`` (ANDed)."""
        ...

    def matches(self, values: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True, slots=True)
class HasKey:
    """The map ``column`` has ``key`` (e.g. Interface ``external_ids`` has ``iface-id``)."""

    column: str
    key: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def clauses(self) -> list[list[Any]]:
        return [[self.column, "!=", ["map", []]]]

    def matches(self, values: Mapping[str, Any]) -> bool:
        return self.key in values[self.column]


@dataclass(frozen=True, slots=True)
class Equals:
    column: str
    value: Any

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def clauses(self) -> list[list[Any]]:
        return [[self.column, "==", encode(self.value)]]

    def matches(self, values: Mapping[str, Any]) -> bool:
        return bool(values[self.column] == self.value)


@dataclass(frozen=True, slots=True)
class Includes:
    """A set column holds all of ``value``'s members, or a map column all of its pairs."""

    column: str
    value: Any

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def clauses(self) -> list[list[Any]]:
        return [[self.column, "includes", encode(self.value)]]

    def matches(self, values: Mapping[str, Any]) -> bool:
        have = values[self.column]
        if isinstance(self.value, Mapping):
            return all(k in have and have[k] == v for k, v in self.value.items())
        wanted = self.value if isinstance(self.value, Set) else {self.value}
        members = have if isinstance(have, Set) else {have}
        return all(v in members for v in wanted)


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]

    def __init__(self, *conditions: Condition) -> None:
        object.__setattr__(self, "conditions", conditions)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for cond in self.conditions for c in cond.columns))

    def clauses(self) -> list[list[Any]]:
        return [clause for cond in self.conditions for clause in cond.clauses()]

    def matches(self, values: Mapping[str, Any]) -> bool:
        return all(cond.matches(values) for cond in self.conditions)


def row_matches(condition: Condition | None, row: Row) -> bool:
    return condition is None or condition.matches(row.values)
