"""The status socket's protocol and the table ``aovs status`` prints (pure)."""

from __future__ import annotations

import json

import pytest

from aovs.observability import AgentStatus, HealthReport, ReportedPortState
from aovs.observability.status import ConnectionStatus, PortStatus, PortTransition, System
from aovs.observability.status_protocol import (
    StatusProtocolError,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
)
from aovs.observability.status_view import render_status

NOW = 1_700_000_000.0


def _status() -> AgentStatus:
    connections = (
        ConnectionStatus(system=System.OPENFLOW, bridge="br-int", connected=True, since=NOW - 90),
        ConnectionStatus(system=System.RABBITMQ, connected=False, since=NOW - 3),
    )
    return AgentStatus(
        host="compute-7",
        started_at=NOW - 7_300,
        health=HealthReport(healthy=False, down=("rabbitmq",), connections=connections),
        ports=(
            PortStatus(
                iface_id="p1",
                state=ReportedPortState.WIRED,
                ofport=4,
                since=NOW - 2,
                last_seconds=0.0123,
            ),
            PortStatus(
                iface_id="p2",
                state=ReportedPortState.FAILED,
                since=NOW - 1,
                last_seconds=2.5,
                reason="ofport -1",
            ),
        ),
        transitions=(
            PortTransition(
                iface_id="p1", state=ReportedPortState.WIRED, at=NOW - 2, seconds=0.0123
            ),
            PortTransition(iface_id="p2", state=ReportedPortState.FAILED, at=NOW - 1),
        ),
        last_full_sync=None,
    )


def test_request_round_trip() -> None:
    assert decode_request(encode_request("health")).command == "health"
    assert encode_request("status").endswith(b"\n")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{", "not JSON"),
        (b"\xff\n", "not JSON"),
        (b'{"version": 2, "command": "status"}', "version 2 unsupported: agent speaks 1"),
        (b'{"version": 1}', "command"),
        (b'{"version": 1, "command": "status", "extra": 1}', "extra"),
        (b'"status"', "bad request"),
    ],
)
def test_bad_requests_say_why(line: bytes, message: str) -> None:
    with pytest.raises(StatusProtocolError, match=message):
        decode_request(line)


def test_response_round_trip_and_errors() -> None:
    status = _status()
    assert AgentStatus.model_validate(decode_response(encode_result(status))) == status
    with pytest.raises(StatusProtocolError, match="refused the request: no such thing"):
        decode_response(encode_error("no such thing"))
    with pytest.raises(StatusProtocolError, match="version 1"):
        decode_response(json.dumps({"version": 7, "ok": True, "result": {}}).encode())
    with pytest.raises(StatusProtocolError, match="not JSON"):
        decode_response(b"HTTP/1.1 400 Bad Request\r\n")


def test_renders_a_readable_table() -> None:
    text = render_status(_status(), now=NOW)
    lines = text.splitlines()

    assert lines[0] == "host compute-7, up 2h01m, last full sync never"
    assert lines[1] == "unhealthy: down: rabbitmq"
    assert "  openflow:br-int  up     1m30s ago" in lines
    assert "  rabbitmq         DOWN   3s ago" in lines
    ports = lines[lines.index("PORTS (2)") + 1 :][:3]
    assert ports == [
        "  IFACE-ID  OFPORT  STATE   SINCE   LATENCY  REASON",
        "  p1        4       wired   2s ago  12.3 ms",
        "  p2        -       failed  1s ago  2.50 s   ofport -1",
    ]
    newest_first = lines[lines.index("LAST TRANSITIONS (2, newest first)") + 2 :]
    assert [line.split()[1] for line in newest_first] == ["p2", "p1"]


def test_renders_empty_sections() -> None:
    empty = AgentStatus(host="h", started_at=NOW, health=HealthReport(healthy=False))
    text = render_status(empty, now=NOW)
    assert "PORTS (0)\n  (none)" in text
    assert "unhealthy: no connection established yet" in text
