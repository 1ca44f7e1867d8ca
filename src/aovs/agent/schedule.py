"""When to (re)ask neutron-server about something: at once, then with a capped back-off.

Pure bookkeeping for the agent's fetches (device details, security group info): a key asked
while its fetch is in flight is asked again after it ends, and a failed key comes back after
1, 2, 4 ... ``cap`` seconds, so nothing the server could not answer is silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from aovs.backoff import Backoff


class RetrySchedule:
    def __init__(self, first_delay: float = 1.0, cap: float = 60.0) -> None:
        self.first_delay = first_delay
        self.cap = cap
        self._backoff = Backoff(initial=first_delay, cap=cap, jitter=False)
        self._due: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._due or key in self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._due) + len(self._in_flight)

    def want(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            if key in self._in_flight:
                self._again.add(key)
            else:
                self._due[key] = min(self._due.get(key, now), now)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._due.pop(key, None)
            self._again.discard(key)
            self._failures.pop(key, None)

    def take_due(self, now: float) -> list[str]:
        due = [key for key, at in self._due.items() if at <= now]
        for key in due:
            del self._due[key]
            self._in_flight.add(key)
        return due

    def done(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            self._in_flight.discard(key)
            self._failures.pop(key, None)
            if key in self._again:
                self._again.discard(key)
                self._due[key] = now

    def failed(self, keys: Iterable[str], now: float) -> float:
        """Back off these keys; returns the longest delay chosen (for the log line)."""
        longest = 0.0
        for key in keys:
            self._in_flight.discard(key)
            self._again.discard(key)
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            delay = self._backoff.delay(count)
            self._due[key] = now + delay
            longest = max(longest, delay)
        return longest

    def next_deadline(self) -> float | None:
        return min(self._due.values(), default=None)
