"""The reboot benchmark's stopwatch: a process of its own that sees a rebooted port come back.

The benchmark runs the agent in its own event loop; timestamps taken there would wait behind the
agent's work. So an otherwise idle process takes them (``time.monotonic()`` is CLOCK_MONOTONIC,
the same clock in every process), and nothing polls:

- **t_ofport**: its own OVSDB monitor (``aovs.ovsdb``) on Interface ``name``/``ofport``: the
  update that shows the watched port's NEW row (another UUID) with an ofport;
- **t_flow**: ``ovs-ofctl -O OpenFlow13 monitor br-int watch:!initial`` (an OpenFlow flow
  monitor: ovs-vswitchd pushes every flow change as it happens), the first line, since arming,
  naming the new ofport (``in_port=N``, ``reg5=0xN``, ``output:N``). A bundle commits
  atomically, so its first line marks the whole bundle in place;
- **t_forward**: ofproto/trace over ovs-vswitchd's unixctl socket (JSON-RPC, no ovs-appctl
  process per trace), each trace's last ``Datapath actions`` checked against ``dpif/show``'s
  datapath port numbers. When every trace delivers in the first round, right after t_flow, the
  port forwarded at t_flow; otherwise the traces are repeated every ``RETRY_S`` and the end of
  the first successful round is t_forward (an upper bound), and ``rounds`` says how many.

Protocol (JSON lines; the benchmark writes on stdin, reads stdout): ``{"op": "arm", "id",
"tap", "flows", "traces", "timeout"}`` -> ``{"op": "armed"}`` then ``{"op": "result", ...}``;
``{"op": "calibrate", "id", "rounds", "tap", "ofport", "traces"}`` runs trace rounds for
an already wired port (the benchmark reads ovs-vswitchd's CPU around it) -> ``{"op":
"calibrated", "seconds"}``; ``{"op": "quit"}``. A trace is ``{"bridge", "flow" ("{ofport}" is
replaced by the new ofport), "ct_next": [...], "port" (the datapath port expected, by name),
"push_vlan" (or null)}``.

    python -m benchmarks.reboot_watch --db unix:DB --ctl VSWITCHD.ctl --bridge br-int
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aovs.ovsdb import EventKind, Monitor, OVSDBClient
from benchmarks.reboot_parse import datapath_ports, json_messages, mentions_ofport, trace_delivers

RETRY_S = 0.002  # between trace rounds while the port does not forward yet
ROOT = Path(__file__).resolve().parent.parent


class UnixctlError(Exception):
    """ovs-vswitchd refused a unixctl command (the message is its answer)."""


class Unixctl:
    """A JSON-RPC session on a daemon's unixctl socket (what ovs-appctl speaks), one request
    at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = b""
        self._ids = 0

    @classmethod
    async def open(cls, path: str) -> Unixctl:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
        return cls(reader, writer)

    async def call(self, method: str, *params: str) -> str:
        self._ids += 1
        request = {"method": method, "params": list(params), "id": self._ids}
        self._writer.write(json.dumps(request).encode())
        await self._writer.drain()
        while True:
            messages, self._buffer = json_messages(self._buffer)
            for message in messages:
                if message.get("id") != self._ids:
                    continue
                if message.get("error") is not None:
                    raise UnixctlError(f"{method}: {message['error']}")
                return str(message.get("result", ""))
            chunk = await self._reader.read(1 << 20)
            if not chunk:
                raise UnixctlError(f"{method}: the daemon closed its unixctl socket")
            self._buffer += chunk

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


@dataclass(frozen=True, slots=True)
class Plugged:
    """The first moment a row of this name was seen with an ofport."""

    uuid: str
    ofport: int
    at: float


