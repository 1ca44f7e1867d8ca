"""A real neutron 29 server for tests/neutron: private MariaDB, own RabbitMQ vhost, uWSGI API and
neutron-rpc-server, all in one short directory under /tmp.

    venv = Path(subprocess.check_output(["tests/neutron/server/install-neutron"]).split()[-1])
    with NeutronServer(venv) as server:
        net = server.create_network(**{"provider:network_type": "vxlan"})
        ...

Every process is started in its own session (process group) and stopped by that id: SIGTERM
(SIGINT for uWSGI), then SIGKILL after a few seconds; never by name. Only the shared RabbitMQ
broker is used from outside, through a vhost created here and deleted on stop; the broker's
configuration is never changed. MariaDB is a private mariadbd (``--no-defaults``, own datadir,
socket and port on 127.0.0.1): a machine-wide MariaDB on 3306 is never touched.

Run it by hand (``python tests/neutron/server/neutron_server.py VENV``) to get a server to poke.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADB = "mariadb"
RABBIT_HOST = "127.0.0.1"
RABBIT_PORT = 5672
RABBIT_USER = "guest"
RABBIT_PASSWORD = "guest"  # the shared test broker's default account
DB_USER = "neutron"
DB_PASSWORD = "neutron"  # a private, loopback-only test database
# neutron-rpc-server consumes these once its RPC worker is up (q-reports-plugin is in the same
# worker because rpc_state_report_workers = 0)
RPC_QUEUES = ("q-plugin", "q-reports-plugin")
TAIL_LINES = 40
# What any neutron 29 server with this plugin set logs by itself, with no agent involved: left
# out of error_lines() / warning_lines()
KNOWN_NOISE = (
    # auto-allocated-topology needs the router (l3) service plugin
    "Unable to process extensions (auto-allocated-topology)",
    # neutron's RPC worker blocks in RPCServer.wait() until stopped; oslo.messaging warns at 30 s
    "Possible hang: wait is waiting for stop to complete",
    'Did not find expected name "Stdattrs_common"',
    "is already registered",  # neutron.quota.resource_registry, at API start
    "Deprecated: ",
    # stevedore lists every oslo.cache backend; python-memcached is not installed (not used)
    "Could not load 'oslo_cache.memcache_pool'",
    # oslo.messaging's amqp on a channel closing at stop
    "during closing channel",
)
LogMark = dict[str, int]  # log file name -> size, see NeutronServer.log_mark()

Config = Mapping[str, Mapping[str, object]]  # section -> option -> value


class NeutronServerError(Exception):
    """The server could not be started or stopped; the message names the log to read."""


class NeutronApiError(Exception):
    """A REST call answered an HTTP error; ``status`` and ``body`` are neutron's answer."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def render_ini(config: Config) -> str:
    out: list[str] = []
    for section, options in config.items():
        out.append(f"[{section}]")
        for name, value in options.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            out.append(f"{name} = {value}")
        out.append("")
    return "\n".join(out)


def merge(base: Config, extra: Config | None) -> dict[str, dict[str, object]]:
    merged = {section: dict(options) for section, options in base.items()}
    for section, options in (extra or {}).items():
        merged.setdefault(section, {}).update(options)
    return merged


