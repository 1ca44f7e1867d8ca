"""Render an :class:`AgentStatus` for a terminal: pure text, so it is tested without an agent."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aovs.observability.status import AgentStatus


def render_status(status: AgentStatus, now: float | None = None) -> str:
    now = time.time() if now is None else now
    health = status.health
    sync = (
        f"{_ago(now - status.last_full_sync)} ago" if status.last_full_sync is not None else "never"
    )
    out = [
        f"host {status.host}, up {_ago(now - status.started_at)}, last full sync {sync}",
        health.summary(),
        "",
        f"CONNECTIONS ({len(health.connections)})",
        _table(
            ("NAME", "STATE", "SINCE"),
            [
                (c.name, "up" if c.connected else "DOWN", f"{_ago(now - c.since)} ago")
                for c in health.connections
            ],
        ),
        "",
        f"PORTS ({len(status.ports)})",
        _table(
            ("IFACE-ID", "OFPORT", "STATE", "SINCE", "LATENCY", "REASON"),
            [
                (
                    p.iface_id,
                    "-" if p.ofport is None else str(p.ofport),
                    p.state,
                    f"{_ago(now - p.since)} ago",
                    _latency(p.last_seconds),
                    p.reason,
                )
                for p in status.ports
            ],
        ),
        "",
        f"LAST TRANSITIONS ({len(status.transitions)}, newest first)",
        _table(
            ("AT", "IFACE-ID", "OFPORT", "STATE", "LATENCY"),
            [
                (
                    time.strftime("%H:%M:%S", time.localtime(t.at))
                    + f".{int(t.at * 1000) % 1000:03d}",
                    t.iface_id,
                    "-" if t.ofport is None else str(t.ofport),
                    t.state,
                    _latency(t.seconds),
                )
                for t in reversed(status.transitions)
            ],
        ),
    ]
    return "\n".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "  (none)"
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"
