"""How long ovs-vswitchd may stay silent because of work aovs itself gave it.

ovs-vswitchd runs every bridge's OpenFlow connections in one main loop and applies a bundle's
commit in one go: while it commits 400,000 flows (a 5000-port cold boot, about a minute on
this machine class) it answers nothing, on any bridge, echo requests included. A timeout
that does not know this resets the connection mid-commit, which throws the work away and, on
the retry, asks for the same again. So a bundle holds the switch "busy" for the time its size
allows, and every channel to that switch (:class:`aovs.openflow.channel.OpenFlowChannel`)
counts the time still held on top of its own limits: a request sent behind the bundle gets
its ``of_request_timeout`` from when the bundle is due, and the inactivity probe waits as long.
A switch that really hangs is still noticed, once the held time has passed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager


class SwitchBusy:
    """The held times of one ovs-vswitchd (share one instance between its bridges' channels)."""

    def __init__(self) -> None:
        self._holds: dict[int, float] = {}  # token -> monotonic time the work is due by
        self._tokens = itertools.count()

    @contextmanager
    def holding(self, seconds: float) -> Iterator[None]:
        """The switch may be silent for up to ``seconds`` from now, until the block ends."""
        token = next(self._tokens)
        self._holds[token] = time.monotonic() + seconds
        try:
            yield
        finally:
            del self._holds[token]

    def until(self) -> float:
        """The monotonic time the last held work is due by (0.0 when none is held)."""
        return max(self._holds.values(), default=0.0)

    def remaining(self, now: float | None = None) -> float:
        """Seconds of held work still due (0.0 when none)."""
        return max(0.0, self.until() - (time.monotonic() if now is None else now))
