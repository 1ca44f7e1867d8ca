"""Episodes: VM ports churning while one fault happens, then the invariant, with a deadline.

An episode starts port churn (plug, unplug, reboot at random, as nova would), injects one fault
from :mod:`fault_catalog` and ends it, stops the churn, then polls :func:`fault_invariant.check`
until it holds. Time to converge is from the fault's end to the start of the first check that
passed; a deadline miss is a violation carrying the last problems seen. Bad input must also
have left its log line, and no episode may leave a traceback in the agent's log. Everything is
drawn from one ``random.Random(seed)``, printed, so ``--fault-seed`` replays the same choices
(timing on a busy machine still varies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.suite.results import percentile
from benchmarks.suite.world import WorldError, vsctl
from fault_catalog import FAULTS, Injected
from fault_invariant import check, read_switch
from fault_world import FaultWorld, VmPort

from aovs.sandbox import SandboxError

CONVERGE_DEADLINE = 45.0  # s after a fault ends; the agent's RPC back-off tops out well below
POLL = 0.25
LOG_DEADLINE = 10.0  # s for a bad-input log line to appear


# ---- the agent's log -------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMark:
    run: int  # index into world.agents
    offset: int


def mark(world: FaultWorld) -> LogMark:
    run = len(world.agents) - 1
    path = world.agents[run].log_path
    return LogMark(run, path.stat().st_size if path.exists() else 0)


def records_since(world: FaultWorld, since: LogMark) -> list[dict[str, Any]]:
    """The agents' JSON log records written after ``since`` (non-JSON lines as {"raw": ...})."""
    records: list[dict[str, Any]] = []
    for run in range(since.run, len(world.agents)):
        path = world.agents[run].log_path
        if not path.exists():
            continue
        with path.open("rb") as handle:
            handle.seek(since.offset if run == since.run else 0)
            text = handle.read().decode(errors="replace")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"raw": line}
            records.append(record if isinstance(record, dict) else {"raw": line})
    return records


def render(record: dict[str, Any]) -> str:
    if "raw" in record:
        return str(record["raw"])
    extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("ts", "msg", "exc"))
    return f"{record.get('msg', '')} {extra}"


def crashes(records: Iterable[dict[str, Any]]) -> list[str]:
    """Tracebacks: a record with an exception, or a raw (non-JSON) traceback line."""
    found = []
    for record in records:
        if "exc" in record:
            last = str(record["exc"]).strip().splitlines()[-1:]
            found.append(f"traceback in the agent's log: {record.get('msg')}: {last}")
        elif str(record.get("raw", "")).startswith("Traceback"):
            found.append("traceback on the agent's stderr")
    return found


async def wait_log_line(world: FaultWorld, since: LogMark, injected: Injected) -> str | None:
    """The first line matching ``injected.log`` after ``since`` (None: none in time)."""
    assert injected.log is not None
    deadline = time.monotonic() + LOG_DEADLINE
    while True:
        for record in records_since(world, since):
            line = render(record)
            if injected.log.search(line):
                return line
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


# ---- port churn ------------------------------------------------------------------------------


class Churn:
    """Plugs, unplugs and reboots (del-port, add-port: a new ofport) ports at random."""

    def __init__(self, world: FaultWorld, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.plugged: set[str] = set()
        self.operations = 0

    async def sync(self) -> None:
        state = await read_switch(self.world)
        self.plugged = set(state.plugged())

    async def plug(self, vms: Sequence[VmPort]) -> None:
        commands: list[str] = []
        for vm in vms:
            commands += ["--", *vm.plug_args()]
        await vsctl(self.world.sandbox, "--no-wait", *commands[1:], within=5)
        self.plugged.update(vm.iface_id for vm in vms)

    async def unplug(self, vm: VmPort) -> None:
        await vsctl(self.world.sandbox, "--no-wait", *vm.unplug_args(), within=5)
        self.plugged.discard(vm.iface_id)

    async def step(self) -> None:
        vms = self.world.vms
        plugged = [vm for vm in vms if vm.iface_id in self.plugged]
        unplugged = [vm for vm in vms if vm.iface_id not in self.plugged]
        roll = self.rng.random()
        if unplugged and (roll < 0.3 or len(plugged) < len(vms) // 2):
            await self.plug([self.rng.choice(unplugged)])
        elif plugged and roll < 0.6:
            await self.unplug(self.rng.choice(plugged))
        elif plugged:
            vm = self.rng.choice(plugged)  # a VM reboot
            await self.unplug(vm)
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))
            await self.plug([vm])
        self.operations += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(WorldError):  # ovsdb-server down: nova would fail too
                await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(0.05, 0.5))


# ---- one run ---------------------------------------------------------------------------------


