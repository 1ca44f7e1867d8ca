"""oslo.messaging's AMQP message format (version 2.0), as pure functions.

See /work/shared/reference/oslo-messaging-wire.md: the body is
``{"oslo.version": "2.0", "oslo.message": "<JSON string>"}``; the inner object carries
``method``/``args``/``version`` (requests), ``result``/``failure``/``ending`` (replies),
``_unique_id`` always, ``_msg_id``/``_reply_q``/``_timeout`` on calls, and the request context
flattened as ``_context_<key>``. Nothing here touches a socket, so all of it is unit-tested.
"""

from __future__ import annotations

import json
import traceback as tb
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aovs.rpc.errors import NoSuchMethod, RemoteError, UnsupportedVersion, WireError

OSLO_VERSION = "2.0"
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
DISPATCHER_MODULE = "oslo_messaging.rpc.dispatcher"
CONTEXT_PREFIX = "_context_"

Context = dict[str, Any]


def new_id() -> str:
    return uuid.uuid4().hex


def admin_context() -> Context:
    """The context neutron agents send (``get_admin_context_without_session``), minimal.

    neutron's ``Context.from_dict`` accepts missing keys, so only what identifies the request.
    """
    request_id = f"req-{uuid.uuid4()}"
    return {
        "user_id": None,
        "project_id": None,
        "tenant_id": None,
        "is_admin": True,
        "roles": ["admin"],
        "request_id": request_id,
        "global_request_id": None,
        "read_only": False,
        "show_deleted": False,
    }


def encode(inner: dict[str, Any]) -> bytes:
    """Wrap an inner message in the 2.0 envelope (the inner object is a JSON *string*)."""
    return json.dumps(
        {"oslo.version": OSLO_VERSION, "oslo.message": json.dumps(inner)}, separators=(",", ":")
    ).encode()


def decode(body: bytes) -> dict[str, Any]:
    """The inner message of an envelope; a 1.0 (unwrapped) message is accepted as oslo does."""
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"body is not JSON: {exc}") from None
    if not isinstance(outer, dict):
        raise WireError(f"body is a JSON {type(outer).__name__}, not an object")
    if "oslo.version" not in outer:
        return outer
    if outer["oslo.version"] != OSLO_VERSION:
        raise WireError(f"unsupported oslo.version {outer['oslo.version']!r}")
    try:
        inner = json.loads(outer["oslo.message"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"oslo.message is not a JSON string: {exc}") from None
    if not isinstance(inner, dict):
        raise WireError("oslo.message is not a JSON object")
    return inner


def request(
    method: str,
    args: dict[str, Any],
    version: str,
    context: Context,
    *,
    msg_id: str | None = None,
    reply_q: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A call (with ``msg_id`` and ``reply_q``) or a cast (without)."""
    inner: dict[str, Any] = {"method": method, "args": args, "version": version}
    if namespace is not None:
        inner["namespace"] = namespace
    inner.update((CONTEXT_PREFIX + key, value) for key, value in context.items())
    if msg_id is not None:
        inner["_msg_id"] = msg_id
        inner["_reply_q"] = reply_q
        inner["_timeout"] = None
    inner["_unique_id"] = new_id()
    return inner


def reply(msg_id: str, result: Any = None, failure: str | None = None) -> dict[str, Any]:
    return {
        "result": result,
        "failure": failure,
        "ending": True,
        "_msg_id": msg_id,
        "_unique_id": new_id(),
    }


@dataclass(frozen=True, slots=True)
class Request:
    """An incoming call or cast, its context unflattened."""

    method: str
    args: dict[str, Any]
    version: str | None
    namespace: str | None
    context: Context
    msg_id: str | None = None
    reply_q: str | None = None
    unique_id: str | None = None

    @property
    def wants_reply(self) -> bool:
        return self.msg_id is not None and self.reply_q is not None


def parse_request(inner: dict[str, Any]) -> Request:
    method = inner.get("method")
    if not isinstance(method, str) or not method:
        raise WireError("request without a method")
    args = inner.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise WireError(f"{method}: args is a {type(args).__name__}, not an object")
    version = inner.get("version")
    context = {
        key[len(CONTEXT_PREFIX) :]: value
        for key, value in inner.items()
        if key.startswith(CONTEXT_PREFIX)
    }
    return Request(
        method=method,
        args=args,
        version=None if version is None else str(version),
        namespace=inner.get("namespace"),
        context=context,
        msg_id=inner.get("_msg_id"),
        reply_q=inner.get("_reply_q"),
        unique_id=inner.get("_unique_id"),
    )


def failure_from_exception(exc: BaseException) -> str:
    """oslo's ``serialize_remote_exception``: a JSON string, not an object."""
    cls = type(exc)
    module = cls.__module__
    kwargs = getattr(exc, "kwargs", {})
    data = {
        "class": getattr(exc, "oslo_class", cls.__name__),
        "module": getattr(exc, "oslo_module", module),
        "message": str(exc),
        "tb": tb.format_exception(exc),
        "args": [_jsonable(arg) for arg in exc.args],
        "kwargs": kwargs if isinstance(kwargs, dict) else {},
    }
    return json.dumps(data, default=str)


def remote_error_from_failure(failure: Any) -> RemoteError:
    """The typed error for a reply's ``failure`` (a JSON string; an object is tolerated)."""
    if isinstance(failure, str):
        try:
            data = json.loads(failure)
        except ValueError:
            return RemoteError("RemoteError", "unknown", failure)
    else:
        data = failure
    if not isinstance(data, dict):
        return RemoteError("RemoteError", "unknown", str(failure))
    exc_type = str(data.get("class", "RemoteError"))
    module = str(data.get("module", "unknown"))
    message = str(data.get("message", ""))
    trace = tuple(str(line) for line in data.get("tb") or ())
    kind: type[RemoteError] = RemoteError
    if module == DISPATCHER_MODULE and exc_type == "NoSuchMethod":
        kind = NoSuchMethod
    elif module == DISPATCHER_MODULE and exc_type == "UnsupportedVersion":
        kind = UnsupportedVersion
    return kind(exc_type, module, message, trace)


def version_is_compatible(implemented: str | None, requested: str | None) -> bool:
    """oslo's rule: same major; the server's minor (and revision) at least the requested."""
    if implemented is None:
        return True
    if requested is None:
        return False
    try:
        want = [int(part) for part in requested.split(".")] + [0, 0]
        have = [int(part) for part in implemented.split(".")] + [0, 0]
    except ValueError:
        return False
    if want[0] != have[0]:
        return False
    if want[1] != have[1]:
        return want[1] < have[1]
    return want[2] <= have[2]


@dataclass
class DuplicateFilter:
    """Drop a message whose ``_unique_id`` is among the last 16 seen (oslo's _MsgIdCache).

    Redelivery after a lost ack is the case this catches; 16 is oslo's window.
    """

    size: int = 16
    _seen: deque[str] = field(default_factory=deque)

    def is_duplicate(self, unique_id: str | None) -> bool:
        if unique_id is None:
            return False
        if unique_id in self._seen:
            return True
        self._seen.append(unique_id)
        if len(self._seen) > self.size:
            self._seen.popleft()
        return False


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value
