"""Test support for taking a hypervisor over from neutron's agent, and giving it back.

- ``NeutronOVSAgent``: neutron 29's own ``neutron-openvswitch-agent`` (from the venv that
  ``tests/neutron/server/install-neutron`` builds) against a private OVS sandbox: its native
  OpenFlow controller on a free 127.0.0.1 port, OVSDB over the sandbox's unix socket, no sudo
  (``root_helper`` empty, every privsep context's ``helper_command`` is the venv's
  ``privsep-helper``: the tests run as root), the openvswitch firewall, physnet1 on br-phys.
  Started in its own session and stopped by that process group: SIGTERM, then SIGKILL after a
  grace period (neutron 29's agent quits its loop at once but can sit for a minute in
  oslo.messaging's shutdown; the flows it leaves are the same either way).
- ``PacketStream``: numbered UDP frames injected on VM ports every few milliseconds through
  ovs-vswitchd's unixctl socket (``netdev-dummy/receive``, no process per packet), while each
  egress interface writes what it transmits to a pcap (``options:tx_pcap``); ``stop()`` says
  which numbers never came out, and when they were sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aovs.sandbox import OVSSandbox

NEUTRON_AGENT = "neutron-openvswitch-agent"
PRIVSEP_SECTIONS = ("privsep", "privsep_ovs_vsctl", "privsep_link", "privsep_conntrack",
                    "privsep_namespace", "privsep_dhcp_release")  # fmt: skip
MAGIC = b"AOVS-SEQ"


def neutron_venv() -> Path | None:
    """The venv with neutron's agent: ``$AOVS_NEUTRON_VENV`` or the newest cached one."""
    explicit = os.environ.get("AOVS_NEUTRON_VENV")
    candidates = [Path(explicit)] if explicit else sorted(
        (Path.home() / ".cache" / "aovs").glob("neutron-venv-*"),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )  # fmt: skip
    for venv in candidates:
        if (venv / "bin" / NEUTRON_AGENT).exists():
            return venv
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_ini(config: Mapping[str, Mapping[str, object]]) -> str:
    lines: list[str] = []
    for section, options in config.items():
        lines.append(f"[{section}]")
        lines += [f"{name} = {value}" for name, value in options.items()]
        lines.append("")
    return "\n".join(lines)


