from __future__ import annotations

import json

import pytest

from aovs.rpc import wire
from aovs.rpc.dispatch import Dispatcher, NoSuchMethodFailure, UnsupportedVersionFailure
from aovs.rpc.errors import NoSuchMethod, RemoteError, UnsupportedVersion, WireError


def test_envelope_wraps_the_inner_message_as_a_json_string() -> None:
    inner = wire.request("m", {"a": 1}, "1.5", {"is_admin": True}, msg_id="id", reply_q="reply_x")
    outer = json.loads(wire.encode(inner))
    assert outer["oslo.version"] == "2.0"
    assert isinstance(outer["oslo.message"], str)
    decoded = json.loads(outer["oslo.message"])
    assert decoded["method"] == "m" and decoded["args"] == {"a": 1} and decoded["version"] == "1.5"
    assert decoded["_context_is_admin"] is True
    assert decoded["_msg_id"] == "id" and decoded["_reply_q"] == "reply_x"
    assert decoded["_timeout"] is None and len(decoded["_unique_id"]) == 32
    assert "namespace" not in decoded
    assert wire.decode(wire.encode(inner)) == inner


def test_cast_has_no_reply_fields() -> None:
    inner = wire.request("m", {}, "1.0", {})
    assert not {"_msg_id", "_reply_q", "_timeout"} & set(inner)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"oslo.version": "2.0", "oslo.message": "nope"}',
     b'{"oslo.version": "3.0", "oslo.message": "{}"}'],
)  # fmt: skip
def test_malformed_bodies_raise_wire_error(body: bytes) -> None:
    with pytest.raises(WireError):
        wire.decode(body)


def test_unwrapped_v1_message_is_accepted() -> None:
    assert wire.decode(b'{"method": "x"}') == {"method": "x"}


def test_parse_request_unflattens_the_context() -> None:
    inner = wire.request("m", {"x": 1}, "1.0", {"user_id": "u", "roles": ["admin"]})
    request = wire.parse_request(inner)
    assert request.context == {"user_id": "u", "roles": ["admin"]}
    assert not request.wants_reply


def test_parse_request_rejects_non_object_args() -> None:
    with pytest.raises(WireError, match="args"):
        wire.parse_request({"method": "m", "args": [1]})


@pytest.mark.parametrize(
    ("implemented", "requested", "ok"),
    [("1.9", "1.5", True), ("1.5", "1.9", False), ("1.9", "2.0", False), ("2.0", "1.0", False),
     ("1.9", "1.9", True), (None, "7.0", True), ("1.0", None, False), ("1.2.1", "1.2.2", False)],
)  # fmt: skip
def test_version_rule_is_olsos(implemented: str | None, requested: str | None, ok: bool) -> None:
    assert wire.version_is_compatible(implemented, requested) is ok


def test_failure_round_trip_keeps_class_module_message() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        failure = wire.failure_from_exception(exc)
    assert isinstance(failure, str)
    error = wire.remote_error_from_failure(failure)
    assert type(error) is RemoteError
    assert (error.exc_type, error.module, error.message) == ("ValueError", "builtins", "bad value")
    assert any("bad value" in line for line in error.traceback)


def test_dispatcher_failures_serialise_as_oslos() -> None:
    no_method = wire.remote_error_from_failure(
        wire.failure_from_exception(NoSuchMethodFailure("x"))
    )
    assert isinstance(no_method, NoSuchMethod)
    assert no_method.module == "oslo_messaging.rpc.dispatcher"
    bad_version = wire.remote_error_from_failure(
        wire.failure_from_exception(UnsupportedVersionFailure("2.0", "x"))
    )
    assert isinstance(bad_version, UnsupportedVersion)


class _Old:
    rpc_version = "1.3"

    def shared(self, context: object) -> str:
        return "old"

    def only_old(self, context: object) -> str:
        return "old"


class _New:
    rpc_version = "1.9"

    def shared(self, context: object) -> str:
        return "new"

    def _private(self, context: object) -> None: ...


def _req(method: str, version: str, namespace: str | None = None) -> wire.Request:
    return wire.Request(method, {}, version, namespace, {})


def test_dispatcher_picks_the_first_compatible_endpoint() -> None:
    dispatcher = Dispatcher([_Old(), _New()])
    assert dispatcher.resolve(_req("shared", "1.2"))({}) == "old"
    assert dispatcher.resolve(_req("shared", "1.5"))({}) == "new"
    with pytest.raises(NoSuchMethodFailure):
        dispatcher.resolve(_req("only_old", "1.5"))
    with pytest.raises(NoSuchMethodFailure):
        dispatcher.resolve(_req("_private", "1.0"))
    with pytest.raises(UnsupportedVersionFailure):
        dispatcher.resolve(_req("shared", "2.0"))
    with pytest.raises(UnsupportedVersionFailure):  # no endpoint in that namespace
        dispatcher.resolve(_req("shared", "1.0", namespace="other"))


def test_duplicate_filter_remembers_the_last_16() -> None:
    dedup = wire.DuplicateFilter()
    ids = [f"id{i}" for i in range(17)]
    assert not any(dedup.is_duplicate(i) for i in ids)
    assert dedup.is_duplicate("id16") and dedup.is_duplicate("id1")
    assert not dedup.is_duplicate("id0")  # pushed out of the window
    assert not dedup.is_duplicate(None)
