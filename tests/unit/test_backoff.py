from __future__ import annotations

import random

import pytest

from aovs.backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial=1.0, cap=5.0, jitter=False)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.attempts == 5
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_jitter_stays_in_the_upper_half_of_the_ceiling() -> None:
    backoff = Backoff(initial=0.1, cap=2.0, _random=random.Random(7))
    for attempt in range(12):
        ceiling = backoff.ceiling(attempt)
        assert ceiling / 2 <= backoff.next_delay() <= ceiling
    assert backoff.ceiling(1000) == 2.0  # no overflow


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0.0)
    with pytest.raises(ValueError):
        Backoff(initial=2.0, cap=1.0)