class _Process:
    """One child in its own session, its stdout/stderr appended to ``log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        term_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log = log
        self.term_signal = term_signal
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=log.parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # the group id is the pid: start_new_session

    def stop(self, grace: float = 5.0) -> None:
        """The term signal to the process group, SIGKILL after ``grace`` seconds; reap."""
        self.signal(self.term_signal)
        self.wait_stopped(grace)

    def wait_stopped(self, grace: float) -> None:
        """After the term signal: wait, SIGKILL the group after ``grace`` seconds, reap."""
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            try:
                self.popen.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                raise NeutronServerError(f"{self.name} (pid {self.pid}) survived SIGKILL") from None
        # the leader is gone; workers it forked may linger a moment in the same group
        self.signal(signal.SIGKILL)


class NeutronServer:
    """A private neutron 29 server (ML2/openvswitch) for one test session.

    ``venv``: made by tests/neutron/server/install-neutron. ``service_plugins`` and
    ``extension_drivers`` turn on features (QoS and trunks by default: the ``qos`` and ``trunk``
    agent extensions' tests need them, and they cost the other tests nothing);
    ``extra_config`` / ``extra_ml2_config`` add or override options, as
    ``{"section": {"option": value}}``. ``keep`` leaves the directory (logs, configs) behind.
    """

    def __init__(
        self,
        venv: Path | str,
        *,
        agent_down_time: int = 75,
        service_plugins: Sequence[str] = ("qos", "trunk"),
        mechanism_drivers: Sequence[str] = ("openvswitch", "l2population"),
        extension_drivers: Sequence[str] = ("port_security", "qos"),
        extra_config: Config | None = None,
        extra_ml2_config: Config | None = None,
        start_timeout: float = 120.0,  # ~20 s on a quiet machine; several times that under load
        keep: bool = False,
    ) -> None:
        self.venv = Path(venv)
        self.agent_down_time = agent_down_time
        self.service_plugins = tuple(service_plugins)
        self.mechanism_drivers = tuple(mechanism_drivers)
        self.extension_drivers = tuple(extension_drivers)
        self.extra_config = extra_config
        self.extra_ml2_config = extra_ml2_config
        self.start_timeout = start_timeout
        self.keep = keep
        self.directory: Path | None = None
        self.vhost = f"nsrv-{uuid.uuid4().hex[:10]}"
        self.db_port = 0
        self.api_port = 0
        self.started_at = 0.0
        self._vhost_created = False
        self._mariadb: _Process | None = None
        self._api: _Process | None = None
        self._rpc: _Process | None = None

    # -- paths and addresses ---------------------------------------------------------------
    @property
    def dir(self) -> Path:
        if self.directory is None:
            raise NeutronServerError("the server is not started")
        return self.directory

    @property
    def transport_url(self) -> str:
        return f"rabbit://{RABBIT_USER}:{RABBIT_PASSWORD}@{RABBIT_HOST}:{RABBIT_PORT}/{self.vhost}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def db_url(self) -> str:
        return (
            f"mysql+pymysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.db_port}/neutron"
            "?charset=utf8mb4"
        )

    @property
    def config_files(self) -> list[Path]:
        return [self.dir / "neutron.conf", self.dir / "ml2_conf.ini"]

    @property
    def config_args(self) -> list[str]:
        return [arg for path in self.config_files for arg in ("--config-file", str(path))]

    @property
    def api_log(self) -> Path:
        """neutron's own log of the API (uWSGI) process."""
        return self.dir / "neutron-api.log"

    @property
    def rpc_log(self) -> Path:
        """neutron's own log of neutron-rpc-server (and its RPC worker)."""
        return self.dir / "neutron-rpc.log"

    def log_files(self) -> list[Path]:
        """Every log: neutron's two, the processes' stdout/stderr, MariaDB's, the migration's."""
        if self.directory is None:
            return []
        return sorted(p for p in self.directory.glob("*.log") if p.is_file())

    def log_mark(self) -> LogMark:
        """Where neutron's two logs end now: ``log_text(since=mark)`` reads only what follows."""
        mark: LogMark = {}
        for path in (self.api_log, self.rpc_log):
            with contextlib.suppress(OSError):
                mark[path.name] = path.stat().st_size
        return mark

    def log_text(self, *, since: LogMark | None = None, neutron_only: bool = True) -> str:
        """The server's log text: the API's then the RPC server's, from ``since`` on
        (``neutron_only=False``: every log file, each headed by its name)."""
        paths = [self.api_log, self.rpc_log] if neutron_only else self.log_files()
        parts = []
        for path in paths:
            try:
                with path.open("rb") as handle:
                    handle.seek((since or {}).get(path.name, 0))
                    text = handle.read().decode(errors="replace")
            except OSError:
                continue
            parts.append(text if neutron_only else f"==> {path.name} <==\n{text}")
        return "\n".join(parts)

    def log_lines(self, *needles: str, since: LogMark | None = None) -> list[str]:
        """Lines of neutron's two logs, only those containing every one of ``needles``."""
        return [
            line
            for line in self.log_text(since=since).splitlines()
            if all(n in line for n in needles)
        ]

    def lines_at(self, *levels: str, since: LogMark | None = None) -> list[str]:
        """Lines of neutron's two logs logged at one of ``levels`` (e.g. "WARNING"), minus
        KNOWN_NOISE; "Traceback" also selects traceback lines."""
        level = re.compile(rf"^\S+ \S+ \d+ ({'|'.join(map(re.escape, levels))}) ")
        traceback = "Traceback" in levels
        return [
            line
            for line in self.log_text(since=since).splitlines()
            if (level.match(line) or (traceback and "Traceback (most recent call last)" in line))
            and not any(noise in line for noise in KNOWN_NOISE)
        ]

    def error_lines(self, *, since: LogMark | None = None) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks of neutron's two logs, minus KNOWN_NOISE."""
        return self.lines_at("ERROR", "CRITICAL", "Traceback", since=since)

    def warning_lines(self, *, since: LogMark | None = None) -> list[str]:
        """WARNING lines of neutron's two logs, minus KNOWN_NOISE."""
        return self.lines_at("WARNING", since=since)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> NeutronServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Database, vhost, config, migrations, API and RPC server; stops everything it
        started if any step fails."""
        for tool in ("uwsgi", "neutron-rpc-server", "neutron-db-manage"):
            if not (self.venv / "bin" / tool).exists():
                raise NeutronServerError(
                    f"{self.venv}/bin/{tool} missing: run tests/neutron/server/install-neutron"
                )
        started = time.monotonic()
        self.directory = Path(tempfile.mkdtemp(prefix="nsrv-", dir="/tmp"))
        try:
            self._start_mariadb()
            self._create_vhost()
            self._write_config()
            self._migrate()
            self._start_api()
            self.start_rpc(wait=False)
            deadline = started + self.start_timeout
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic() - started

    def stop(self) -> None:
        """Stop every process started here (by process group), delete the vhost and, unless
        ``keep``, the directory. Safe to call twice and after a failed start."""
        errors: list[str] = []
        # neutron's two processes together, then the database they use
        for group in (("_api", "_rpc"), ("_mariadb",)):
            procs: list[_Process] = [getattr(self, a) for a in group if getattr(self, a)]
            for proc in procs:
                proc.signal(proc.term_signal)
            for proc in procs:
                try:
                    proc.wait_stopped(grace=10.0 if proc is self._mariadb else 5.0)
                except NeutronServerError as exc:
                    errors.append(str(exc))
            for attr in group:
                setattr(self, attr, None)
        if self._vhost_created:
            try:
                self._rabbitmqctl("delete_vhost", self.vhost)
                self._vhost_created = False
            except NeutronServerError as exc:
                errors.append(str(exc))
        if self.directory is not None:
            if self.keep:
                shutil.rmtree(self.directory / "mysql", ignore_errors=True)
            else:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None
        if errors:
            raise NeutronServerError("; ".join(errors))

    def stop_rpc(self) -> None:
        """Stop only neutron-rpc-server (its queues stay, with no consumer)."""
        if self._rpc is not None:
            self._rpc.stop()
            self._rpc = None

    def start_rpc(self, *, wait: bool = True) -> None:
        """(Re)start neutron-rpc-server; ``wait``: until it consumes its queues again."""
        if self._rpc is not None and self._rpc.alive():
            return
        env = self._env("rpc")
        argv = [str(self.venv / "bin" / "neutron-rpc-server"), *self.config_args,
                "--log-file", str(self.rpc_log)]  # fmt: skip
        self._rpc = _Process("neutron-rpc-server", argv, env, self.dir / "rpc-server.out.log")
        if wait:
            self._wait_ready(time.monotonic() + self.start_timeout, api=False)

    @property
    def rpc_running(self) -> bool:
        return self._rpc is not None and self._rpc.alive()

    def pids(self) -> dict[str, int]:
        """The process group leaders started here, by role."""
        procs = {"mariadbd": self._mariadb, "uwsgi": self._api, "neutron-rpc-server": self._rpc}
        return {name: p.pid for name, p in procs.items() if p is not None}

    # -- the steps -------------------------------------------------------------------------
    def _env(self, role: str) -> dict[str, str]:
        """The environment of a neutron process: its own TMPDIR (neutron keeps per-server
        state files there), the venv's bin first on PATH."""
        tmp = self.dir / f"tmp-{role}"
        tmp.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(
            TMPDIR=str(tmp),
            PATH=f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            OS_NEUTRON_CONFIG_DIR=str(self.dir),
            OS_NEUTRON_CONFIG_FILES="neutron.conf;ml2_conf.ini",
        )
        return env

    def _run(self, what: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
             timeout: float = 120.0, log: Path | None = None) -> str:  # fmt: skip
        log = log or self.dir / f"{what}.log"
        try:
            proc = subprocess.run(
                list(argv), env=dict(env) if env is not None else None, capture_output=True,
                text=True, timeout=timeout, check=False, cwd=self.dir,
            )  # fmt: skip
        except FileNotFoundError:
            raise NeutronServerError(f"{what}: {argv[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise NeutronServerError(f"{what}: no answer within {timeout} s") from None
        with log.open("a") as out:
            out.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise NeutronServerError(f"{what} failed (exit {proc.returncode}); {log}:\n{tail(log)}")
        return proc.stdout

    def _start_mariadb(self) -> None:
        datadir = self.dir / "mysql"
        tmp = self.dir / "tmp-mysql"
        tmp.mkdir()
        self._run("mariadb-install-db", [
            MARIADB_INSTALL_DB, "--no-defaults", f"--datadir={datadir}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve", f"--tmpdir={tmp}",
        ])  # fmt: skip
        self.db_port = free_port()
        sock = self.dir / "mysql.sock"
        argv = [
            MARIADBD, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
            f"--pid-file={self.dir / 'mysql.pid'}", f"--tmpdir={tmp}", "--user=root",
            "--bind-address=127.0.0.1", f"--port={self.db_port}", "--skip-name-resolve",
            "--skip-log-bin", f"--log-error={self.dir / 'mariadb.log'}",
            "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0", "--max-connections=200",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
        ]  # fmt: skip
        self._mariadb = _Process("mariadbd", argv, os.environ, self.dir / "mariadbd.out.log")
        sql = (
            "CREATE DATABASE neutron CHARACTER SET utf8mb4;"
            f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
            f"GRANT ALL PRIVILEGES ON neutron.* TO '{DB_USER}'@'127.0.0.1';"
        )
        deadline = time.monotonic() + 30.0
        while not sock.exists():
            self._check_alive(self._mariadb, self.dir / "mariadb.log", deadline, "mariadbd")
            time.sleep(0.1)
        while True:  # the socket appears a moment before the server accepts on it
            try:
                client = [MARIADB, "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql]
                self._run("mariadb-create-db", client)
                return
            except NeutronServerError:
                self._check_alive(self._mariadb, self.dir / "mariadb.log", deadline, "mariadbd")
                time.sleep(0.2)

    def _rabbitmqctl(self, *args: str) -> str:
        argv = ["rabbitmqctl", "-q", *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except FileNotFoundError:
            raise NeutronServerError(
                "rabbitmqctl not found: is rabbitmq-server installed?"
            ) from None
        except subprocess.TimeoutExpired:
            raise NeutronServerError(f"rabbitmqctl {' '.join(args)}: timed out") from None
        if proc.returncode != 0:
            raise NeutronServerError(
                f"rabbitmqctl {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}"
            )
        return proc.stdout

    def _create_vhost(self) -> None:
        self._rabbitmqctl("add_vhost", self.vhost)
        self._vhost_created = True
        self._rabbitmqctl("set_permissions", "-p", self.vhost, RABBIT_USER, ".*", ".*", ".*")

    def queue_consumers(self) -> dict[str, int]:
        """Each queue of the vhost and its number of consumers."""
        out = self._rabbitmqctl("list_queues", "-p", self.vhost, "--no-table-headers",
                                "name", "consumers")  # fmt: skip
        queues: dict[str, int] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                queues[parts[0]] = int(parts[1])
        return queues

    def _write_config(self) -> None:
        for sub in ("state", "lock"):
            (self.dir / sub).mkdir()
        neutron: Config = {
            "DEFAULT": {
                "core_plugin": "ml2",
                "service_plugins": list(self.service_plugins),
                "auth_strategy": "noauth",
                "transport_url": self.transport_url,
                # >= 1 also in the API's config: with 0, ML2 creates no agent notifiers
                "rpc_workers": 1,
                "rpc_state_report_workers": 0,
                "api_workers": 1,
                "agent_down_time": self.agent_down_time,
                "state_path": self.dir / "state",
                "notify_nova_on_port_status_changes": False,
                "notify_nova_on_port_data_changes": False,
                "dhcp_agent_notification": False,  # no DHCP agent here
                "debug": True,
                "use_stderr": False,
            },
            "database": {"connection": self.db_url, "max_pool_size": 10},
            "oslo_concurrency": {"lock_path": self.dir / "lock"},
        }
        ml2: Config = {
            "ml2": {
                "type_drivers": ["flat", "vlan", "vxlan"],
                "project_network_types": ["vxlan"],
                "mechanism_drivers": list(self.mechanism_drivers),
                "extension_drivers": list(self.extension_drivers),
            },
            "ml2_type_flat": {"flat_networks": "physnet1"},
            "ml2_type_vlan": {"network_vlan_ranges": "physnet1:100:200"},
            "ml2_type_vxlan": {"vni_ranges": "1000:2000"},
            "securitygroup": {"firewall_driver": "openvswitch", "enable_security_group": True},
        }
        # found beside the config files (api_paste_config's default; setting it is deprecated)
        shutil.copy(self.venv / "etc" / "neutron" / "api-paste.ini", self.dir / "api-paste.ini")
        (self.dir / "neutron.conf").write_text(render_ini(merge(neutron, self.extra_config)))
        (self.dir / "ml2_conf.ini").write_text(render_ini(merge(ml2, self.extra_ml2_config)))

    def _migrate(self) -> None:
        self._run("neutron-db-manage",
                  [str(self.venv / "bin" / "neutron-db-manage"), *self.config_args,
                   "upgrade", "heads"], env=self._env("db"), timeout=300.0)  # fmt: skip

    def _start_api(self) -> None:
        self.api_port = free_port()
        ini = self.dir / "uwsgi.ini"
        options = {
            "http-socket": f"127.0.0.1:{self.api_port}",
            "module": "neutron.wsgi.api:application",
            "virtualenv": self.venv,
            "pyargv": " ".join([*self.config_args, "--log-file", str(self.api_log)]),
            "master": "true",
            "processes": 1,
            "threads": 4,
            "enable-threads": "true",
            "lazy-apps": "true",
            "need-app": "true",
            "die-on-term": "true",
            "thunder-lock": "true",
            "buffer-size": 65535,
            "add-header": "Connection: close",
            "hook-master-start": "unix_signal:15 gracefully_kill_them_all",
            "worker-reload-mercy": 5,
            "pidfile": self.dir / "uwsgi.pid",
        }
        ini.write_text(render_ini({"uwsgi": options}))
        argv = [str(self.venv / "bin" / "uwsgi"), "--ini", str(ini)]
        # SIGINT: uWSGI kills its workers at once and exits (SIGTERM waits for their threads)
        self._api = _Process("uwsgi", argv, self._env("api"), self.dir / "uwsgi.out.log",
                             term_signal=signal.SIGINT)  # fmt: skip

    def _check_alive(self, proc: _Process | None, log: Path, deadline: float, what: str) -> None:
        if proc is None or not proc.alive():
            code = proc.popen.returncode if proc is not None else None
            raise NeutronServerError(f"{what} exited (status {code}); {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise NeutronServerError(f"{what} not ready within the deadline; {log}:\n{tail(log)}")

    def _diagnose(self, what: str, neutron_log: Path, out_log: Path) -> str:
        """``what``, then the last errors of neutron's log and the tail of stdout/stderr."""
        errors = [
            line
            for line in tail(neutron_log, 100_000).splitlines()
            if re.match(r"^\S+ \S+ \d+ (ERROR|CRITICAL) ", line)
        ][-10:]
        return (
            f"{what}\n--- errors in {neutron_log}:\n" + ("\n".join(errors) or "(none)")
            + f"\n--- {out_log} (stdout/stderr), last lines:\n{tail(out_log, 25)}"
        )  # fmt: skip

    def _wait_api(self, deadline: float) -> bool:
        """True once ``GET /v2.0/networks`` answers; raise if uWSGI or its worker died."""
        out = self.dir / "uwsgi.out.log"
        if self._api is None or not self._api.alive():
            code = self._api.popen.returncode if self._api is not None else None
            raise NeutronServerError(self._diagnose(f"uWSGI exited ({code})", self.api_log, out))
        with contextlib.suppress(OSError):
            if "DAMN ! worker" in out.read_text(errors="replace"):
                # lazy-apps: a worker whose app failed to load is respawned forever
                raise NeutronServerError(
                    self._diagnose("the API's uWSGI worker died", self.api_log, out)
                )
        try:
            self.get("/v2.0/networks", timeout=2.0)
            return True
        except (OSError, NeutronApiError):
            pass
        if time.monotonic() > deadline:
            raise NeutronServerError(
                self._diagnose(f"the API did not answer on {self.api_url}", self.api_log, out)
            )
        return False

    def _wait_rpc(self, deadline: float) -> bool:
        """True once neutron-rpc-server consumes RPC_QUEUES; raise if it exited."""
        out = self.dir / "rpc-server.out.log"
        if self._rpc is None or not self._rpc.alive():
            code = self._rpc.popen.returncode if self._rpc is not None else None
            what = f"neutron-rpc-server exited ({code})"
            raise NeutronServerError(self._diagnose(what, self.rpc_log, out))
        consumers = self.queue_consumers()
        if all(consumers.get(queue, 0) > 0 for queue in RPC_QUEUES):
            return True
        if time.monotonic() > deadline:
            what = f"neutron-rpc-server does not consume {RPC_QUEUES} (queues: {consumers})"
            raise NeutronServerError(self._diagnose(what, self.rpc_log, out))
        return False

    def _wait_ready(self, deadline: float, *, api: bool = True, rpc: bool = True) -> None:
        """Until the API answers and neutron-rpc-server consumes; fail early if one dies."""
        while True:
            api = api and not self._wait_api(deadline)
            rpc = rpc and not self._wait_rpc(deadline)
            if not api and not rpc:
                return
            time.sleep(0.3)

    # -- REST ------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
        timeout: float = 60.0,
    ) -> Any:  # fmt: skip
        """One REST call (noauth: no token); the parsed JSON answer, None for an empty one."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise NeutronApiError(method, path, exc.code,
                                  exc.read().decode(errors="replace")) from None  # fmt: skip
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, *, timeout: float = 60.0) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- helpers ---------------------------------------------------------------------------
    def extensions(self) -> set[str]:
        """The aliases of the API extensions that are on."""
        return {ext["alias"] for ext in self.get("/v2.0/extensions")["extensions"]}

    def create_network(self, **attrs: Any) -> dict[str, Any]:
        """E.g. ``create_network(**{"provider:network_type": "vlan",
        "provider:physical_network": "physnet1"})``; a name is made up if none is given."""
        body = {"name": f"net-{uuid.uuid4().hex[:6]}", **attrs}
        network: dict[str, Any] = self.post("/v2.0/networks", {"network": body})["network"]
        return network

    def delete_network(self, network_id: str) -> None:
        self.delete(f"/v2.0/networks/{network_id}")

    def create_subnet(
        self, network_id: str, cidr: str = "10.0.0.0/24", ip_version: int = 4, **attrs: Any
    ) -> dict[str, Any]:
        body = {"network_id": network_id, "cidr": cidr, "ip_version": ip_version, **attrs}
        subnet: dict[str, Any] = self.post("/v2.0/subnets", {"subnet": body})["subnet"]
        return subnet

    def create_port(self, network_id: str, host: str, **attrs: Any) -> dict[str, Any]:
        """A VM port bound to ``host``, as nova creates it (``device_owner`` compute:nova)."""
        body = {
            "network_id": network_id,
            "binding:host_id": host,
            "device_owner": "compute:nova",
            "device_id": str(uuid.uuid4()),
            "name": f"vm-{uuid.uuid4().hex[:6]}",
            **attrs,
        }
        port: dict[str, Any] = self.post("/v2.0/ports", {"port": body})["port"]
        return port

    def show_port(self, port_id: str) -> dict[str, Any]:
        port: dict[str, Any] = self.get(f"/v2.0/ports/{port_id}")["port"]
        return port

    def update_port(self, port_id: str, **attrs: Any) -> dict[str, Any]:
        port: dict[str, Any] = self.put(f"/v2.0/ports/{port_id}", {"port": attrs})["port"]
        return port

    def delete_port(self, port_id: str) -> None:
        self.delete(f"/v2.0/ports/{port_id}")

    def agents(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /v2.0/agents``, e.g. ``agents(host="host-a", agent_type="Open vSwitch agent")``."""
        query = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in filters.items())
        agents: list[dict[str, Any]] = self.get("/v2.0/agents" + (f"?{query}" if query else ""))[
            "agents"
        ]
        return agents

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``predicate`` (blocking) until true; raise naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.2)


@contextlib.contextmanager
def running_server(venv: Path | str, **kwargs: Any) -> Iterator[NeutronServer]:
    with NeutronServer(venv, **kwargs) as server:
        yield server


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: neutron_server.py VENV  (the venv install-neutron printed)", file=sys.stderr)
        return 2

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with running_server(argv[0], keep=True) as server:
        print(f"api_url       {server.api_url}")
        print(f"transport_url {server.transport_url}")
        print(f"directory     {server.directory}  (started in {server.started_at:.1f} s)")
        print("Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
