"""A plain-text progress line on stderr: which step of how many, what it waits for, how long.

On a terminal one line is rewritten in place; in a log (CI) each update is its own line, and
repeated updates of the same step are thinned so that a log stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24


def bar(done: int, total: int, width: int = WIDTH) -> str:
    """``[########----------------]`` for done/total (clamped)."""
    if total <= 0:
        return "[" + "-" * width + "]"
    filled = round(width * min(max(done, 0), total) / total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def line(done: int, total: int, step: str, status: str, elapsed: float) -> str:
    return f"{bar(done, total)} {done}/{total} {step}: {status} ({elapsed:.1f} s)"


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.step = "starting"
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_print = 0.0
        self._last_status = ""

    def begin(self, step: str) -> None:
        self.step = step
        self.update("started", force=True)

    def update(self, status: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and not self.tty and now - self._last_print < 5.0:
            return
        if not force and status == self._last_status and now - self._last_print < 1.0:
            return
        self._last_print, self._last_status = now, status
        text = line(self.done, self.total, self.step, status, now - self.started)
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, status: str = "done") -> None:
        self.done += 1
        self.update(status, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """A line that stays (a warning, a result)."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