@dataclass
class RunRecord:
    seed: int
    good_ports: int
    episodes: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    ports_checked: int = 0
    churn_operations: int = 0
    violations: list[str] = field(default_factory=list)
    converge_s: list[float] = field(default_factory=list)
    by_fault_s: dict[str, list[float]] = field(default_factory=dict)
    boot_s: float | None = None
    started: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        def figure(samples: Sequence[float], pct: float) -> float | None:
            return round(percentile(samples, pct), 3) if samples else None

        return {
            "seed": self.seed,
            "duration_s": round(time.monotonic() - self.started, 1),
            "good_ports": self.good_ports,
            "episodes": self.episodes,
            "faults": dict(sorted(self.faults.items())),
            "ports_checked": self.ports_checked,
            "churn_operations": self.churn_operations,
            "violations": len(self.violations),
            "violation_details": self.violations[:50],
            "boot_converge_s": None if self.boot_s is None else round(self.boot_s, 3),
            "converge_p50_s": figure(self.converge_s, 50),
            "converge_p99_s": figure(self.converge_s, 99),
            "converge_max_s": round(max(self.converge_s), 3) if self.converge_s else None,
            "by_fault": {
                name: {"n": len(s), "p50_s": figure(s, 50), "max_s": round(max(s), 3)}
                for name, s in sorted(self.by_fault_s.items())
                if s
            },
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")


async def converge(world: FaultWorld, since: float) -> tuple[float | None, list[str], int]:
    """Poll the invariant; (seconds from ``since`` to the end of the passing check's read of the
    switch: an upper bound, as the state may have been right earlier within the read, which
    takes ~0.1 s at 24 ports and ~1 s at 300; problems; ports)."""
    problems: list[str] = []
    while True:
        try:
            problems = await check(world)
            read_at = world.switch_read_at
            ports = len((await read_switch(world)).plugged()) if not problems else 0
        except (WorldError, SandboxError) as exc:
            problems, ports = [f"OVS unreadable: {exc}"], 0
        if not problems:
            return max(0.0, read_at - since), [], ports
        if not world.agent_alive() or time.monotonic() - since > CONVERGE_DEADLINE:
            return None, problems, 0
        await asyncio.sleep(POLL)


class Runner:
    def __init__(self, world: FaultWorld, seed: int, log: Any = print) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.record = RunRecord(seed, sum(vm.iface_id.startswith("good-") for vm in world.vms))
        self.churn = Churn(world, random.Random(self.rng.random()))
        self.log = log

    def violation(self, episode: str, text: str) -> None:
        line = f"seed {self.record.seed} {episode}: {text}"
        self.record.violations.append(line)
        self.log(f"VIOLATION {line}")

    async def boot(self) -> None:
        """Every port plugged, the agent started, the invariant reached (not a fault)."""
        await self.churn.plug(self.world.vms)
        started = time.monotonic()
        await self.world.spawn_agent()
        seconds, problems, _ = await converge(self.world, started)
        if seconds is None:
            self.violation("boot", "; ".join(problems[:5]))
        self.record.boot_s = seconds

    async def episode(self, name: str) -> None:
        world, record = self.world, self.record
        number = record.episodes + 1
        label = f"episode {number} {name}"
        await self.churn.sync()
        since = mark(world)
        stop = asyncio.Event()
        churning = asyncio.create_task(self.churn.run(stop))
        churn_before = self.churn.operations
        try:
            injected = await FAULTS[name](world, self.rng)
        finally:
            stop.set()
            await churning
        ended = time.monotonic()
        record.episodes = number
        record.faults[name] += 1
        record.churn_operations += self.churn.operations - churn_before
        for text in injected.violations:
            self.violation(label, text)
        seconds, problems, ports = await converge(world, ended)
        if seconds is None:
            self.violation(label, f"{injected.what}: invariant not back within "
                           f"{CONVERGE_DEADLINE} s: " + "; ".join(problems[:6]))  # fmt: skip
        else:
            record.converge_s.append(seconds)
            record.by_fault_s.setdefault(name, []).append(seconds)
            record.ports_checked += ports
        if injected.log is not None and await wait_log_line(world, since, injected) is None:
            self.violation(label, f"{injected.what}: no log line matching "
                           f"{injected.log.pattern!r}")  # fmt: skip
        for crash in crashes(records_since(world, since)):
            self.violation(label, crash)
        took = "deadline missed" if seconds is None else f"{seconds:.2f} s"
        self.log(f"{label}: {injected.what}; converged {took}; {ports} ports")

    async def run(self, names: Iterable[str]) -> None:
        for name in names:
            await self.episode(name)

    async def soak(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        kinds = sorted(FAULTS)
        while time.monotonic() < deadline:
            await self.episode(self.rng.choice(kinds))
