"""The neutron conformance tier: aovs agents against a REAL neutron 29 server.

Runs only with ``--neutron`` (``make test-neutron``, which installs the server first); a plain
``pytest`` / ``make test`` skips every test here.

Fixtures:
- ``neutron_server`` (session): a started :class:`NeutronServer`, shared by every test here.
- ``hypervisors`` (function, async): a factory ``await hypervisors("host-a")`` -> ``Hypervisor``
  (a private OVS with br-int/br-tun/br-phys and an aovs agent reporting to the server); all
  stopped after the test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from neutron_world import HypervisorFactory
from neutron_world import hypervisors as make_hypervisors
from server.neutron_server import NeutronServer

HERE = Path(__file__).parent
INSTALL = HERE / "server" / "install-neutron"
SKIP_REASON = "needs a real neutron-server: make test-neutron"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--neutron"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.path.is_relative_to(HERE):  # this hook sees every test of the session
            item.add_marker(skip)


def installed_venv() -> Path:
    """The server's venv: install-neutron's last line (it builds the venv only once per lock)."""
    try:
        proc = subprocess.run(
            [str(INSTALL)], capture_output=True, text=True, timeout=1200, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{INSTALL} did not finish within 20 minutes")
    if proc.returncode != 0:
        pytest.fail(f"{INSTALL} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def neutron_server() -> Iterator[NeutronServer]:
    """A real neutron 29 server (private MariaDB, own RabbitMQ vhost) for the whole session.

    ``AOVS_NEUTRON_KEEP=1`` keeps its directory (configs, logs) for a look afterwards."""
    keep = os.environ.get("AOVS_NEUTRON_KEEP", "") not in ("", "0")
    with NeutronServer(installed_venv(), keep=keep) as server:
        try:
            yield server
        finally:
            if keep:
                print(f"\nneutron-server's directory (logs, config): {server.directory}")


@pytest.fixture
async def hypervisors(neutron_server: NeutronServer) -> AsyncIterator[HypervisorFactory]:
    """``await hypervisors("host-a", **agent_options)``: a private OVS with an aovs agent on
    the server's transport_url (local_ip 127.0.0.11 for host-a, .12 for host-b)."""
    async with make_hypervisors(neutron_server.transport_url) as factory:
        yield factory
