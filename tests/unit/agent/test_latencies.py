from __future__ import annotations

import pytest

from aovs.agent.latencies import LatencyWindow


def test_the_window_is_bounded_and_counts_everything() -> None:
    window = LatencyWindow(size=3)
    for value in (5.0, 1.0, 4.0, 2.0, 3.0):
        window.record(value)
    assert window.count == 5 and len(window) == 3
    assert list(window) == [4.0, 2.0, 3.0] and window.last == 3.0
    assert window.percentile(50) == 3.0 and window.percentile(100) == 4.0
    assert window.percentile(1) == 2.0


def test_empty_and_bad_arguments() -> None:
    window = LatencyWindow()
    with pytest.raises(IndexError):
        _ = window.last
    with pytest.raises(IndexError):
        window.percentile(50)
    with pytest.raises(ValueError):
        window.percentile(0)
    with pytest.raises(ValueError):
        LatencyWindow(size=0)
