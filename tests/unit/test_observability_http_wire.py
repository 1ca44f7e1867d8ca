"""The HTTP request-head parser and response renderer (pure)."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aovs.observability.http_wire import (
    BadRequest,
    parse_bind,
    parse_request_head,
    render_response,
)


def test_parses_a_prometheus_scrape() -> None:
    raw = (
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: 10.0.0.1:9105\r\n"
        b"Accept: application/openmetrics-text;version=1.0.0\r\nUser-Agent: Prometheus/2.45\r\n\r\n"
    )
    head = parse_request_head(raw)
    assert (head.method, head.path, head.version) == ("GET", "/metrics", "HTTP/1.1")
    assert head.header("ACCEPT") == "application/openmetrics-text;version=1.0.0"
    assert head.header("missing") == ""


def test_http_1_0_needs_no_host() -> None:
    assert parse_request_head(b"GET /healthz HTTP/1.0\r\n\r\n").path == "/healthz"


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"GET /metrics\r\n\r\n", HTTPStatus.BAD_REQUEST, "malformed request line"),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST, "malformed request line"),
        (b"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTPStatus.BAD_REQUEST, "method"),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", HTTPStatus.BAD_REQUEST, "target"),
        (b"GET / HTTP/3\r\nHost: x\r\n\r\n", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "version"),
        (b"GET / HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST, "Host"),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", HTTPStatus.BAD_REQUEST, "header line"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", HTTPStatus.BAD_REQUEST, "header line"),
        ("GET /é HTTP/1.1\r\n\r\n".encode(), HTTPStatus.BAD_REQUEST, "ASCII"),
    ],
)
def test_rejects_malformed_heads(raw: bytes, status: HTTPStatus, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request_head(raw)
    assert caught.value.status == status
    assert reason in caught.value.reason


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_bad_request(raw: bytes) -> None:
    try:
        parse_request_head(raw + b"\r\n\r\n")
    except BadRequest as exc:
        assert 400 <= exc.status < 600


def test_renders_a_complete_response() -> None:
    out = render_response(HTTPStatus.NOT_FOUND, b"nope\n", headers={"Allow": "GET"})
    head, body = out.split(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 404 Not Found",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: 5",
        b"Connection: close",
        b"Allow: GET",
    ]
    assert body == b"nope\n"


def test_head_responses_keep_the_length_but_drop_the_body() -> None:
    out = render_response(HTTPStatus.OK, b"12345", head_only=True)
    assert out.endswith(b"\r\n\r\n")
    assert b"Content-Length: 5" in out


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:9105", ("127.0.0.1", 9105)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_bind(bind: str, expected: tuple[str, int]) -> None:
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["9105", "localhost:9105", "127.0.0.1:http", "127.0.0.1:70000"])
def test_parse_bind_rejects(bind: str) -> None:
    with pytest.raises(ValueError, match="metrics_bind"):
        parse_bind(bind)
