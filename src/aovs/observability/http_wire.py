"""Just enough HTTP/1.1 for a metrics endpoint: parse a request head, render a response.

Pure functions, no sockets: the server in :mod:`aovs.observability.http_server` does the I/O.
One request per connection (every response says ``Connection: close``), which is all Prometheus
and health probes need and leaves no idle keep-alive connections to police.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 16 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class BadRequest(Exception):
    """The request cannot be served; ``status`` is the answer to send, the message says why."""

    def __init__(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str  # without the query string
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse_request_head(raw: bytes) -> RequestHead:
    """Parse the bytes up to (and including) the blank line; raise :class:`BadRequest`."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "request head is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed method {method[:20]!r}")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(
            HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"unsupported version {version[:20]!r}"
        )
    if not target.startswith("/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed target {target[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    if version == "HTTP/1.1" and "host" not in headers:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "HTTP/1.1 request without a Host header")
    return RequestHead(method, target.partition("?")[0], version, headers)


def render_response(
    status: HTTPStatus,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
    head_only: bool = False,
) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + body


def parse_bind(bind: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 means any free port."""
    host, sep, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"metrics_bind {bind!r} is not IP:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"metrics_bind {bind!r}: {host!r} is not an IP address") from None
    return host, int(port)
