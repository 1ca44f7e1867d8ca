"""A process's own CPU seconds and peak RSS, from /proc (no psutil on these machines).

CPU: utime + stime of /proc/<pid>/stat (the agent's threads included, its children not).
Peak RSS: VmHWM of /proc/<pid>/status; writing ``5`` to /proc/<pid>/clear_refs resets it, so
a scenario that reuses a running agent measures its own peak, not the process's lifetime one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
USAGE_SOURCE = (
    "/proc/<pid>/stat utime+stime (CPU) and /proc/<pid>/status VmHWM (peak RSS, reset per "
    "scenario through /proc/<pid>/clear_refs)"
)


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float
    peak_rss_mb: float
    rss_mb: float


def cpu_seconds_from_stat(stat: str, ticks: int = CLOCK_TICKS) -> float:
    """utime + stime of a /proc/<pid>/stat line (the comm field may hold spaces and ')')."""
    fields = stat.rpartition(")")[2].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / ticks


def kib_field(status: str, name: str) -> float:
    """A ``Name:   1234 kB`` line of /proc/<pid>/status, in MiB."""
    for row in status.splitlines():
        key, _, value = row.partition(":")
        if key == name:
            return int(value.split()[0]) / 1024
    raise ValueError(f"{name} not in /proc status")


def read_usage(pid: int) -> Usage:
    proc = Path(f"/proc/{pid}")
    status = (proc / "status").read_text()
    return Usage(
        cpu_seconds=cpu_seconds_from_stat((proc / "stat").read_text()),
        peak_rss_mb=kib_field(status, "VmHWM"),
        rss_mb=kib_field(status, "VmRSS"),
    )


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False when the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CpuSample:
    """One process's CPU seconds so far, tagged with its pid (a restarted daemon is another)."""

    pid: int
    cpu_seconds: float


def sample_pidfile(pidfile: Path) -> CpuSample | None:
    """The CPU seconds of the process a pidfile names; None when it is not running."""
    try:
        pid = int(pidfile.read_text().strip())
        return CpuSample(pid, cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text()))
    except (OSError, ValueError, IndexError):
        return None


def cpu_between(before: CpuSample | None, after: CpuSample | None) -> tuple[float | None, bool]:
    """CPU seconds used between two samples, and whether the process was restarted between
    them (then: the new process's total, the old one's last seconds are lost)."""
    if after is None:
        return None, False
    if before is None or before.pid != after.pid:
        return after.cpu_seconds, True
    return after.cpu_seconds - before.cpu_seconds, False


QUIET_INTERVAL = 0.1  # seconds between samples while waiting for a process to settle
QUIET_RUN = 3  # this many quiet intervals in a row: settled
QUIET_CPU = 1.5 / CLOCK_TICKS  # at most one clock tick of CPU in an interval is quiet


def quiet_since(
    samples: Sequence[CpuSample], threshold: float = QUIET_CPU, run: int = QUIET_RUN
) -> CpuSample | None:
    """The sample that starts the first ``run`` consecutive intervals each costing at most
    ``threshold`` CPU seconds, all of one process (pure); None: not settled yet."""
    quiet = 0
    for index in range(1, len(samples)):
        before, after = samples[index - 1], samples[index]
        if before.pid == after.pid and after.cpu_seconds - before.cpu_seconds <= threshold:
            quiet += 1
            if quiet >= run:
                return samples[index - run]
        else:
            quiet = 0
    return None


async def settled(
    sample: Callable[[], CpuSample | None],
    within: float = 30.0,
    interval: float = QUIET_INTERVAL,
) -> CpuSample | None:
    """Wait until the sampled process has gone quiet (e.g. ovs-vswitchd done reconfiguring
    after an OVSDB write it learnt of when we did) and return the sample where its quiet
    began; after ``within`` seconds, the last sample."""
    samples: list[CpuSample] = []
    deadline = time.monotonic() + within
    while True:
        current = sample()
        if current is not None:
            samples.append(current)
        found = quiet_since(samples)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            return samples[-1] if samples else None
        await asyncio.sleep(interval)
