"""``aovs status`` through the real CLI against a running StatusServer fed by a stand-in agent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aovs.observability import (
    AgentMetrics,
    AgentStatus,
    HealthState,
    ReportedPortState,
    StatusServer,
    StatusServerError,
    System,
    collect_status,
)

pytestmark = pytest.mark.integration


class StandInAgent:
    """Plays the agent: connections and a few port lifecycles, reported through the API."""

    def __init__(self) -> None:
        self.started = time.time()
        self.health = HealthState()
        self.metrics = AgentMetrics(self.health)
        for system in (System.OVSDB, System.RABBITMQ):
            self.health.set_connected(system, True)
        for bridge in ("br-int", "br-tun"):
            self.health.set_connected(System.OPENFLOW, True, bridge=bridge)
        for n, iface_id in enumerate(("5f0c-aaaa", "5f0c-bbbb", "5f0c-cccc")):
            self.metrics.port_transition(iface_id, ReportedPortState.PENDING, ofport=n + 1)
            self.metrics.port_transition(iface_id, ReportedPortState.WIRED, seconds=0.004 * (n + 1))
        self.metrics.port_transition("5f0c-cccc", ReportedPortState.DEAD, reason="admin down")
        self.metrics.port_transition(
            "5f0c-dddd", ReportedPortState.FAILED, seconds=1.5, reason="ofport -1"
        )
        self.metrics.full_sync_done()

    def status(self) -> AgentStatus:
        return collect_status("compute-1", self.started, self.metrics, self.health)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 108 bytes: pytest's tmp_path can be too long
    with tempfile.TemporaryDirectory(prefix="aovs-st-", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
async def agent(short_dir: Path) -> AsyncIterator[tuple[StandInAgent, Path]]:
    stand_in = StandInAgent()
    socket_path = short_dir / "aovs.sock"
    async with StatusServer(socket_path, stand_in.status, request_timeout=0.5):
        yield stand_in, socket_path


async def _aovs(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOVS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aovs.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _raw(socket_path: Path, data: bytes, *, close_write: bool = True) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    writer.write(data)
    if close_write:
        writer.write_eof()
    async with asyncio.timeout(5):
        reply = await reader.read()
    writer.close()
    return reply


async def test_status_prints_ports_and_transitions_as_a_table(
    agent: tuple[StandInAgent, Path],
) -> None:
    _, socket_path = agent

    code, out, err = await _aovs("status", "--socket", str(socket_path))

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("host compute-1, up ")
    assert lines[1] == "healthy: openflow:br-int, openflow:br-tun, ovsdb, rabbitmq"
    ports = lines[lines.index("PORTS (4)") + 1 : lines.index("PORTS (4)") + 6]
    assert ports[0].split() == ["IFACE-ID", "OFPORT", "STATE", "SINCE", "LATENCY", "REASON"]
    assert ports[1].split()[:3] == ["5f0c-aaaa", "1", "wired"]
    assert ports[1].split()[-2:] == ["4.0", "ms"]
    assert ports[3].split()[:3] == ["5f0c-cccc", "3", "dead"]
    assert ports[3].endswith("admin down")
    assert ports[4].split()[:3] == ["5f0c-dddd", "-", "failed"]
    transitions = lines[lines.index("LAST TRANSITIONS (8, newest first)") + 2 :]
    assert [row.split()[1:4] for row in transitions[:2]] == [
        ["5f0c-dddd", "-", "failed"], ["5f0c-cccc", "3", "dead"]
    ]  # fmt: skip


async def test_status_json_is_the_agents_snapshot(agent: tuple[StandInAgent, Path]) -> None:
    stand_in, socket_path = agent

    code, out, err = await _aovs("status", "--json", "--socket", str(socket_path))

    assert code == 0, err
    assert AgentStatus.model_validate_json(out) == stand_in.status()


async def test_health_exit_codes(agent: tuple[StandInAgent, Path], short_dir: Path) -> None:
    stand_in, socket_path = agent

    healthy = await _aovs("status", "--health", "--socket", str(socket_path))
    stand_in.health.set_connected(System.RABBITMQ, False)
    unhealthy = await _aovs("status", "--health", "--socket", str(socket_path))
    unreachable = await _aovs("status", "--health", "--socket", str(short_dir / "none.sock"))

    assert healthy[0] == 0, healthy
    assert unhealthy[:2] == (1, "unhealthy: down: rabbitmq\n")
    assert unreachable[0] == 2
    assert unreachable[1] == ""
    assert len(unreachable[2].splitlines()) == 1
    assert "none.sock" in unreachable[2]


async def test_socket_path_comes_from_the_config(short_dir: Path) -> None:
    config = short_dir / "aovs.toml"
    state = short_dir / "state"
    config.write_text(f'[agent]\nstate_path = "{state}"\n')
    stand_in = StandInAgent()
    async with StatusServer(state / "aovs.sock", stand_in.status):
        code, out, _ = await _aovs("status", "--health", "--config", str(config))

    assert (code, out) == (0, "healthy: openflow:br-int, openflow:br-tun, ovsdb, rabbitmq\n")


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"not json\n", "request is not JSON"),
        (b'{"version": 1, "command": "reboot"}\n', "command"),
        (b'{"version": 99, "command": "status"}\n', "request version 99 unsupported"),
        (b"[1, 2]\n", "bad request"),
        (b'{"version": 1, "command": "status"}' + b" " * 70_000 + b"\n", "longer than"),
    ],
)
async def test_a_bad_request_gets_an_error_and_one_log_line(
    agent: tuple[StandInAgent, Path],
    caplog: pytest.LogCaptureFixture,
    request_line: bytes,
    error: str,
) -> None:
    _, socket_path = agent
    caplog.set_level(logging.INFO, logger="aovs.observability")

    reply = json.loads(await _raw(socket_path, request_line))
    still = await _aovs("status", "--health", "--socket", str(socket_path))

    assert reply["version"] == 1
    assert reply["ok"] is False
    assert error in reply["error"]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert still[0] == 0


async def test_a_silent_client_is_cut_off(
    agent: tuple[StandInAgent, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, socket_path = agent
    caplog.set_level(logging.INFO, logger="aovs.observability")

    reply = json.loads(await _raw(socket_path, b'{"version": 1', close_write=False))

    assert reply["ok"] is False
    assert "no request line within" in reply["error"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "status request timed out"
    ]


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not(short_dir: Path) -> None:
    socket_path = short_dir / "aovs.sock"
    stand_in = StandInAgent()
    first = StatusServer(socket_path, stand_in.status)
    await first.start()
    with pytest.raises(StatusServerError, match="another agent"):
        await StatusServer(socket_path, stand_in.status).start()
    await first.close()
    assert not socket_path.exists()

    socket_path.touch()  # left behind by an agent that was killed
    async with StatusServer(socket_path, stand_in.status):
        code, _, _ = await _aovs("status", "--health", "--socket", str(socket_path))
    assert code == 0
