"""``python -m benchmarks.bench_hosts``: many hypervisors on one RabbitMQ (``make bench-hosts``).

One neutron-server simulator (in this process) on a fresh vhost of the broker at
127.0.0.1:5672, and ``--hosts`` aovs agents, each its own process with its own private OVS
sandbox, ``host``, state directory and tunnelling IP, ``--ports`` VM ports each, on networks
every host shares (vlan and vxlan: the vxlan tunnels form between the hosts' IPs through
tunnel_sync), the openvswitch firewall, every port in one security group whose ingress rule
names the group itself. Once every port is reported up, it times, from the server's fanout
notification to the last host's switch holding the right flows (asked of each switch over
OpenFlow, then checked in ``ovs-ofctl dump-flows``):

* rule: a tcp rule added to (and removed from) the shared group: table 82 flows on every port;
* member: a port joining (and leaving) the group on one host: its address's remote-group
  flows on every host;

and counts the broker messages of each change (see ``hosts_plan.message_delta``). Writes
benchmarks/results/hosts.json and hosts.md (``--hosts 20 --ports 50``, the target's size) or
hosts-<H>x<P>.* for another size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from aovs.pipelines import tables
from aovs.rpc.amqp import RpcTransport
from aovs.sandbox import OVSSandbox
from aovs.testing.cloud import CloudSecurityGroup
from aovs.testing.simulator import NeutronServerSimulator
from benchmarks.hosts_plan import (
    REFERENCE_MEMBER_IP,
    REFERENCE_RULE_PORT,
    SHARED_GROUP,
    HostPort,
    MessageCounts,
    Repetition,
    added_rule,
    base_rules,
    build_world,
    busy_jiffies,
    cpu_delta,
    fanout_queue_counts,
    host_name,
    mean_cpu,
    member_ip,
    member_port,
    message_delta,
    network_ids,
    publish_kind,
    summarize,
    tunnel_ip,
)
from benchmarks.suite.__main__ import git_commit, machine
from benchmarks.suite.agent_process import AgentProcess, AgentSettings
from benchmarks.suite.dataplane import FlowWatch
from benchmarks.suite.usage import Usage, read_usage, sample_pidfile
from benchmarks.suite.world import WorldError, bridge_args, ofctl, transaction, vsctl

RESULTS = Path(__file__).resolve().parent / "results"
RABBIT = "127.0.0.1:5672"
TARGET_SECONDS = 2.0
INTEGRATION_BRIDGE = "br-int"
IPV4 = 0x0800
TCP = 6
LoadSample = tuple[float, int, int, dict[str, float]]  # see Bench.load_sample
QUIET_SECONDS = 1.0  # a change's messages are counted until none came for this long


def note(text: str) -> None:
    print(f"[bench-hosts {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout  # fmt: skip


def broker_pid() -> int | None:
    """The process listening on the broker's port (its CPU is part of every change's cost)."""
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{RABBIT.rpartition(':')[2]}"],
                             capture_output=True, text=True, timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


@dataclass
class Host:
    index: int
    sandbox: OVSSandbox
    vms: list[HostPort]
    agent: AgentProcess | None = None
    watch: FlowWatch | None = None
    ofports: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return host_name(self.index)

    async def count(self, table: int, **match: Any) -> int | None:
        assert self.watch is not None
        return await self.watch.count(INTEGRATION_BRIDGE, table, **match)

    def pids(self) -> list[int]:
        pids = [self.agent.pid] if self.agent is not None and self.agent.alive else []
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.sandbox.directory / f"{daemon}.pid").read_text()))
        return pids


def plug_args(vm: HostPort) -> list[str]:
    """``add-port`` as libvirt runs it."""
    return ["add-port", INTEGRATION_BRIDGE, vm.tap, "--", "set", "Interface", vm.tap,
            "type=dummy", f"external_ids:iface-id={vm.port_id}",
            f"external_ids:attached-mac={vm.mac}", "external_ids:iface-status=active",
            f"external_ids:vm-uuid=vm-{vm.port_id[:8]}"]  # fmt: skip


class CountingTransport(RpcTransport):
    """The simulator's transport, counting what it publishes by kind (reply, fanout, cast)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.published: Counter[str] = Counter()

    async def _publish(self, session: Any, exchange: Any, routing_key: str, body: bytes,
                       *, expiration: float | None = None) -> None:  # fmt: skip
        await super()._publish(session, exchange, routing_key, body, expiration=expiration)
        kind = publish_kind(str(getattr(exchange, "name", "") or ""), routing_key)
        self.published[kind] += 1


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="aovs-hosts-", dir="/tmp"))
        self.cloud, vms = build_world(args.hosts, args.ports, args.networks)
        self.hosts = [
            Host(index, OVSSandbox(self.workdir / f"h{index:02d}" / "ovs"),
                 [vm for vm in vms if vm.host_index == index])
            for index in range(args.hosts)
        ]  # fmt: skip
        self.vhost = f"aovs-hosts-{uuid.uuid4().hex[:8]}"
        self.transport_url = f"rabbit://guest:guest@{RABBIT}/{self.vhost}"
        self.transport: CountingTransport | None = None
        self.sim: NeutronServerSimulator | None = None
        self.vhost_created = False
        self.doc: dict[str, Any] = {}
        self.broker_pid = broker_pid()

    # ---- set-up and tear-down ----------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", self.vhost)
        self.vhost_created = True
        await asyncio.to_thread(
            _rabbitmqctl, "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"
        )
        self.transport = CountingTransport(self.transport_url)
        self.sim = NeutronServerSimulator(self.cloud, transport=self.transport)
        await self.transport.start()
        await self.sim.start()
        note(f"simulator up on vhost {self.vhost}; starting {len(self.hosts)} OVS sandboxes")
        for host in self.hosts:
            await asyncio.to_thread(host.sandbox.start, ("br-phys",))
            await vsctl(host.sandbox, *bridge_args(INTEGRATION_BRIDGE))
            await vsctl(host.sandbox, *transaction(plug_args(vm) for vm in host.vms), within=300)
        note(f"{sum(len(h.vms) for h in self.hosts)} VM ports plugged; starting the agents")
        for host in self.hosts:
            settings = AgentSettings(
                host=host.name,
                transport_url=self.transport_url,
                ovsdb_connection=host.sandbox.ovsdb_connection,
                state_path=host.sandbox.directory.parent / "state",
                tunnel_types=("vxlan",),
                local_ip=tunnel_ip(host.index),
                rpc_response_timeout=60.0,
                rpc_response_max_timeout=120.0,
            )
            host.agent = AgentProcess(settings, host.sandbox.directory.parent, "agent")
            await host.agent.start()

    async def close(self) -> None:
        agents = [h.agent for h in self.hosts if h.agent is not None]
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
        for host in self.hosts:
            if host.watch is not None:
                with contextlib.suppress(Exception):
                    await host.watch.close()
        if self.sim is not None:
            with contextlib.suppress(Exception):
                await self.sim.stop()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()
        for host in self.hosts:
            with contextlib.suppress(Exception):
                if self.args.keep:
                    host.sandbox.stop()
                else:
                    host.sandbox.remove()
        if self.vhost_created:
            with contextlib.suppress(Exception):
                _rabbitmqctl("delete_vhost", self.vhost)
        if self.args.keep:
            note(f"kept {self.workdir} (agent logs: h*/agent.log)")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def check_agents(self) -> None:
        for host in self.hosts:
            if host.agent is not None:
                host.agent.check_alive()

    # ---- waiting ------------------------------------------------------------------------------

    async def wait_all_up(self) -> float:
        assert self.sim is not None
        wanted = {vm.port_id for h in self.hosts for vm in h.vms}
        started = time.monotonic()
        deadline = started + self.args.timeout
        last = 0.0
        while True:
            up = wanted & set(self.sim.device_up_reports)
            now = time.monotonic()
            if len(up) == len(wanted):
                return now - started
            self.check_agents()
            if now > deadline:
                raise TimeoutError(f"{len(wanted) - len(up)} ports not reported up in time")
            if now - last >= 5:
                note(f"boot: {len(up)}/{len(wanted)} ports reported up ({now - started:.0f} s)")
                last = now
            await asyncio.sleep(0.1)

    async def wait_stable(self, what: str, read: Callable[[Host], Awaitable[int | None]],
                          positive: bool = True) -> dict[str, int]:  # fmt: skip
        """Each host's value once it reads the same twice 1 s apart (and > 0 if ``positive``)."""
        deadline = time.monotonic() + self.args.timeout
        previous: dict[str, int | None] = {}
        while True:
            now_values = {h.name: await read(h) for h in self.hosts}
            settled = {
                name: value for name, value in now_values.items()
                if value is not None and value == previous.get(name) and (value > 0 or not positive)
            }  # fmt: skip
            if len(settled) == len(self.hosts):
                return settled
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what}: not settled on {sorted(set(now_values) - set(settled))}"
                )
            previous = now_values
            await asyncio.sleep(1.0)

    async def converge(self, kind: str, notify: Callable[[], Awaitable[None]],
                       done: Callable[[Host], Awaitable[bool]]) -> Repetition:  # fmt: skip
        """Send the notification, then poll every host not yet correct each poll interval."""
        converged: dict[str, float | None] = {h.name: None for h in self.hosts}
        notified_at = time.monotonic()
        await notify()
        deadline = notified_at + self.args.change_timeout

        async def poll(host: Host) -> None:
            while time.monotonic() < deadline:
                if await done(host):
                    converged[host.name] = time.monotonic()
                    return
                await asyncio.sleep(self.args.poll_interval)

        await asyncio.gather(*(poll(h) for h in self.hosts))
        return Repetition(kind, notified_at, converged)

    async def quiet(self) -> None:
        """Until no message went either way for QUIET_SECONDS (at most 30 s)."""
        deadline = time.monotonic() + 30
        last = self.snapshot()
        since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = self.snapshot()
            if now.received != last.received or now.published != last.published:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= QUIET_SECONDS:
                return

    def snapshot(self) -> MessageCounts:
        assert self.sim is not None and self.transport is not None
        return MessageCounts(Counter(self.sim.calls), Counter(self.transport.published))

    # ---- verification by dump ----------------------------------------------------------------

    async def dump_rules(self, host: Host) -> list[str]:
        out = await ofctl(host.sandbox, "dump-flows", "--no-stats", INTEGRATION_BRIDGE,
                          f"table={tables.RULES_INGRESS_TABLE}")  # fmt: skip
        return [line.strip() for line in out.splitlines() if "table=" in line]

    async def verify_rule(self, host: Host, port: int, present: bool) -> str | None:
        """None when the dump agrees: every VM port (reg5=ofport) has a flow for tcp/port,
        or none has one."""
        pattern = re.compile(rf"tp_dst={port}(?![\d/])")
        lines = [line for line in await self.dump_rules(host) if pattern.search(line)]
        if not present:
            return None if not lines else f"{host.name}: {len(lines)} tcp/{port} flows left"
        reg5 = [re.search(r"reg5=0x([0-9a-f]+)", line) for line in lines]
        ports = {int(match.group(1), 16) for match in reg5 if match}
        missing = [vm.tap for vm in host.vms if host.ofports.get(vm.tap) not in ports]
        return f"{host.name}: no tcp/{port} flow for {missing[:3]}" if missing else None

    async def verify_member(self, host: Host, ip: str, expected: int) -> str | None:
        pattern = re.compile(rf"nw_src={re.escape(ip)}(?![\d/])")
        found = sum(1 for line in await self.dump_rules(host) if pattern.search(line))
        return (
            None if found == expected else f"{host.name}: {found} flows from {ip}, not {expected}"
        )

    async def verify(self, checks: Sequence[Awaitable[str | None]]) -> list[str]:
        return [problem for problem in await asyncio.gather(*checks) if problem]

    # ---- the measurements --------------------------------------------------------------------

    async def run(self) -> None:
        args = self.args
        assert self.sim is not None
        self.doc["boot_seconds"] = round(await self.wait_all_up(), 2)
        note(f"all {args.hosts * args.ports} ports reported up in {self.doc['boot_seconds']} s")
        for host in self.hosts:
            host.watch = FlowWatch(host.sandbox, [INTEGRATION_BRIDGE])
            await host.watch.start()
            names = await vsctl(host.sandbox, "--format=json", "--columns=name,ofport", "list",
                                "Interface")  # fmt: skip
            rows = json.loads(names)["data"]
            host.ofports = {str(n): p for n, p in rows if isinstance(p, int)}
        rule_targets = await self.wait_stable(
            "tcp/22 flows",
            lambda h: h.count(tables.RULES_INGRESS_TABLE, eth_type=IPV4, ip_proto=TCP,
                              tcp_dst=REFERENCE_RULE_PORT),
        )  # fmt: skip
        member_targets = await self.wait_stable(
            "reference member flows",
            lambda h: h.count(tables.RULES_INGRESS_TABLE, eth_type=IPV4,
                              ipv4_src=REFERENCE_MEMBER_IP),
        )  # fmt: skip
        self.doc["flows_per_host"] = {
            "tcp22_rule_flows": rule_targets, "one_member_address_flows": member_targets,
        }  # fmt: skip
        self.doc["tunnels"] = await self.tunnel_facts()
        bindings = await asyncio.to_thread(
            _rabbitmqctl, "list_bindings", "-p", self.vhost, "source_name", "destination_name"
        )
        fanout_queues = fanout_queue_counts(bindings)
        self.doc["fanout_queues"] = fanout_queues
        note(f"steady: tcp/22 flows per host {sorted(set(rule_targets.values()))}, one member "
             f"address {sorted(set(member_targets.values()))} flows; tunnels "
             f"{self.doc['tunnels']['vxlan_ports_per_host']}")  # fmt: skip
        usage_before = self.usage()
        load_before = self.load_sample()
        rule_reps: list[Repetition] = []
        member_reps: list[Repetition] = []
        messages: dict[str, list[dict[str, object]]] = {
            "rule_add": [], "rule_remove": [], "member_add": [], "member_remove": []
        }  # fmt: skip
        problems: list[str] = []
        for rep in range(args.repetitions):
            for present in (True, False):
                result, delta, found = await self.rule_change(rep, present, rule_targets,
                                                              fanout_queues)  # fmt: skip
                rule_reps.append(result)
                messages["rule_add" if present else "rule_remove"].append(delta)
                problems += found
                note(
                    f"rule {'add' if present else 'remove'} {rep + 1}/{args.repetitions}: "
                    f"{_fmt(result.seconds)} (spread {_fmt(result.spread)}), "
                    f"{delta['published']} published / {delta['delivered']} delivered"
                )
        for rep in range(args.repetitions):
            for present in (True, False):
                result, delta, found = await self.member_change(rep, present, member_targets,
                                                                fanout_queues)  # fmt: skip
                member_reps.append(result)
                messages["member_add" if present else "member_remove"].append(delta)
                problems += found
                note(f"member {'add' if present else 'remove'} {rep + 1}/{args.repetitions} "
                     f"(on {host_name(rep % args.hosts)}): {_fmt(result.seconds)} "
                     f"(spread {_fmt(result.spread)}), {delta['published']} published / "
                     f"{delta['delivered']} delivered")  # fmt: skip
        self.doc["load_during_measurements"] = self.load_between(load_before, self.load_sample())
        self.doc["agents"] = self.agent_rows(usage_before)
        self.doc["rule_change"] = {
            "summary": summarize(rule_reps, TARGET_SECONDS),
            "by_kind": _by_kind(rule_reps),
            "repetitions": [_rep_row(r) for r in rule_reps],
        }
        self.doc["membership_change"] = {
            "summary": summarize(member_reps, TARGET_SECONDS),
            "by_kind": _by_kind(member_reps),
            "repetitions": [_rep_row(r) for r in member_reps],
        }
        self.doc["messages"] = {kind: _message_summary(rows) for kind, rows in messages.items()}
        joined = self.doc["messages"]["member_add"]
        self.doc["messages_per_port_change"] = {
            "what": "a port created in the shared group (security_groups_member_updated fanout), "
            "then plugged on its host and wired (details, SG info, update_device_list), until "
            f"{QUIET_SECONDS} s without a message; state reports left out",
            "published": joined["published_max"],
            "delivered": joined["delivered_max"],
        }
        self.doc["verification_problems"] = problems
        self.doc["agent_errors"] = {
            h.name: h.agent.read_log().errors[:5]
            for h in self.hosts if h.agent is not None and h.agent.read_log().errors
        }  # fmt: skip

    async def rule_change(
        self, rep: int, present: bool, targets: dict[str, int], fanout_queues: dict[str, int]
    ) -> tuple[Repetition, dict[str, object], list[str]]:
        assert self.sim is not None
        sim = self.sim
        rule = added_rule(rep)
        port = rule.port_range_min
        assert port is not None
        rules = base_rules() + ((rule,) if present else ())
        before, cpu_before = self.snapshot(), self.cpu_totals()
        sim.security_groups[SHARED_GROUP] = CloudSecurityGroup(rules=rules)

        async def done(host: Host) -> bool:
            got = await host.count(tables.RULES_INGRESS_TABLE, eth_type=IPV4, ip_proto=TCP,
                                   tcp_dst=port)  # fmt: skip
            return got == (targets[host.name] if present else 0)

        result = await self.converge(
            "rule_add" if present else "rule_remove",
            lambda: sim.notify_security_groups_rule_updated([SHARED_GROUP]),
            done,
        )
        problems = await self.verify([self.verify_rule(h, port, present) for h in self.hosts])
        await self.quiet()
        self.check_agents()
        delta = message_delta(before, self.snapshot(), fanout_queues)
        delta["cpu_seconds"] = cpu_delta(cpu_before, self.cpu_totals())
        return result, delta, problems

    async def member_change(
        self, rep: int, present: bool, targets: dict[str, int], fanout_queues: dict[str, int]
    ) -> tuple[Repetition, dict[str, object], list[str]]:
        """Joining: the port is created (member_updated fanout: timed), then plugged on its host
        and wired (counted, not timed). Leaving: member_updated (timed), port_delete, unplug."""
        assert self.sim is not None
        sim = self.sim
        host = self.hosts[rep % len(self.hosts)]
        ip = member_ip(rep)
        port = member_port(rep, host.index, network_ids(self.args.networks)[0], ip)
        vm = HostPort(host.index, port.port_id, f"tapm{port.port_id[:10]}", port.mac_address)
        before, cpu_before = self.snapshot(), self.cpu_totals()
        reports = len(sim.device_list_reports)
        if present:
            sim.add_port(port)
        else:
            sim.remove_port(port.port_id)

        async def done(h: Host) -> bool:
            got = await h.count(tables.RULES_INGRESS_TABLE, eth_type=IPV4, ipv4_src=ip)
            return got == (targets[h.name] if present else 0)

        result = await self.converge(
            "member_add" if present else "member_remove",
            lambda: sim.notify_security_groups_member_updated([SHARED_GROUP]),
            done,
        )
        problems = await self.verify(
            [self.verify_member(h, ip, targets[h.name] if present else 0) for h in self.hosts]
        )
        if present:
            await vsctl(host.sandbox, *plug_args(vm))
            if not await self.reported(reports, port.port_id, up=True):
                problems.append(f"{host.name}: member port {port.port_id} never reported up")
        else:
            await sim.notify_port_delete(port.port_id)
            await vsctl(host.sandbox, "--if-exists", "del-port", INTEGRATION_BRIDGE, vm.tap)
            if not await self.reported(reports, port.port_id, up=False):
                problems.append(f"{host.name}: member port {port.port_id} never reported down")
        await self.quiet()
        self.check_agents()
        delta = message_delta(before, self.snapshot(), fanout_queues)
        delta["cpu_seconds"] = cpu_delta(cpu_before, self.cpu_totals())
        return result, delta, problems

    async def reported(self, since: int, port_id: str, up: bool, within: float = 60.0) -> bool:
        assert self.sim is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for report in self.sim.device_list_reports[since:]:
                if port_id in (report.devices_up if up else report.devices_down):
                    return True
            await asyncio.sleep(0.02)
        return False

    # ---- facts ----------------------------------------------------------------------------------

    async def tunnel_facts(self, within: float = 60.0) -> dict[str, object]:
        """The vxlan mesh: each host's br-tun should hold a port to every other host."""
        deadline = time.monotonic() + within
        while True:
            counts = {}
            for host in self.hosts:
                try:
                    ports = (await vsctl(host.sandbox, "list-ports", "br-tun")).split()
                except WorldError:
                    ports = []  # no br-tun (yet)
                counts[host.name] = sum(1 for p in ports if p.startswith("vxlan-"))
            complete = all(n == len(self.hosts) - 1 for n in counts.values())
            if complete or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        short = {name: n for name, n in counts.items() if n != len(self.hosts) - 1}
        return {
            "vxlan_ports_per_host": sorted(set(counts.values())),
            "expected_per_host": len(self.hosts) - 1,
            "complete_mesh": complete,
            "hosts_not_meshed": short,
        }

    def usage(self) -> dict[str, Usage | None]:
        return {h.name: h.agent.usage() if h.agent is not None else None for h in self.hosts}

    def agent_rows(self, before: dict[str, Usage | None]) -> dict[str, object]:
        rows: dict[str, dict[str, float | None] | None] = {}
        rss, cpu = [], []
        for name, now in self.usage().items():
            then = before.get(name)
            if now is None:
                rows[name] = None
                continue
            rss.append(now.rss_mb)
            cpu.append(now.cpu_seconds)
            measuring = None if then is None else round(now.cpu_seconds - then.cpu_seconds, 2)
            rows[name] = {"rss_mb": round(now.rss_mb, 1), "peak_rss_mb": round(now.peak_rss_mb, 1),
                          "cpu_seconds_total": round(now.cpu_seconds, 2),
                          "cpu_seconds_measuring": measuring}  # fmt: skip
        switches = [sample_pidfile(h.sandbox.directory / "ovs-vswitchd.pid") for h in self.hosts]
        return {
            "per_host": rows,
            "max_rss_mb": round(max(rss), 1) if rss else None,
            "sum_rss_mb": round(sum(rss), 1),
            "sum_cpu_seconds_total": round(sum(cpu), 2),
            "vswitchd_cpu_seconds_total": round(sum(s.cpu_seconds for s in switches if s), 2),
            "bench_process_rss_mb": round(read_usage(os.getpid()).rss_mb, 1),
        }

    def cpu_totals(self) -> dict[str, float]:
        """CPU seconds so far of the agents, the OVS daemons, this process and the broker."""
        totals = {"agents": 0.0, "ovs": 0.0, "bench_and_simulator": 0.0, "broker": 0.0}
        groups: list[tuple[str, list[int]]] = [("bench_and_simulator", [os.getpid()])]
        groups += [("broker", [self.broker_pid] if self.broker_pid else [])]
        for host in self.hosts:
            pids = host.pids()
            agent = host.agent.pid if host.agent is not None and host.agent.alive else None
            groups += [("agents", [p for p in pids if p == agent]),
                       ("ovs", [p for p in pids if p != agent])]  # fmt: skip
        for name, pids in groups:
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):
                    totals[name] += read_usage(pid).cpu_seconds
        return totals

    def load_sample(self) -> LoadSample:
        """(monotonic, machine busy and total jiffies, ``cpu_totals``)."""
        busy, total = busy_jiffies(Path("/proc/stat").read_text())
        return time.monotonic(), busy, total, self.cpu_totals()

    def load_between(self, before: LoadSample, after: LoadSample) -> dict[str, object]:
        """How busy the machine was, and with what: this bench's processes (the broker apart:
        other work on the machine uses it too) and everything else."""
        wall = max(after[0] - before[0], 1e-9)
        cpus = os.cpu_count() or 1
        busy_fraction = (after[1] - before[1]) / max(1, after[2] - before[2])
        spent = cpu_delta(before[3], after[3])
        broker = spent.pop("broker", 0.0) / wall / cpus
        ours = sum(spent.values()) / wall / cpus
        return {
            "wall_seconds": round(wall, 1),
            "machine_busy_fraction": round(busy_fraction, 3),
            "this_bench_fraction": round(ours, 3),
            "broker_fraction": round(broker, 3),
            "others_fraction": round(max(0.0, busy_fraction - ours - broker), 3),
            "loadavg_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        }


def _fmt(seconds: float | None) -> str:
    return "NOT CONVERGED" if seconds is None else f"{seconds:.3f} s"


def _by_kind(reps: Sequence[Repetition]) -> dict[str, object]:
    kinds = sorted({r.kind for r in reps})
    return {kind: summarize([r for r in reps if r.kind == kind], TARGET_SECONDS) for kind in kinds}


def _rep_row(rep: Repetition) -> dict[str, object]:
    return {"kind": rep.kind, "seconds": rep.seconds, "spread_s": rep.spread,
            "per_host_s": rep.per_host()}  # fmt: skip


def _message_summary(rows: list[dict[str, object]]) -> dict[str, object]:
    """Messages of each repetition of one kind of change, and its mean CPU seconds."""
    costs = [cost for r in rows if isinstance(cost := r.get("cpu_seconds"), dict)]
    published = [int(str(r["published"])) for r in rows]
    delivered = [int(str(r["delivered"])) for r in rows]
    return {
        "published": published,
        "delivered": delivered,
        "published_max": max(published, default=None),
        "delivered_max": max(delivered, default=None),
        "first": rows[0] if rows else None,
        "mean_cpu_seconds": mean_cpu(costs),
    }


def render_md(doc: dict[str, Any]) -> str:
    rule = doc.get("rule_change", {}).get("summary", {})
    member = doc.get("membership_change", {}).get("summary", {})
    msgs = doc.get("messages", {})
    agents = doc.get("agents", {})
    load = doc.get("load_during_measurements", {})

    def row(name: str, s: dict[str, Any]) -> str:
        met = "yes" if s.get("met") else "no"
        return (f"| {name} | {s.get('p50_s')} | {s.get('max_s')} | {s.get('max_spread_s')} | "
                f"{s.get('incomplete')}/{s.get('repetitions')} | {met} |")  # fmt: skip

    lines = [
        f"# Many hypervisors: {doc['hosts']} agents x {doc['ports_per_host']} ports, one broker",
        "",
        f"`{doc['command']}` at {doc['started']}, commit {doc['commit']}; machine "
        f"{doc['machine']['cpus']} CPUs ({doc['machine']['model']}), load average at start "
        f"{doc['machine']['loadavg']}.",
        "",
        f"Boot: all {doc['hosts'] * doc['ports_per_host']} ports reported up in "
        f"{doc.get('boot_seconds')} s. Tunnels: {doc.get('tunnels')}.",
        "",
        "Convergence: the server's fanout notification to the LAST host's br-int holding the "
        f"right table-{tables.RULES_INGRESS_TABLE} flows (target <= {TARGET_SECONDS} s).",
        "",
        "| change | p50 s | max s | max spread s | incomplete | met |",
        "|---|---|---|---|---|---|",
        row("rule add/remove", rule),
        row("membership add/remove", member),
        "",
        "Broker messages per change, each repetition (counted in the simulator: see "
        "message_source in the JSON), and the CPU seconds one change cost:",
        "",
        "| change | published | delivered | mean CPU s (agents, OVS, bench, broker) |",
        "|---|---|---|---|",
    ]
    for kind, summary in msgs.items():
        cpu = summary.get("mean_cpu_seconds") or {}
        cpu_text = ", ".join(str(v) for v in cpu.values()) or "-"
        lines.append(f"| {kind} | {summary['published']} | {summary['delivered']} | {cpu_text} |")
    first = msgs.get("member_add", {}).get("first")
    if first:
        lines += ["", f"One port change (member_add), by method: agents' calls "
                  f"{first['agent_calls_and_casts']}; server's {first['server_published']}; "
                  f"fanout deliveries {first['fanout_delivered']}."]  # fmt: skip
    lines += [
        "",
        f"Agents: max RSS {agents.get('max_rss_mb')} MiB, sum {agents.get('sum_rss_mb')} MiB; "
        f"CPU seconds total {agents.get('sum_cpu_seconds_total')}; ovs-vswitchd CPU "
        f"{agents.get('vswitchd_cpu_seconds_total')} s.",
        f"Machine during the measurements: {load}.",
        f"Verification problems: {doc.get('verification_problems') or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_hosts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, default=20, help="agents, one OVS each (20)")
    parser.add_argument("--ports", type=int, default=50, help="VM ports per host (50)")
    parser.add_argument("--networks", type=int, default=4,
                        help="networks shared by every host, even vlan, odd vxlan (4)")  # fmt: skip
    parser.add_argument("--repetitions", type=int, default=5, help="of each change (5)")
    parser.add_argument("--poll-interval", type=float, default=0.02,
                        help="seconds between one host's OpenFlow flow counts (0.02)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="boot / settle limit (900 s)")
    parser.add_argument("--change-timeout", type=float, default=60,
                        help="one change's limit (60 s)")  # fmt: skip
    parser.add_argument("--stem", help="results file name (hosts, or hosts-<H>x<P>)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.stem is None:
        args.stem = "hosts" if (args.hosts, args.ports) == (20, 50) else (
            f"hosts-{args.hosts}x{args.ports}")  # fmt: skip
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    bench = Bench(args)
    bench.doc.update({
        "hosts": args.hosts, "ports_per_host": args.ports, "networks": args.networks,
        "repetitions": args.repetitions, "poll_interval_s": args.poll_interval,
        "command": "python -m benchmarks.bench_hosts " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(),
        "machine": machine(),
        "message_source": "counted in the simulator (the broker's management plugin is not "
        "enabled): every call/cast the agents publish reaches the simulator (sim.calls), "
        "the simulator's own publishes are counted on its transport, a fanout message is "
        "delivered once per queue bound to its exchange (rabbitmqctl list_bindings)",
    })  # fmt: skip
    try:
        await bench.start()
        await bench.run()
    except Exception as exc:
        bench.doc["error"] = f"{type(exc).__name__}: {exc}"
        note(f"FAILED: {bench.doc['error']}")
    finally:
        note("stopping agents, OVS sandboxes and the vhost")
        await asyncio.shield(bench.close())
    rule = bench.doc.get("rule_change", {}).get("summary", {})
    member = bench.doc.get("membership_change", {}).get("summary", {})
    bench.doc["targets"] = [
        {"target": f"rule change converges on all hosts within {TARGET_SECONDS} s",
         "max_s": rule.get("max_s"), "met": bool(rule.get("met"))},
        {"target": f"membership change converges on all hosts within {TARGET_SECONDS} s",
         "max_s": member.get("max_s"), "met": bool(member.get("met"))},
    ]  # fmt: skip
    return bench.doc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        doc = uvloop.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        note("interrupted: agents, OVS sandboxes and the vhost were stopped; no results written")
        return 130
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"{args.stem}.json", args.out / f"{args.stem}.md"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    if "error" not in doc:
        md_path.write_text(render_md(doc))
    note(f"wrote {json_path}" + ("" if "error" in doc else f" and {md_path}"))
    for target in doc["targets"]:
        note(f"target: {target['target']}: max {target['max_s']} s, met: "
             f"{'yes' if target['met'] else 'no'}")  # fmt: skip
    return 1 if "error" in doc or doc.get("verification_problems") else 0


if __name__ == "__main__":
    sys.exit(main())
