"""Retry delays: capped exponential backoff, optionally jittered, reset after a success.

The one backoff of aovs (OVSDB and OpenFlow reconnects, the AMQP broker round, ``tunnel_sync``
and the first connection to RabbitMQ, the agent's per-key fetch retries). Pure: it computes
delays, the caller sleeps. With ``jitter`` a delay is uniform in [ceiling/2, ceiling]: spread
out, never zero, so a fleet of restarting agents does not stampede.

Not the same idea, so not this class: :class:`aovs.rpc.backoff.BackingOffTimeouts`, neutron-lib's
per-method RPC *timeouts* that double after a timeout and never shrink again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.05
    cap: float = 5.0
    factor: float = 2.0
    jitter: bool = True
    _attempt: int = field(default=0, init=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial or self.factor < 1:
            raise ValueError(f"need 0 < initial <= cap and factor >= 1: {self!r}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (0 = the first retry)."""
        return min(self.cap, self.initial * self.factor ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt``, jittered if asked."""
        ceiling = self.ceiling(attempt)
        return self._random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling

    def next_delay(self) -> float:
        """The next delay of this sequence (each call is one more failure)."""
        delay = self.delay(self._attempt)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """After a success: the next failure starts again from ``initial``."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
