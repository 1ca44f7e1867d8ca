"""Options for the fault-injection suite: ``--fault-seed`` (replay) and ``--soak-seconds``."""

from __future__ import annotations

import random

import pytest

_SEED = random.SystemRandom().randrange(1, 2**31)


def _seed(config: pytest.Config) -> int:
    # the options are registered in tests/conftest.py, so `pytest --fault-seed N` works anywhere
    chosen = config.getoption("--fault-seed", default=None)
    return _SEED if chosen is None else int(chosen)


def pytest_report_header(config: pytest.Config) -> str:
    return f"fault injection: --fault-seed {_seed(config)}"


@pytest.fixture(scope="session")
def fault_seed(pytestconfig: pytest.Config) -> int:
    return _seed(pytestconfig)


@pytest.fixture(scope="session")
def soak_seconds(pytestconfig: pytest.Config) -> float:
    return float(pytestconfig.getoption("--soak-seconds", default=0.0))
