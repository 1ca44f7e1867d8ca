"""Private RabbitMQ nodes for tests and benchmarks: TLS listeners, clusters, stopping a node.

Each node is ``rabbitmq-server`` with its own node name (``aovs-<tag>-<random>@localhost``),
AMQP / TLS / distribution ports (free ones, picked at start), data, log and config files and
Erlang cookie, all in one temporary directory; ``rabbitmqctl`` is pointed at it by node name and
cookie (``HOME``). Nothing here reads or writes the system broker's config, data or cookie, and
nothing addresses its node: the only thing shared is the ``epmd`` daemon, as for any Erlang
node. The scripts are run directly (``/usr/lib/rabbitmq/bin``), not through the ``/usr/sbin``
wrappers that switch to the ``rabbitmq`` user and its home (and cookie).

    with private_cluster(Path(tmp), 2, users={"aovs": password}) as (a, b):
        url = transport_url([a, b], "aovs", password)   # rabbit://aovs:...@localhost:P1,.../
        ...
        a.stop()                                          # the node in use goes away
        a.start()                                         # and comes back, still clustered

:func:`make_pki` makes a test CA, a server certificate (for ``localhost``) and a client
certificate with the ``openssl`` command, and a second CA that signed none of them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT = 90.0  # seconds for a node to be up (two cores, other tests running)


class RabbitNodeError(Exception):
    """A private node could not be started or driven; the message says which step failed."""


def _binary(name: str) -> str:
    direct = RABBIT_BIN / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if found is None:
        raise RabbitNodeError(f"{name}: not installed (apt-get install rabbitmq-server)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- a test PKI ------------------------------------------------------------------------------

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    """A test CA, the server's and a client's key + certificate, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # signed nothing here: a client trusting it must refuse the server


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        raise RabbitNodeError("openssl: not installed") from None
    except subprocess.CalledProcessError as exc:
        raise RabbitNodeError(f"openssl {args[0]}: {exc.stderr.decode().strip()}") from None


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}-key.pem", directory / f"{name}.pem"
    _openssl("req", "-x509", *_EC, "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return key, cert


def _leaf(
    directory: Path, ca: tuple[Path, Path], name: str, usage: str, san: str | None
) -> tuple[Path, Path]:
    key, cert = directory / f"{name}-key.pem", directory / f"{name}.pem"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyAgreement",
             f"extendedKeyUsage={usage}"]  # fmt: skip
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("req", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return key, cert


def make_pki(directory: Path, server_names: Sequence[str] = ("DNS:localhost",)) -> Pki:
    """A fresh PKI in ``directory``; the server certificate names ``server_names`` only (so
    ``127.0.0.1`` does not match it unless listed as ``IP:127.0.0.1``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "aovs-test-ca")
    server_key, server_cert = _leaf(directory, ca, "rabbit-server", "serverAuth",
                                    ",".join(server_names))  # fmt: skip
    client_key, client_cert = _leaf(directory, ca, "aovs-agent", "clientAuth", None)
    _, other = _ca(directory, "unrelated-ca")
    return Pki(ca[1], server_cert, server_key, client_cert, client_key, other)


# -- nodes -----------------------------------------------------------------------------------


@dataclass
class RabbitNode:
    """One private node. ``home`` holds the Erlang cookie (shared by a cluster's nodes)."""

    directory: Path
    home: Path
    tag: str = "t"
    tls: Pki | None = None
    require_client_cert: bool = True
    nodename: str = field(init=False)
    port: int = field(init=False)
    tls_port: int | None = field(init=False)
    dist_port: int = field(init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.nodename = f"aovs-{self.tag}-{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        self.tls_port = free_port() if self.tls is not None else None
        self.dist_port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)

    # -- files and environment ---------------------------------------------------------------

    @property
    def pidfile(self) -> Path:
        return self.directory / "rabbit.pid"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update({
            "HOME": str(self.home),  # the cookie: $HOME/.erlang.cookie, for server and CLI
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.directory / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.pidfile),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })  # fmt: skip
        return env

    def _write_config(self) -> None:
        lines = [f"listeners.tcp.default = 127.0.0.1:{self.port}", "log.console = false",
                 "log.file.level = info"]  # fmt: skip
        if self.tls is not None:
            lines += [
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
                f"ssl_options.cacertfile = {self.tls.ca}",
                f"ssl_options.certfile = {self.tls.server_cert}",
                f"ssl_options.keyfile = {self.tls.server_key}",
                "ssl_options.verify = verify_peer",
                f"ssl_options.fail_if_no_peer_cert = {str(self.require_client_cert).lower()}",
            ]
        (self.directory / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.directory / "advanced.config").write_text("[].\n")
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The Erlang VM's pid (from the node's pid file): ``rabbitmq-server`` runs it as a
        child of a shell wrapper, so the process we started is not the one to signal."""
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            raise RabbitNodeError(f"{self.nodename}: no pid file (not started?)") from None

    def launch(self) -> None:
        """Start the OS process; :meth:`wait_started` waits until RabbitMQ is up."""
        if self.running:
            return
        self._write_config()
        self.pidfile.unlink(missing_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        output = (self.log_dir / "startup.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [_binary("rabbitmq-server")], env=self.env(), stdout=output,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory,
            )  # fmt: skip
        finally:
            output.close()

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.pidfile.exists():
            if not self.running:
                raise RabbitNodeError(f"{self.nodename} exited at start: {self._tail()}")
            if time.monotonic() > deadline:
                raise RabbitNodeError(f"{self.nodename}: no pid file after {timeout:g} s")
            time.sleep(0.1)
        remaining = max(1.0, deadline - time.monotonic())
        self.ctl("wait", str(self.pidfile), "--timeout", str(int(remaining)),
                 timeout=remaining + 10)  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.launch()
        self.wait_started(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """A clean stop (``rabbitmqctl stop``, which waits for the OS process to exit)."""
        if not self.running:
            return
        try:
            self.ctl("stop", str(self.pidfile), timeout=timeout)
        except RabbitNodeError:
            self.kill()
            return
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL to this node's VM and wrapper (a crash; the cluster sees the node vanish)."""
        with contextlib.suppress(RabbitNodeError, ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._reap(10.0)

    def freeze(self) -> None:
        """SIGSTOP: the node stops answering without closing anything (a hung host)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def _reap(self, timeout: float) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(RabbitNodeError, ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # the VM first: the wrapper waits for it
            self._process.kill()
            self._process.wait(10)

    def _tail(self, lines: int = 5) -> str:
        log = self.log_dir / "startup.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    # -- rabbitmqctl ---------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <this node> ARGS``; stdout."""
        try:
            done = subprocess.run(
                [_binary("rabbitmqctl"), "-q", "-n", self.nodename, *args], env=self.env(),
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RabbitNodeError(f"rabbitmqctl {args[0]} on {self.nodename}: timed out") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise RabbitNodeError(
                f"rabbitmqctl {args[0]} on {self.nodename}: "
                f"{message[0] if message else f'exit {done.returncode}'}"
            )
        return done.stdout

    def add_user(self, user: str, password: str, vhost: str = "/") -> None:
        # the password goes on rabbitmqctl's command line: test credentials only
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def join(self, other: RabbitNode) -> None:
        """Make this (running) node a member of ``other``'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", other.nodename)
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60", timeout=90)

    def connections(self) -> list[dict[str, str]]:
        """The client connections this node holds: name, user, peer_port, ssl."""
        out = self.ctl("list_connections", "name", "user", "peer_port", "ssl")
        rows = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0] != "name":
                rows.append(dict(zip(("name", "user", "peer_port", "ssl"), parts, strict=True)))
        return rows

    def address(self, tls: bool = False) -> str:
        port = self.tls_port if tls else self.port
        if port is None:
            raise RabbitNodeError(f"{self.nodename}: no TLS listener")
        return f"localhost:{port}"


def transport_url(
    nodes: Sequence[RabbitNode],
    user: str,
    password: str,
    vhost: str = "/",
    *,
    tls: bool = False,
    query: Mapping[str, str] | None = None,
) -> str:
    """``rabbit://user:pass@localhost:P1,user:pass@localhost:P2/vhost[?query]``."""
    creds = f"{quote(user, safe='')}:{quote(password, safe='')}"
    hosts = ",".join(f"{creds}@{node.address(tls)}" for node in nodes)
    path = "" if vhost == "/" else quote(vhost, safe="")
    tail = "?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items()) if query else ""
    return f"rabbit://{hosts}/{path}{tail}"


def _cookie(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)


@contextlib.contextmanager
def private_cluster(
    directory: Path,
    size: int = 1,
    *,
    tls: Pki | None = None,
    users: Mapping[str, str] | None = None,
    tag: str = "t",
) -> Iterator[list[RabbitNode]]:
    """``size`` private nodes clustered together (started in parallel, then joined to the
    first); each of ``users`` gets full permissions on ``/``. Every node is stopped after."""
    home = directory / "home"
    _cookie(home)
    nodes = [
        RabbitNode(directory / f"node{i}", home, tag=f"{tag}{i}", tls=tls) for i in range(size)
    ]
    try:
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_started()
        for node in nodes[1:]:
            node.join(nodes[0])
        for user, password in (users or {}).items():
            nodes[0].add_user(user, password)
        yield nodes
    finally:
        for node in reversed(nodes):
            with contextlib.suppress(RabbitNodeError, OSError, subprocess.SubprocessError):
                if node.running:
                    node.thaw()  # a frozen node cannot stop
                node.stop(timeout=30)
