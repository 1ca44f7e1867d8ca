"""Typed errors of the OVSDB client. Server errors keep the server's own words in ``details``."""

from __future__ import annotations

from typing import Any


class OVSDBError(Exception):
    """Base of everything this package raises."""


class SchemaError(OVSDBError):
    """A table or column the database does not have, or a schema we cannot parse."""


class ProtocolError(OVSDBError):
    """The peer broke JSON or JSON-RPC: the connection is reset (and re-established)."""


class ConnectionLost(OVSDBError):
    """The connection went away before a reply: the request's outcome is unknown."""


class JsonRpcError(OVSDBError):
    """A JSON-RPC reply whose ``error`` member is set (e.g. an unknown monitor column)."""

    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class TransactionError(OVSDBError):
    """The server refused a transaction; ``error`` is its error tag, ``details`` its message."""

    def __init__(self, error: str, details: str = "", op: Any = None) -> None:
        message = f"{error}: {details}" if details else error
        super().__init__(message)
        self.error = error
        self.details = details
        self.op = op


class ConstraintViolation(TransactionError):
    """E.g. a value out of range or a column's min/max broken."""


class DuplicateRow(ConstraintViolation):
    """An index (e.g. Port/Interface ``name``) would hold the same value twice."""


class ReferentialIntegrityViolation(TransactionError):
    """A reference to a row that does not exist, or a strong reference left dangling."""


class RowNotFound(TransactionError):
    """A command needed a row (a bridge, a port) that is not in the database."""

    def __init__(self, what: str) -> None:
        super().__init__("row not found", what)


class TransactionConflict(TransactionError):
    """The database kept changing under us: our reads were stale at every retry."""


def transaction_error(error: str, details: str, op: Any = None) -> TransactionError:
    """The typed exception for an RFC 7047 ``{"error": .., "details": ..}`` result."""
    if error == "constraint violation":
        cls = DuplicateRow if "identical values" in details else ConstraintViolation
        return cls(error, details, op)
    if error == "referential integrity violation":
        return ReferentialIntegrityViolation(error, details, op)
    return TransactionError(error, details, op)
