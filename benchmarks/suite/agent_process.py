"""The agent as the suite runs it: ``aovs agent --config FILE`` in its own process.

A subprocess, so that its CPU seconds and peak RSS are its own (:mod:`.usage`). It logs JSON
lines (``[agent] log_format = "json"``) to a file the suite reads back: "dataplane installed"
(with the FlowMods of its first sync) and one "port <event>" line per port transition (with the
agent's own event -> commit milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.suite.usage import Usage, read_usage, reset_peak

STOP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    host: str
    transport_url: str
    ovsdb_connection: str
    state_path: Path
    bridge_mappings: tuple[str, ...] = ("physnet1:br-phys",)
    tunnel_types: tuple[str, ...] = ()
    local_ip: str | None = None
    rpc_response_timeout: float = 10.0
    rpc_response_max_timeout: float = 20.0
    report_interval: float = 30.0
    port_metadata_delay: float | None = None  # None: neutron's Port rows written at stop only


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def config_toml(settings: AgentSettings) -> str:
    """The agent's configuration file (neutron's option names, see aovs.config)."""
    ovs: dict[str, object] = {
        "ovsdb_connection": settings.ovsdb_connection,
        "datapath_type": "dummy",
        "bridge_mappings": settings.bridge_mappings,
    }
    if settings.local_ip is not None:
        ovs["local_ip"] = settings.local_ip
    if settings.port_metadata_delay is not None:
        ovs["port_metadata_delay"] = settings.port_metadata_delay
    agent: dict[str, object] = {
        "state_path": str(settings.state_path),
        "report_interval": settings.report_interval,
        "rpc_response_timeout": settings.rpc_response_timeout,
        "rpc_response_max_timeout": settings.rpc_response_max_timeout,
        "log_format": "json",
    }
    if settings.tunnel_types:
        agent["tunnel_types"] = settings.tunnel_types
    sections: dict[str, Mapping[str, object]] = {
        "ovs": ovs,
        "agent": agent,
        "securitygroup": {"firewall_driver": "openvswitch"},
    }
    lines = [f"host = {_toml_value(settings.host)}",
             f"transport_url = {_toml_value(settings.transport_url)}"]  # fmt: skip
    for name, options in sections.items():
        lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in options.items())]
    return "\n".join(lines) + "\n"


# ---- the log ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortTransition:
    ts: float
    iface_id: str
    event: str
    phase: str
    ofport: int | None
    ms: float


MILESTONES = frozenset({"status socket listening", "agent starting", "dataplane installed",
                        "bundle committed"})  # fmt: skip
MILESTONE_PREFIXES = ("connected to broker", "OpenFlow reconnected")


def phase_timeline(log: AgentLog, since: float, until: float | None = None) -> dict[str, Any]:
    """Where a scenario's time went, from the agent's own lines (wall-clock ``ts``) after
    ``since`` (``time.time()`` at the scenario's start): seconds from ``since`` to its first
    line (interpreter, imports, configuration: when the scenario spawned it), to the broker
    connection, to the first install, each big bundle's end (the agent logs bundles of 10k
    FlowMods and more at INFO) with its FlowMods and commit time, and the first and last port
    wired (pure)."""

    def at(ts: float) -> float:
        return round(ts - since, 3)

    lines = [r for r in log.milestones if float(r.get("ts", 0.0)) >= since
             and (until is None or float(r.get("ts", 0.0)) <= until)]  # fmt: skip
    timeline: dict[str, Any] = {}
    for record in lines:
        message, ts = str(record.get("msg", "")), float(record.get("ts", 0.0))
        if message == "status socket listening":
            timeline.setdefault("first_line_s", at(ts))
        elif message.startswith("connected to broker"):
            timeline.setdefault("broker_connected_s", at(ts))
        elif message == "dataplane installed":
            timeline.setdefault("first_install_done_s", at(ts))
        elif message.startswith("OpenFlow reconnected"):
            timeline.setdefault("replays", []).append(
                {"bridge": record.get("bridge"), "done_s": at(ts), "ms": record.get("ms")}
            )
        elif message == "bundle committed":
            timeline.setdefault("big_bundles", []).append(
                {"done_s": at(ts), "flowmods": record.get("flowmods"),
                 "commit_ms": round(float(record.get("ms", 0.0)), 1)}
            )  # fmt: skip
    wired = [t.ts for t in log.transitions if t.phase == "wired" and t.ts >= since
             and (until is None or t.ts <= until)]  # fmt: skip
    if wired:
        timeline["first_port_wired_s"] = at(min(wired))
        timeline["last_port_wired_s"] = at(max(wired))
        timeline["ports_wired"] = len(wired)
    return timeline


@dataclass
class AgentLog:
    """What the suite reads from the agent's JSON log lines."""

    installed: list[dict[str, Any]] = field(default_factory=list)  # "dataplane installed"
    transitions: list[PortTransition] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # ERROR lines and tracebacks, verbatim
    # the lines a timeline is made of: start, broker, install, big bundles (see phase_timeline)
    milestones: list[dict[str, Any]] = field(default_factory=list)
    other_lines: int = 0

    def feed(self, text: str) -> None:
        for raw in text.splitlines():
            self.feed_line(raw)

    def feed_line(self, raw: str) -> None:
        raw = raw.strip()
        if not raw:
            return
        try:
            record = json.loads(raw)
        except ValueError:
            self.other_lines += 1
            if raw.startswith(("Traceback", "aovs:")):
                self.errors.append(raw[:300])
            return
        if not isinstance(record, dict):
            self.other_lines += 1
            return
        message = str(record.get("msg", ""))
        if record.get("level") in ("ERROR", "CRITICAL"):
            self.errors.append(f"{message} {record.get('error', '')}".strip()[:300])
        if message in MILESTONES or message.startswith(MILESTONE_PREFIXES):
            self.milestones.append(record)
        if message == "dataplane installed":
            self.installed.append(record)
        elif message.startswith("port ") and "iface_id" in record and "ms" in record:
            ofport = record.get("ofport")
            self.transitions.append(
                PortTransition(
                    ts=float(record.get("ts", 0.0)),
                    iface_id=str(record["iface_id"]),
                    event=message.removeprefix("port "),
                    phase=str(record.get("phase", "")),
                    ofport=ofport if isinstance(ofport, int) else None,
                    ms=float(record["ms"]),
                )
            )
        else:
            self.other_lines += 1


