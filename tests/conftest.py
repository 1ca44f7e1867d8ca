"""Shared fixtures: a private OVS sandbox and a private RabbitMQ vhost per test session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aovs.sandbox import OVSSandbox, running_sandbox

RABBIT_HOST = "127.0.0.1:5672"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "fault injection (tests/faults)")
    group.addoption("--fault-seed", type=int, default=None,
                    help="replay a fault run: the seed printed by a previous run")  # fmt: skip
    group.addoption("--soak-seconds", type=float, default=0.0,
                    help="run random episodes for this long (make soak) instead of the short "
                    "seeded set; figures go to benchmarks/results/soak.json")  # fmt: skip
    group.addoption("--soak-ports", type=int, default=300,
                    help="good ports in the soak's world (default 300)")  # fmt: skip
    parser.addoption("--neutron", action="store_true", default=False,
                     help="run tests/neutron against a real neutron-server")  # fmt: skip


def _short_tmpdir(prefix: str) -> Path:
    # unix socket paths are limited to 108 bytes: pytest's tmp_path is too long
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def ovs_sandbox() -> Iterator[OVSSandbox]:
    """One private OVS for the whole session (tests must use their own bridge names)."""
    with running_sandbox(_short_tmpdir("aovs-t-")) as sandbox:
        yield sandbox


@pytest.fixture
def fresh_sandbox() -> Iterator[OVSSandbox]:
    """A private OVS for one test: for tests that kill or restart the daemons."""
    with running_sandbox(_short_tmpdir("aovs-f-")) as sandbox:
        yield sandbox


@pytest.fixture
def state_path() -> Iterator[Path]:
    """An agent's ``[agent] state_path`` (snapshot, status socket) for one test, removed after."""
    directory = _short_tmpdir("aovs-s-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this session; yields its transport_url. Deleted afterwards."""
    if shutil.which("rabbitmqctl") is None and not Path("/usr/sbin/rabbitmqctl").exists():
        pytest.fail("rabbitmqctl not found: run the tests through `make test`")
    vhost = f"aovs-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"rabbit://guest:guest@{RABBIT_HOST}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)
