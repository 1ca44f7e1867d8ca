"""Reconnect delays: capped exponential backoff with full jitter, reset after a good session."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.05
    cap: float = 5.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """Uniform in [ceiling/2, ceiling]: spread out, never zero, so restarts don't stampede."""
        ceiling = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return self._random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
