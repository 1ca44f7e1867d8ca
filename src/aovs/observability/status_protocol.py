"""The status socket's protocol: one JSON request line in, one JSON response line out.

    -> {"version": 1, "command": "status"}           (or "health")
    <- {"version": 1, "ok": true, "result": {...}}    an AgentStatus, or a HealthReport
    <- {"version": 1, "ok": false, "error": "..."}    a request the agent could not serve

Versioned so an ``aovs status`` from a newer package can tell an older agent apart: a request
with a version the agent does not speak gets an error naming both versions.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from aovs.observability.status import STATUS_PROTOCOL_VERSION, AgentStatus, HealthReport

MAX_LINE_BYTES = 64 * 1024  # requests are tiny; responses can be long (thousands of ports)
Command = Literal["status", "health"]


class StatusProtocolError(Exception):
    """A request or response that breaks the protocol; the message is one readable line."""


class StatusRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    command: Command


def encode_request(command: Command) -> bytes:
    request = StatusRequest(version=STATUS_PROTOCOL_VERSION, command=command)
    return request.model_dump_json().encode() + b"\n"


def decode_request(line: bytes) -> StatusRequest:
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StatusProtocolError(f"request is not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("version") not in (None, STATUS_PROTOCOL_VERSION):
        raise StatusProtocolError(
            f"request version {data.get('version')!r} unsupported: agent speaks "
            f"{STATUS_PROTOCOL_VERSION}"
        )
    try:
        return StatusRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise StatusProtocolError(f"bad request: {problems}") from None


def encode_result(result: AgentStatus | HealthReport) -> bytes:
    body = result.model_dump_json()
    return f'{{"version":{STATUS_PROTOCOL_VERSION},"ok":true,"result":{body}}}\n'.encode()


def encode_error(message: str) -> bytes:
    envelope = {"version": STATUS_PROTOCOL_VERSION, "ok": False, "error": message}
    return json.dumps(envelope).encode() + b"\n"


def decode_response(line: bytes) -> dict[str, Any]:
    """The ``result`` object of a successful response; raise with the agent's error otherwise."""
    try:
        envelope = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StatusProtocolError(f"agent's response is not JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("version") != STATUS_PROTOCOL_VERSION:
        raise StatusProtocolError(
            f"agent's response is not status protocol version {STATUS_PROTOCOL_VERSION}"
        )
    if envelope.get("ok") is not True:
        raise StatusProtocolError(f"agent refused the request: {envelope.get('error')}")
    result = envelope.get("result")
    if not isinstance(result, dict):
        raise StatusProtocolError("agent's response has no result")
    return result