class AgentProcess:
    """One run of ``aovs agent``; ``stop`` stops exactly this process."""

    def __init__(
        self, settings: AgentSettings, workdir: Path, name: str, profile_dir: Path | None = None
    ) -> None:
        self.settings = settings
        # py-spy attached to the agent's pid samples its stacks into <profile_dir>/<name>.txt
        # (collapsed format); the sampling costs the agent little, but it costs the machine
        self.profile_path = None if profile_dir is None else profile_dir / f"{name}.txt"
        self.profiler: asyncio.subprocess.Process | None = None
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.config_path.write_text(config_toml(settings))
        self.log = AgentLog()
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0  # time.monotonic() just before exec
        self.spawned_wall = 0.0  # time.time(), to compare with the log's timestamps
        self._offset = 0

    async def start(self) -> None:
        log_file = self.log_path.open("ab")
        self.spawned_at = time.monotonic()
        self.spawned_wall = time.time()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aovs.cli", "agent", "--config", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )  # fmt: skip
            if self.profile_path is not None:
                py_spy = str(Path(sys.executable).parent / "py-spy")
                self.profiler = await asyncio.create_subprocess_exec(
                    py_spy, "record", "--pid", str(self.process.pid), "--format", "raw",
                    "--rate", "200", "--nonblocking", "-o", str(self.profile_path),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                )  # fmt: skip
        finally:
            log_file.close()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the agent was not started")
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def read_log(self) -> AgentLog:
        """Parse what the agent logged since the last call (complete lines only)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.log
        complete = data.rpartition(b"\n")[0]
        if complete:
            self._offset += len(complete) + 1
            self.log.feed(complete.decode(errors="replace"))
        return self.log

    def usage(self) -> Usage | None:
        if not self.alive:
            return None
        try:
            return read_usage(self.pid)
        except (OSError, ValueError):
            return None

    def reset_peak(self) -> bool:
        return self.alive and reset_peak(self.pid)

    def check_alive(self) -> None:
        """Raise with the agent's last log lines when it has exited."""
        if self.process is not None and self.process.returncode is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-8:]
            raise AgentExited(
                f"the agent exited with {self.process.returncode}; log {self.log_path}: "
                + " | ".join(tail)
            )

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop this agent (SIGTERM, then SIGKILL after STOP_TIMEOUT); its exit code."""
        profiler = self.profiler
        if profiler is not None and profiler.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                profiler.send_signal(signal.SIGINT)  # py-spy writes its stacks on SIGINT
            try:
                await asyncio.wait_for(profiler.wait(), STOP_TIMEOUT)
            except TimeoutError:
                profiler.kill()
                await profiler.wait()
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()


class AgentExited(RuntimeError):
    """The agent process died during a scenario."""
