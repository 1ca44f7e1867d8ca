"""Options for the fault-injection suite: ``--fault-seed`` (replay) and ``--soak-seconds``."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

# benchmarks/ (the suite's harness pieces reused here) is not on pytest's path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_SEED = random.SystemRandom().randrange(1, 2**31)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "fault injection (tests/faults)")
    group.addoption("--fault-seed", type=int, default=None,
                    help="replay a fault run: the seed printed by a previous run")  # fmt: skip
    group.addoption("--soak-seconds", type=float, default=0.0,
                    help="run random episodes for this long (make soak) instead of the short "
                    "seeded set; figures go to benchmarks/results/soak.json")  # fmt: skip


def _seed(config: pytest.Config) -> int:
    # registered only when tests/faults is named on the command line (an "initial conftest")
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
