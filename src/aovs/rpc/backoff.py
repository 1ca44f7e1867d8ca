"""Per-method RPC timeouts that back off like neutron-lib's BackingOffClient.

After a timeout, neutron waits a random time (so a fleet of agents does not retry in step)
and doubles that method's timeout, capped at ``rpc_response_max_timeout``. The timeout never
shrinks again until the agent restarts: a server slow once is likely slow again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class BackingOffTimeouts:
    default: float = 60.0
    maximum: float = 600.0
    uniform: Callable[[float, float], float] = random.uniform
    _timeouts: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default <= 0 or self.maximum < self.default:
            raise ValueError(f"need 0 < default ({self.default}) <= maximum ({self.maximum})")

    def timeout_for(self, method: str) -> float:
        return self._timeouts.get(method, self.default)

    def on_timeout(self, method: str) -> float:
        """Record a timeout of ``method``; return how long to wait before the caller goes on."""
        current = self.timeout_for(method)
        wait = self.uniform(0.0, min(current, self.default))
        self._timeouts[method] = min(current * 2, self.maximum)
        return wait


@dataclass
class RetryIntervals:
    """oslo.messaging's waits between rounds of connection attempts (kombu's ``fxrange``).

    ``interval``, then ``interval + step``, ``interval + 2 * step``, ... never more than
    ``maximum`` ([oslo_messaging_rabbit] rabbit_retry_interval, rabbit_retry_backoff,
    rabbit_interval_max: 1, 3, 5, ... 29, 30, 30 by default); :meth:`reset` after a success.
    """

    interval: float = 1.0
    step: float = 2.0
    maximum: float = 30.0
    _rounds: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.step < 0 or self.maximum <= 0:
            raise ValueError(f"need interval > 0, step >= 0, maximum > 0: {self!r}")

    def next_wait(self) -> float:
        wait = min(self.interval + self._rounds * self.step, self.maximum)
        self._rounds += 1
        return wait

    def reset(self) -> None:
        self._rounds = 0