class NeutronOVSAgent:
    """neutron's agent on ``sandbox`` as ``host``; ``directory`` holds its configs and logs.

    The bridges' datapath_type is ``system`` (neutron's default; the sandbox runs
    ``--enable-dummy=override``, which makes it the dummy datapath): aovs must use the same
    value, as changing a bridge's datapath_type re-creates it (and drops its flows)."""

    def __init__(
        self,
        venv: Path,
        sandbox: OVSSandbox,
        directory: Path,
        *,
        host: str,
        transport_url: str,
        physical_bridge: str = "br-phys",
        report_interval: float = 2.0,
    ) -> None:
        self.venv = venv
        self.sandbox = sandbox
        self.directory = directory
        self.host = host
        self.transport_url = transport_url
        self.physical_bridge = physical_bridge
        self.report_interval = report_interval
        self.of_port = 0
        self.popen: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def log(self) -> Path:
        return self.directory / "neutron-openvswitch-agent.log"

    @property
    def config_files(self) -> list[Path]:
        return [self.directory / "neutron.conf", self.directory / "openvswitch_agent.ini"]

    def write_config(self) -> None:
        for sub in ("state", "lock"):
            (self.directory / sub).mkdir(exist_ok=True)
        helper = " ".join([str(self.venv / "bin" / "privsep-helper"),
                           *(f"--config-file {path}" for path in self.config_files)])  # fmt: skip
        neutron: dict[str, dict[str, object]] = {
            "DEFAULT": {
                "host": self.host,
                "transport_url": self.transport_url,
                "state_path": self.directory / "state",
                "debug": "true",
                "log_file": self.log,
                "use_stderr": "false",
                "graceful_shutdown_timeout": 5,
            },
            "oslo_concurrency": {"lock_path": self.directory / "lock"},
            "agent": {"root_helper": ""},  # root already: no sudo (not installed here)
            **{section: {"helper_command": helper} for section in PRIVSEP_SECTIONS},
        }
        self.of_port = free_port()
        ini: dict[str, dict[str, object]] = {
            "ovs": {
                "integration_bridge": "br-int",
                "bridge_mappings": f"physnet1:{self.physical_bridge}",
                "ovsdb_connection": self.sandbox.ovsdb_connection,
                "of_listen_address": "127.0.0.1",
                "of_listen_port": self.of_port,
                "datapath_type": "system",
            },
            "agent": {"tunnel_types": "", "report_interval": self.report_interval},
            "securitygroup": {"firewall_driver": "openvswitch", "enable_security_group": "true"},
        }
        self.config_files[0].write_text(render_ini(neutron))
        self.config_files[1].write_text(render_ini(ini))

    def start(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            raise RuntimeError("neutron's agent is already running")
        self.write_config()
        argv = [str(self.venv / "bin" / NEUTRON_AGENT)]
        for path in self.config_files:
            argv += ["--config-file", str(path)]
        env = {k: v for k, v in self.sandbox.env.items()  # ovs-appctl & co reach the sandbox
               if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}  # fmt: skip
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        with (self.directory / "stdout.log").open("ab") as out:
            self.popen = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.directory,
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> float:
        """SIGTERM to the agent, SIGKILL to its process group after ``grace`` s (its privsep
        daemons go with it); the seconds it took. The agent alone gets the SIGTERM: its
        privsep daemons dying first would make it log errors on the way out."""
        started = time.monotonic()
        if self.popen is None:
            return 0.0
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.popen.wait(timeout=10.0)
        self._signal(signal.SIGKILL)  # privsep daemons and other children of the group
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL (a crash, or an operator who does not wait): the flows stay as they are."""
        if self.popen is not None:
            self._signal(signal.SIGKILL)
            self.popen.wait(timeout=10.0)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def errors(self, ignore: Sequence[str] = ()) -> list[str]:
        """ERROR/CRITICAL lines of its log (a traceback's lines each carry the level), but
        those of the loggers in ``ignore``."""
        level = re.compile(r"^\S+ \S+ \d+ (ERROR|CRITICAL) (\S+)")
        found = []
        for line in self.log_text().splitlines():
            match = level.match(line)
            if match and not match[2].startswith(tuple(ignore)):
                found.append(line)
        return found


# -- packets --------------------------------------------------------------------------------
class Unixctl:
    """ovs-vswitchd's unixctl (JSON-RPC 1.0 on its ``.ctl`` socket), blocking, one caller."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(str(path))
        self._ids = 0
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def call(self, method: str, *params: str) -> str:
        self._ids += 1
        request = {"method": method, "params": list(params), "id": self._ids}
        self.sock.sendall(json.dumps(request).encode())
        while True:
            text = self._buffer.lstrip()
            if text:
                try:
                    reply, end = self._decoder.raw_decode(text)
                except ValueError:
                    pass
                else:
                    self._buffer = text[end:]
                    if reply.get("error") is not None:
                        raise RuntimeError(f"{method} {params}: {reply['error']}")
                    return str(reply.get("result") or "")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("ovs-vswitchd closed its unixctl socket")
            self._buffer += chunk.decode()

    def close(self) -> None:
        self.sock.close()


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, path: int, seq: int) -> bytes:
    """Ethernet + IPv4 (valid checksum: userspace conntrack checks it) + UDP (no checksum)
    carrying MAGIC, the path number and the sequence number."""
    payload = MAGIC + struct.pack("!BI", path, seq) + bytes(13)
    udp = struct.pack("!HHHH", 40000 + path, 5001, 8 + len(payload), 0) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xFFFF, 0x4000, 64, 17,
                       0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))  # fmt: skip
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + head + udp


