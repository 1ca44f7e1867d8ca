"""Device up/down reports to neutron-server, coalesced, in an order the server gets right.

neutron-server's ``update_device_list`` handles ``devices_up`` before ``devices_down``, so a port
re-added within one batch (a VM reboot) must go out as two calls: down first, then up
(LP 1963899: nova waits for that DOWN -> UP to see the VIF plugged again). A later report for a
device supersedes an earlier one still queued, except that a queued DOWN is kept before an UP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReportBatch:
    """One ``update_device_list`` call."""

    up: tuple[str, ...] = ()
    down: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.up or self.down)


class ReportQueue:
    def __init__(self) -> None:
        self._down: dict[str, None] = {}  # insertion-ordered sets
        self._up: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._down) + len(self._up)

    def up(self, device: str) -> None:
        self._up[device] = None

    def down(self, device: str) -> None:
        self._up.pop(device, None)
        self._down[device] = None

    def take(self, limit: int | None = None) -> list[ReportBatch]:
        """The calls to make now, in order: downs, then ups (each at most ``limit`` devices)."""
        downs, ups = list(self._down), list(self._up)
        self._down.clear()
        self._up.clear()
        step = limit or max(len(downs), len(ups), 1)
        batches = [ReportBatch(down=tuple(downs[i : i + step])) for i in range(0, len(downs), step)]
        batches += [ReportBatch(up=tuple(ups[i : i + step])) for i in range(0, len(ups), step)]
        return batches

    def give_back(self, batch: ReportBatch) -> None:
        """A call failed: requeue its devices unless a newer report superseded them."""
        for device in batch.down:  # even with a newer UP queued: DOWN must still go first
            self._down.setdefault(device, None)
        for device in batch.up:
            if device not in self._down:
                self._up.setdefault(device, None)
