"""The agent's end of ``aovs status``: a unix socket answering one request per connection.

A unix socket (not the metrics port) because it is always on, needs no network exposure, and
its file permissions say who may look (owner and group, 0660).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from aovs.observability.status import AgentStatus
from aovs.observability.status_protocol import (
    MAX_LINE_BYTES,
    StatusProtocolError,
    decode_request,
    encode_error,
    encode_result,
)

LOG = logging.getLogger(__name__)
MAX_UNIX_PATH = 107
StatusProvider = Callable[[], AgentStatus]


class StatusServerError(Exception):
    """The socket cannot be served (path too long, another agent already answering on it)."""


class StatusServer:
    """Answer ``status`` and ``health`` requests from ``provider()``'s current snapshot."""

    def __init__(
        self, socket_path: Path | str, provider: StatusProvider, request_timeout: float = 5.0
    ) -> None:
        self.socket_path = Path(socket_path)
        self._provider = provider
        self._timeout = request_timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        path = self.socket_path
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise StatusServerError(f"status socket path {path} is too long for a unix socket")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if _answers(path):
                raise StatusServerError(f"another agent is already answering on {path}")
            path.unlink()  # left behind by an agent that did not exit cleanly
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(path), limit=MAX_LINE_BYTES
        )
        path.chmod(0o660)
        LOG.info("status socket listening", extra={"socket": str(path)})

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._reply(reader)
            if reply is not None:
                writer.write(reply)
                async with asyncio.timeout(self._timeout):
                    await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("status client too slow or gone", extra={"error": repr(exc)})
        except Exception:  # a bad request must never take the socket down
            LOG.exception("status request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await writer.wait_closed()

    async def _reply(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                line = await reader.readuntil(b"\n")
            request = decode_request(line)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                LOG.warning("status request without end of line", extra={"bytes": len(exc.partial)})
            return None
        except TimeoutError:
            LOG.warning("status request timed out", extra={"timeout": self._timeout})
            return encode_error(f"no request line within {self._timeout}s")
        except (asyncio.LimitOverrunError, ValueError):
            LOG.warning("status request too long", extra={"limit": MAX_LINE_BYTES})
            return encode_error(f"request longer than {MAX_LINE_BYTES} bytes")
        except StatusProtocolError as exc:
            LOG.warning("bad status request", extra={"reason": str(exc)})
            return encode_error(str(exc))
        status = self._provider()
        return encode_result(status.health if request.command == "health" else status)


def _answers(path: Path) -> bool:
    """True if something accepts connections on ``path`` (a live agent), False if stale."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