def pcap_sequences(path: Path) -> list[tuple[int, int]]:
    """(path, seq) of every numbered frame in a pcap (as netdev-dummy writes it: little-endian,
    16-byte record headers), VLAN-tagged or not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    found: list[tuple[int, int]] = []
    offset = 24
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        offset += 16
        if offset + length > len(data):
            break  # a record being written
        frame = data[offset : offset + length]
        offset += length
        at = frame.find(MAGIC)
        if at >= 0 and at + len(MAGIC) + 5 <= len(frame):
            found.append(struct.unpack_from("!BI", frame, at + len(MAGIC)))
    return found


@dataclass(frozen=True)
class Flowing:
    """Frames from ``ingress`` (a dummy interface) that must come out of ``egress``."""

    name: str
    ingress: str
    egress: str
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str


@dataclass
class PathResult:
    name: str
    sent: int
    received: int
    lost: list[int]  # sequence numbers
    lost_at: list[float]  # when each lost one was sent (seconds since the stream started)
    duplicates: int

    def summary(self) -> str:
        if not self.lost:
            return f"{self.name}: {self.received}/{self.sent} delivered, none lost"
        return (f"{self.name}: {self.received}/{self.sent} delivered, {len(self.lost)} lost, "
                f"sent between {self.lost_at[0]:.3f} s and {self.lost_at[-1]:.3f} s")  # fmt: skip


@dataclass
class StreamResult:
    paths: list[PathResult]
    marks: list[tuple[float, str]]  # (seconds since start, what happened)
    interval_ms: float  # the achieved mean gap between rounds

    @property
    def lost(self) -> int:
        return sum(len(p.lost) for p in self.paths)

    def report(self) -> str:
        lines = [p.summary() for p in self.paths]
        lines += [f"  at {when:.3f} s: {what}" for when, what in self.marks]
        lines.append(f"  one frame per path every {self.interval_ms:.2f} ms")
        return "\n".join(lines)


@dataclass
class PacketStream:
    """Inject numbered frames on every path, one round every ``interval`` s, in a thread."""

    sandbox: OVSSandbox
    paths: Sequence[Flowing]
    interval: float = 0.003
    sent: list[list[float]] = field(default_factory=list)  # per path: send time of each seq
    marks: list[tuple[float, str]] = field(default_factory=list)
    _pcaps: dict[str, Path] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: float = 0.0
    _error: BaseException | None = None
    _dups: dict[int, int] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        for egress in {p.egress for p in self.paths}:
            pcap = self.sandbox.directory / f"{egress}-{time.monotonic_ns()}.pcap"
            self.sandbox.vsctl("set", "Interface", egress, f"options:tx_pcap={pcap}")
            self._pcaps[egress] = pcap
        self.sent = [[] for _ in self.paths]
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="packet-stream", daemon=True)
        self._thread.start()

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic() - self._started, what))

    def _run(self) -> None:
        ctl = Unixctl(self.sandbox.directory / "ovs-vswitchd.ctl")

        def frame(n: int, seq: int) -> str:
            p = self.paths[n]
            return udp_frame(p.src_mac, p.dst_mac, p.src_ip, p.dst_ip, n, seq).hex()

        try:
            seq = 0
            next_round = time.monotonic()
            while not self._stop.is_set():
                for n, path in enumerate(self.paths):
                    ctl.call("netdev-dummy/receive", path.ingress, frame(n, seq))
                    self.sent[n].append(time.monotonic() - self._started)
                seq += 1
                next_round += self.interval
                delay = next_round - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_round = time.monotonic()  # behind (a busy machine): no burst to catch up
        except BaseException as exc:  # reported by stop()
            self._error = exc
        finally:
            ctl.close()

    def stop(self, settle: float = 5.0) -> StreamResult:
        """Stop injecting; wait (up to ``settle`` s) until the last frame of every path came
        out or nothing more arrives; what was lost."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30.0)
        if self._error is not None:
            raise RuntimeError(f"the packet stream failed: {self._error!r}") from self._error
        deadline = time.monotonic() + settle
        last = -1
        while time.monotonic() < deadline:
            got = self._received()
            count = sum(len(v) for v in got.values())
            if all(len(self.sent[n]) - 1 in got[n] for n in range(len(self.paths))):
                break
            if count == last:
                time.sleep(0.2)  # one more look, then give up on a path that lost its tail
                if sum(len(v) for v in self._received().values()) == count:
                    break
            last = count
            time.sleep(0.1)
        got = self._received()
        results = []
        for n, path in enumerate(self.paths):
            times = self.sent[n]
            seen = got[n]
            lost = [seq for seq in range(len(times)) if seq not in seen]
            results.append(PathResult(path.name, len(times), len(seen), lost,
                                      [times[seq] for seq in lost], self._dups[n]))  # fmt: skip
        rounds = max((len(t) for t in self.sent), default=0)
        span = max((t[-1] for t in self.sent if t), default=0.0)
        return StreamResult(results, self.marks, 1e3 * span / max(rounds - 1, 1))

    def _received(self) -> dict[int, set[int]]:
        got: dict[int, set[int]] = {n: set() for n in range(len(self.paths))}
        self._dups = {n: 0 for n in range(len(self.paths))}
        for n, path in enumerate(self.paths):
            for number, seq in pcap_sequences(self._pcaps[path.egress]):
                if number == n:
                    if seq in got[n]:
                        self._dups[n] += 1
                    got[n].add(seq)
        return got


@contextlib.contextmanager
def streaming(sandbox: OVSSandbox, paths: Sequence[Flowing], interval: float = 0.003
              ) -> Iterator[PacketStream]:  # fmt: skip
    """A started PacketStream, stopped on the way out if the block did not (on an error)."""
    stream = PacketStream(sandbox, paths, interval)
    stream.start()
    try:
        yield stream
    finally:
        if not stream.stopped:
            with contextlib.suppress(Exception):
                stream.stop(settle=0.0)


def ports_with_neutron_metadata(sandbox: OVSSandbox) -> dict[str, dict[str, Any]]:
    """Port name -> {"tag": ..., "other_config": {...}} for ports neutron's metadata is on."""
    out = sandbox.vsctl("--format=json", "--columns=name,tag,other_config", "list", "Port")
    table = json.loads(out)
    rows: dict[str, dict[str, Any]] = {}
    for name, tag, other in table["data"]:
        config = dict(other[1])
        if "net_uuid" in config:
            rows[name] = {"tag": tag if isinstance(tag, int) else None, "other_config": config}
    return rows
