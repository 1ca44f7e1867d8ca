"""The ``aovs status`` end of the status socket: blocking, one request, bounded by a timeout.

Blocking on purpose: the CLI makes one call and exits; an event loop would add nothing.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from aovs.observability.status import AgentStatus, HealthReport
from aovs.observability.status_protocol import (
    MAX_LINE_BYTES,
    Command,
    StatusProtocolError,
    decode_response,
    encode_request,
)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class AgentUnreachable(Exception):
    """No agent answered on the socket (not running, wrong path, no permission, too slow)."""


def fetch_status(socket_path: Path, timeout: float = 5.0) -> AgentStatus:
    return AgentStatus.model_validate(_query(socket_path, "status", timeout))


def fetch_health(socket_path: Path, timeout: float = 5.0) -> HealthReport:
    return HealthReport.model_validate(_query(socket_path, "health", timeout))


def _query(socket_path: Path, command: Command, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
            sock.sendall(encode_request(command))
        except OSError as exc:
            raise AgentUnreachable(f"no agent on {socket_path}: {exc.strerror or exc}") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentUnreachable(f"agent on {socket_path} did not answer within {timeout}s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(MAX_LINE_BYTES)
            except TimeoutError:
                raise AgentUnreachable(
                    f"agent on {socket_path} did not answer within {timeout}s"
                ) from None
            except OSError as exc:
                raise AgentUnreachable(f"agent on {socket_path}: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise StatusProtocolError(f"agent's response exceeds {MAX_RESPONSE_BYTES} bytes")
            if chunk.endswith(b"\n"):
                break
    if not chunks:
        raise AgentUnreachable(f"agent on {socket_path} closed the connection without answering")
    return decode_response(b"".join(chunks))
