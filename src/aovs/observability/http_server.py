"""``/metrics`` (Prometheus) and ``/healthz`` over a minimal asyncio HTTP/1.1 server.

No web framework: two read-only endpoints do not justify one in the agent's process. Every
connection gets one request, read within ``request_timeout``; anything malformed gets its 4xx
and one warning line, never an exception out of the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus
from types import TracebackType

from prometheus_client.exposition import choose_encoder

from aovs.observability.health import HealthState
from aovs.observability.http_wire import (
    MAX_HEAD_BYTES,
    BadRequest,
    RequestHead,
    parse_bind,
    parse_request_head,
    render_response,
)
from aovs.observability.metrics import AgentMetrics

LOG = logging.getLogger(__name__)
JSON = "application/json"


class ObservabilityServer:
    """Serve the agent's metrics and health on ``bind`` (``IP:PORT``; port 0 picks a free one)."""

    def __init__(
        self,
        bind: str,
        metrics: AgentMetrics,
        health: HealthState,
        request_timeout: float = 5.0,
    ) -> None:
        self.host, self._port = parse_bind(bind)
        self._metrics = metrics
        self._health = health
        self._timeout = request_timeout
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``bind`` asked for port 0)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        LOG.info("metrics endpoint listening", extra={"bind": f"{self.host}:{self.port}"})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            response = await self._respond(reader, peer)
            if response is not None:
                writer.write(response)
                async with asyncio.timeout(self._timeout):
                    await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("http client too slow or gone", extra={"peer": peer, "error": repr(exc)})
        except Exception:  # one bad scrape must never take the endpoint down
            LOG.exception("http request failed", extra={"peer": peer})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader, peer: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
            head = parse_request_head(raw)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                LOG.warning("incomplete http request", extra={"peer": peer})
            return None  # nothing (or half a request) and the client left: no one to answer
        except TimeoutError:
            LOG.warning("http request timed out", extra={"peer": peer, "timeout": self._timeout})
            return render_response(HTTPStatus.REQUEST_TIMEOUT, b"request timed out\n")
        except asyncio.LimitOverrunError:
            LOG.warning("http request head too large", extra={"peer": peer})
            return render_response(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request head too large\n"
            )
        except BadRequest as exc:
            LOG.warning("bad http request", extra={"peer": peer, "reason": exc.reason})
            return render_response(exc.status, f"{exc.reason}\n".encode(), headers=exc.headers)
        return self._route(head, peer)

    def _route(self, head: RequestHead, peer: str) -> bytes:
        head_only = head.method == "HEAD"
        if head.path not in ("/metrics", "/healthz"):
            LOG.warning("unknown http path", extra={"peer": peer, "path": head.path[:200]})
            return render_response(HTTPStatus.NOT_FOUND, b"try /metrics or /healthz\n")
        if head.method not in ("GET", "HEAD"):
            LOG.warning("http method not allowed", extra={"peer": peer, "method": head.method})
            return render_response(
                HTTPStatus.METHOD_NOT_ALLOWED, b"GET or HEAD only\n", headers={"Allow": "GET, HEAD"}
            )
        if head.path == "/metrics":
            encode, content_type = choose_encoder(head.header("accept"))
            body = encode(self._metrics.registry)
            return render_response(HTTPStatus.OK, body, content_type, head_only=head_only)
        report = self._health.report()
        status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
        body = report.model_dump_json().encode() + b"\n"
        return render_response(status, body, JSON, head_only=head_only)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "local")
