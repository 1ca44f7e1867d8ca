"""Options for the fault-injection suite: ``--fault-seed`` (replay), ``--soak-seconds`` and
``--soak-ports``."""

from __future__ import annotations

import random

import pytest

# `make test` gates every change: its short episode set replays one fixed seed, so a red run is
# the change's doing and can be replayed as is. A soak explores: a fresh seed each run (printed,
# and `--fault-seed N` replays it).
GATE_SEED = 20261121
_RANDOM_SEED = random.SystemRandom().randrange(1, 2**31)


def _seed(config: pytest.Config) -> int:
    # the options are registered in tests/conftest.py, so `pytest --fault-seed N` works anywhere
    chosen = config.getoption("--fault-seed", default=None)
    if chosen is not None:
        return int(chosen)
    soaking = float(config.getoption("--soak-seconds", default=0.0)) > 0
    return _RANDOM_SEED if soaking else GATE_SEED


def pytest_report_header(config: pytest.Config) -> str:
    return f"fault injection: --fault-seed {_seed(config)}"


@pytest.fixture(scope="session")
def fault_seed(pytestconfig: pytest.Config) -> int:
    return _seed(pytestconfig)


@pytest.fixture(scope="session")
def soak_seconds(pytestconfig: pytest.Config) -> float:
    return float(pytestconfig.getoption("--soak-seconds", default=0.0))


@pytest.fixture(scope="session")
def soak_ports(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--soak-ports", default=300))
