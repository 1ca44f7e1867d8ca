"""A private Open vSwitch in one directory: ovsdb-server + ovs-vswitchd with the dummy datapath.

Used by the tests, the demo and the benchmarks. It needs no kernel module and no privileges, and
several can run side by side. Every daemon it starts is tracked by pidfile, and ``stop`` stops
exactly those.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aovs.config import AgentConfig

SCHEMA_CANDIDATES = (
    Path("/usr/share/openvswitch/vswitch.ovsschema"),
    Path("/usr/local/share/openvswitch/vswitch.ovsschema"),
)
MAX_UNIX_PATH = 100  # sun_path is 108 bytes; leave room for "<bridge>.mgmt"
DAEMONS = ("ovs-vswitchd", "ovsdb-server")


class SandboxError(Exception):
    """The sandbox could not be started or driven; the message says which step failed."""


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a container may have no reaper)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _schema() -> Path:
    for candidate in SCHEMA_CANDIDATES:
        if candidate.exists():
            return candidate
    raise SandboxError("vswitch.ovsschema not found: is openvswitch-switch installed?")


@dataclass
class OVSSandbox:
    """One private OVS. ``directory`` holds the database, sockets, pidfiles and logs."""

    directory: Path
    bridges_created: list[str] = field(default_factory=list)
    # True: vxlan/gre ports are real tunnel vports (``--enable-dummy``, as OVS's own tunnel tests
    # run). False: ``--enable-dummy=override`` makes every netdev type, tunnels included, a plain
    # dummy port, which also lets ``datapath_type=system`` bridges work without a kernel module.
    tunnels: bool = False

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).absolute()

    # -- paths and environment -------------------------------------------------------------
    @property
    def db_sock(self) -> Path:
        return self.directory / "db.sock"

    @property
    def ovsdb_connection(self) -> str:
        return f"unix:{self.db_sock}"

    def mgmt_socket(self, bridge: str) -> Path:
        return self.directory / f"{bridge}.mgmt"

    @property
    def env(self) -> dict[str, str]:
        """Environment that makes ovs-vsctl/ovs-ofctl/ovs-appctl talk to this sandbox."""
        env = dict(os.environ)
        for name in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"):
            env[name] = str(self.directory)
        return env

    def agent_config(
        self,
        transport_url: str,
        state_path: Path,
        *,
        host: str,
        ovs: Mapping[str, Any] | None = None,
        **agent: Any,
    ) -> AgentConfig:
        """An agent on this sandbox: dummy datapath, physnet1 on br-phys, no state reports;
        ``agent`` adds or overrides ``[agent]`` options, ``ovs`` ``[ovs]`` ones."""
        return AgentConfig.model_validate(
            {
                "host": host,
                "transport_url": transport_url,
                "ovs": {"ovsdb_connection": self.ovsdb_connection, "datapath_type": "dummy",
                        "bridge_mappings": ["physnet1:br-phys"], **(ovs or {})},
                "agent": {"state_path": str(state_path), "report_interval": 0, **agent},
            }
        )  # fmt: skip

    def exports(self) -> str:
        lines = [
            f"export {name}={self.directory}"
            for name in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR")
        ]
        lines.append(f"export AOVS_OVS__OVSDB_CONNECTION={self.ovsdb_connection}")
        lines.append("export AOVS_OVS__DATAPATH_TYPE=dummy")
        return "\n".join(lines)

    # -- commands --------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60.0) -> str:
        """Run an OVS tool against this sandbox; return stdout."""
        try:
            proc = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise SandboxError(
                f"{argv[0]}: not installed (apt-get install openvswitch-switch)"
            ) from None
        if check and proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv[:3])}... failed: {proc.stderr.strip()}")
        return proc.stdout

    def vsctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run("ovs-vsctl", "--timeout=30", *args, timeout=timeout)

    def ofctl(self, *args: str) -> str:
        return self.run("ovs-ofctl", "-O", "OpenFlow13", *args)

    def appctl(self, *args: str, target: str = "ovs-vswitchd") -> str:
        return self.run("ovs-appctl", "-t", str(self.directory / f"{target}.ctl"), *args)

    def dump_flows(self, bridge: str, *extra: str) -> list[str]:
        """Flows as ``ovs-ofctl`` prints them, without statistics, sorted."""
        out = self.ofctl("dump-flows", "--no-stats", bridge, *extra)
        return sorted(
            line.strip()
            for line in out.splitlines()
            if line.strip() and not line.startswith(("OFPST_FLOW", "NXST_FLOW"))
        )

    # -- lifecycle -------------------------------------------------------------------------
    def _pid(self, daemon: str) -> int | None:
        try:
            return int((self.directory / f"{daemon}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self, daemon: str) -> bool:
        pid = self._pid(daemon)
        return pid is not None and _alive(pid)

    def start(self, physical_bridges: Sequence[str] = ()) -> None:
        if len(str(self.db_sock)) > MAX_UNIX_PATH:
            raise SandboxError(
                f"directory {self.directory} is too long for unix sockets; use a shorter one"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        db = self.directory / "conf.db"
        if not db.exists():
            self.run("ovsdb-tool", "create", str(db), str(_schema()))
        self.start_ovsdb()
        self.vsctl("--no-wait", "init")
        self.start_vswitchd()
        for bridge in physical_bridges:
            self.add_physical_bridge(bridge)

    def start_ovsdb(self) -> None:
        if self.is_running("ovsdb-server"):
            return
        self.run(
            "ovsdb-server",
            str(self.directory / "conf.db"),
            f"--remote=punix:{self.db_sock}",
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            f"--unixctl={self.directory / 'ovsdb-server.ctl'}",
            f"--pidfile={self.directory / 'ovsdb-server.pid'}",
            f"--log-file={self.directory / 'ovsdb-server.log'}",
            "--detach",
            "--no-chdir",
        )
        self._wait_for(lambda: self.db_sock.exists(), "ovsdb-server socket")

    def start_vswitchd(self) -> None:
        if self.is_running("ovs-vswitchd"):
            return
        self.run(
            "ovs-vswitchd",
            self.ovsdb_connection,
            "--enable-dummy" if self.tunnels else "--enable-dummy=override",
            "--disable-system",
            "--disable-system-route",
            f"--unixctl={self.directory / 'ovs-vswitchd.ctl'}",
            f"--pidfile={self.directory / 'ovs-vswitchd.pid'}",
            f"--log-file={self.directory / 'ovs-vswitchd.log'}",
            "--detach",
            "--no-chdir",
        )
        self._wait_for(lambda: (self.directory / "ovs-vswitchd.ctl").exists(), "ovs-vswitchd")

    def kernel_style_tunnels(self, bridge: str) -> None:
        """Traces show ``set(tunnel(tun_id=..,dst=..)),<port>`` instead of failing native
        tunnelling's route lookup (a sandbox has no routes). Needs ``tunnels=True``."""
        self.appctl("dpif/set-dp-features", bridge, "tnl_push_pop", "false")

    def add_physical_bridge(self, bridge: str, uplink: str | None = None) -> str:
        """A physical bridge with a dummy uplink port (``<bridge>-uplink`` by default)."""
        uplink = uplink or f"{bridge}-up"[:15]
        self.vsctl(
            "--may-exist", "add-br", bridge,
            "--", "set", "Bridge", bridge, "datapath_type=dummy", "fail-mode=secure",
            "protocols=OpenFlow13",
            "--", "--may-exist", "add-port", bridge, uplink,
            "--", "set", "Interface", uplink, "type=dummy",
        )  # fmt: skip
        self.bridges_created.append(bridge)
        return uplink

    def kill(self, daemon: str, sig: int = signal.SIGKILL) -> None:
        """Kill one daemon (e.g. ``kill -9 ovs-vswitchd``) and wait until it is gone."""
        pid = self._pid(daemon)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self._wait_for(lambda: not _alive(pid), f"{daemon} to exit")
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{daemon}.pid").unlink()
        if daemon == "ovsdb-server":
            with contextlib.suppress(FileNotFoundError):
                self.db_sock.unlink()
        if daemon == "ovs-vswitchd":
            with contextlib.suppress(FileNotFoundError):
                (self.directory / "ovs-vswitchd.ctl").unlink()

    def stop(self) -> None:
        """Stop exactly the daemons this sandbox started (by pidfile), vswitchd first."""
        for daemon in DAEMONS:
            if self.is_running(daemon):
                self.kill(daemon, signal.SIGTERM)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _wait_for(predicate: object, what: str, timeout: float = 10.0) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SandboxError(f"timed out waiting for {what}")
            time.sleep(0.01)


@contextlib.contextmanager
def running_sandbox(
    directory: Path,
    physical_bridges: Sequence[str] = (),
    keep: bool = False,
    tunnels: bool = False,
) -> Iterator[OVSSandbox]:
    """Start a sandbox for the duration of a block; stop (and remove unless ``keep``) after,
    also when the start itself fails half way."""
    sandbox = OVSSandbox(directory, tunnels=tunnels)
    try:
        sandbox.start(physical_bridges)
        yield sandbox
    finally:
        if keep:
            sandbox.stop()
        else:
            sandbox.remove()