class Stopwatch:
    def __init__(self, db: str, ctl: str, bridge: str, emit: Callable[[dict[str, Any]], None]):
        self.db, self.ctl, self.bridge = db, ctl, bridge
        self.emit = emit
        self.plugged: dict[str, Plugged] = {}
        self.lines: list[tuple[float, str]] | None = None  # collected while armed
        self.changed = asyncio.Event()
        self.odp: dict[str, int] = {}

    async def run(self, commands: asyncio.StreamReader) -> None:
        client = OVSDBClient(self.db)
        await client.start()
        monitor = await client.monitor({"Interface": ["name", "ofport"]})
        monitor.pending()  # the initial rows: already-plugged ports are nothing new
        for uuid, row in monitor.rows("Interface").items():
            if isinstance(row["ofport"], int) and row["ofport"] > 0:
                self.plugged[row["name"]] = Plugged(str(uuid), row["ofport"], time.monotonic())
        flows = await asyncio.create_subprocess_exec(
            "ovs-ofctl", "-O", "OpenFlow13", "monitor", self.bridge, "watch:!initial",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, limit=1 << 24,
        )  # fmt: skip
        # its first reply goes to stdout, the updates after it to stderr (OVS 3.1): one pipe
        assert flows.stdout is not None
        await flows.stdout.readline()  # the monitor's (empty) initial reply: it is in place
        self.unixctl = await Unixctl.open(self.ctl)
        tasks = [
            asyncio.create_task(self._read_rows(monitor)),
            asyncio.create_task(self._read_flows(flows.stdout)),
        ]
        self.emit({"op": "ready"})
        try:
            while line := await commands.readline():
                command = json.loads(line)
                if command["op"] == "quit":
                    break
                if command["op"] == "arm":
                    await self._watch(command)
                elif command["op"] == "calibrate":
                    await self._calibrate(command)
        finally:
            for task in tasks:
                task.cancel()
            flows.kill()
            await flows.wait()
            await self.unixctl.close()
            await client.close()

    # -- the two feeds ---------------------------------------------------------------------------
    async def _read_rows(self, monitor: Monitor) -> None:
        async for event in monitor:
            now = time.monotonic()
            if event.table != "Interface" or event.kind is EventKind.DELETE:
                continue
            row = event.row
            ofport = row.get("ofport")
            if isinstance(ofport, int) and ofport > 0:
                seen = self.plugged.get(row["name"])
                if seen is None or seen.uuid != str(event.uuid) or seen.ofport != ofport:
                    self.plugged[row["name"]] = Plugged(str(event.uuid), ofport, now)
                    self.changed.set()

    async def _read_flows(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            now = time.monotonic()
            if self.lines is not None:
                self.lines.append((now, line.decode(errors="replace")))
                self.changed.set()

    async def _until(self, found: Callable[[], Any], deadline: float) -> Any:
        while True:
            self.changed.clear()
            value = found()
            if value is not None:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    # -- one reboot ------------------------------------------------------------------------------
    async def _watch(self, command: Mapping[str, Any]) -> None:
        tap: str = command["tap"]
        before = self.plugged.get(tap)
        self.lines = []
        self.emit({"op": "armed", "id": command["id"]})
        deadline = time.monotonic() + float(command.get("timeout", 30.0))
        result: dict[str, Any] = {"op": "result", "id": command["id"], "ok": False}
        try:
            plugged: Plugged | None = await self._until(
                lambda: p if (p := self.plugged.get(tap)) and p != before else None, deadline
            )
            if plugged is None:
                result["failure"] = "no new ofport in OVSDB"
                return
            result.update(ofport=plugged.ofport, t_ofport=plugged.at)
            if not command["flows"]:
                result["ok"] = True
                return
            lines, ofport = self.lines, plugged.ofport
            assert lines is not None

            def first_flow() -> tuple[float, str] | None:
                return next((x for x in lines if mentions_ofport(x[1], ofport)), None)

            flow: tuple[float, str] | None = await self._until(first_flow, deadline)
            if flow is None:
                result["failure"] = f"no flow naming ofport {plugged.ofport} was committed"
                return
            result.update(t_flow=flow[0], flow=flow[1].strip()[:200])
            await self._forwarding(command["traces"], tap, ofport, flow[0], deadline, result)
        finally:
            self.lines = None
            self.emit(result)

    async def _forwarding(
        self,
        traces: Sequence[Mapping[str, Any]],
        tap: str,
        ofport: int,
        t_flow: float,
        deadline: float,
        result: dict[str, Any],
    ) -> None:
        rounds = 0
        while True:
            rounds += 1
            started = time.monotonic()
            texts = [await self._trace(trace, ofport) for trace in traces]
            if rounds == 1:
                result["round_ms"] = (time.monotonic() - started) * 1e3
                self.odp = datapath_ports(await self.unixctl.call("dpif/show"))
            failed = self._failed(traces, texts)
            if not failed:
                result.update(ok=True, rounds=rounds,
                              t_forward=t_flow if rounds == 1 else time.monotonic())  # fmt: skip
                return
            if time.monotonic() > deadline:
                result.update(rounds=rounds, failure=f"{tap} does not forward: {failed}")
                return
            await asyncio.sleep(RETRY_S)

    async def _trace(self, trace: Mapping[str, Any], ofport: int) -> str:
        args = [trace["bridge"], trace["flow"].replace("{ofport}", str(ofport))]
        for states in trace.get("ct_next", ()):
            args += ["--ct-next", states]
        return await self.unixctl.call("ofproto/trace", *args)

    def _failed(self, traces: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> str:
        for trace, text in zip(traces, texts, strict=True):
            if not trace_delivers(text, self.odp.get(trace["port"]), trace.get("push_vlan")):
                actions = [ln for ln in text.splitlines() if ln.startswith("Datapath actions")]
                return f"{trace['flow'][:60]}... -> {actions[-1:]} (want {trace['port']})"
        return ""

    async def _calibrate(self, command: Mapping[str, Any]) -> None:
        """``rounds`` rounds of what a reboot's check costs ovs-vswitchd: its traces and one
        ``dpif/show``; the benchmark subtracts this from its CPU figure."""
        started = time.monotonic()
        failures = 0
        for _ in range(int(command["rounds"])):
            texts = [
                await self._trace(trace, int(command["ofport"])) for trace in command["traces"]
            ]
            self.odp = datapath_ports(await self.unixctl.call("dpif/show"))
            failures += bool(self._failed(command["traces"], texts))
        self.emit({"op": "calibrated", "id": command["id"],
                   "seconds": time.monotonic() - started, "failures": failures})  # fmt: skip


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    await Stopwatch(args.db, args.ctl, args.bridge, _emit).run(commands)


class StopwatchProcess:
    """The benchmark's handle on the stopwatch process: one request answered at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._ids = 0

    @classmethod
    async def start(
        cls, db: str, ctl: Path, env: Mapping[str, str], bridge: str = "br-int"
    ) -> StopwatchProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.reboot_watch", "--db", db, "--ctl", str(ctl),
            "--bridge", bridge, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=dict(env), cwd=ROOT, limit=1 << 24,
        )  # fmt: skip
        watch = cls(process)
        await watch._receive("ready", 60)
        return watch

    async def _receive(self, op: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the stopwatch exited (rc {await self.process.wait()})")
                message: dict[str, Any] = json.loads(line)
                if message.get("op") == op:
                    return message

    def _send(self, message: dict[str, Any]) -> int:
        assert self.process.stdin is not None
        self._ids += 1
        self.process.stdin.write((json.dumps({**message, "id": self._ids}) + "\n").encode())
        return self._ids

    async def arm(
        self, tap: str, *, flows: bool, traces: Sequence[Mapping[str, Any]], within: float = 30
    ) -> None:
        """Watch ``tap``'s next new row (call before its del-port); answers once armed. The
        result says failed if the port does not forward ``within`` seconds after arming."""
        self._send({"op": "arm", "tap": tap, "flows": flows, "traces": list(traces),
                    "timeout": within})  # fmt: skip
        await self._receive("armed", 30)

    async def result(self, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
        return await self._receive("result", timeout)

    async def calibrate(
        self, rounds: int, ofport: int, traces: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        self._send({"op": "calibrate", "rounds": rounds, "ofport": ofport,
                    "traces": list(traces)})  # fmt: skip
        return await self._receive("calibrated", 600)

    async def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send({"op": "quit"})
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--ctl", required=True)
    parser.add_argument("--bridge", default="br-int")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
