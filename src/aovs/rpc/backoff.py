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
