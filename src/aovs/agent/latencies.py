"""A bounded record of latencies: the last ``size`` values, their percentiles, and a count of all.

``AgentStats.commit_latencies_ms`` was a list that grew by one per wired port forever; this keeps
memory flat on a long-lived agent while the demo and the benchmarks still read the latest value,
how many were recorded (to wait for the next one) and percentiles of the recent window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator


class LatencyWindow:
    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._recent: deque[float] = deque(maxlen=size)
        self.count = 0  # every value ever recorded, not only the window's

    def record(self, value: float) -> None:
        self._recent.append(value)
        self.count += 1

    @property
    def last(self) -> float:
        """The latest value; IndexError if none was recorded."""
        return self._recent[-1]

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (0 < q <= 100) of the window; IndexError if empty."""
        if not 0 < q <= 100:
            raise ValueError(f"percentile out of range: {q}")
        ordered = sorted(self._recent)
        if not ordered:
            raise IndexError("no latency recorded")
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def __len__(self) -> int:
        """Values in the window (at most ``size``); ``count`` is every value recorded."""
        return len(self._recent)

    def __iter__(self) -> Iterator[float]:
        return iter(self._recent)
