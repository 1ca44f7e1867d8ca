"""Is the dataplane correct? Asked of the switch, never of the agent.

Three levels, cheapest first:

1. ``FlowWatch``: the suite's own OpenFlow connection to each bridge's ``.mgmt`` socket; an
   aggregate request (flow count, a few probe ports' flows) costs well under a millisecond, so
   the suite polls it every few milliseconds without loading the 2 cores;
2. ``Verifier.check``: ``ovs-ofctl -O OpenFlow13 dump-flows`` of every bridge compared line by
   line with the expected flows (see :mod:`.expected`), which are installed into a bridge of a
   separate reference OVS and dumped back, so both sides are printed by the same ovs-ofctl;
3. ``Verifier.traces``: ofproto/trace verdicts for a sample of ports (egress flooded to the
   uplink with the segmentation VLAN, spoofed source dropped, ingress tcp/22 delivered to the
   VM, tcp/23 dropped).

A scenario's time is when (1) first matched, provided that (2) and (3), run right after, pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.dataplane.compose import BridgeFlows
from aovs.openflow.channel import OpenFlowChannel
from aovs.openflow.errors import OpenFlowError
from aovs.openflow.flows import Flow
from aovs.openflow.messages import DATAPATH
from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import stable_cookie
from aovs.sandbox import OVSSandbox
from benchmarks.suite.world import (
    INTEGRATION_BRIDGE,
    PHYSICAL_BRIDGE,
    UPLINK,
    VmPort,
    appctl,
    ofctl,
    vsctl,
)

POLL_INTERVAL = 0.003  # probe ports: a lookup on one table and in_port, cheap for vswitchd
COUNT_INTERVAL = 0.05  # whole-bridge counts walk every flow: rarer, so the suite's own polling
# never competes with the agent for ovs-vswitchd's main thread
REQUEST_TIMEOUT = 2.0


def cold_boot_intervals(ports: int) -> tuple[float, float]:
    """(probe poll, count) intervals for a cold boot of ``ports``: each OpenFlow request costs
    ovs-vswitchd a main-loop wakeup whose work grows with its ports (~0.14 ms of CPU at 1000
    ports, measured), and a count walks every flow (~30 ms at 1000 ports), so the suite's own
    polling would otherwise weigh in the cold boot's ovs-vswitchd CPU; coarser polling costs a
    resolution that stays ~1% of a cold boot's time (pure)."""
    poll = min(0.05, max(POLL_INTERVAL, ports * 1e-5))
    return poll, max(COUNT_INTERVAL, ports * 1e-4)


OUTSIDE_MAC = "fa:16:3e:ee:ee:01"
OUTSIDE_IP = "192.168.77.7"  # in no security group, outside 10.0.0.0/8
SPOOFED_MAC = "fa:16:3e:66:66:66"


@dataclass(frozen=True, slots=True)
class Probe:
    """``count`` flows in ``table`` of ``bridge`` match in_port=``ofport`` (a port is wired)."""

    bridge: str
    table: int
    ofport: int
    count: int


class FlowWatch:
    """Cheap, frequent questions over the suite's own OpenFlow connections."""

    def __init__(self, sandbox: OVSSandbox, bridges: Sequence[str]) -> None:
        self.channels = {
            bridge: OpenFlowChannel.for_mgmt_socket(
                sandbox.mgmt_socket(bridge),
                request_timeout=REQUEST_TIMEOUT,
                backoff_initial=0.005,
                backoff_max=0.02,
                echo_interval=2.0,
                inactivity_timeout=6.0,
            )
            for bridge in bridges
        }
        self._last_count = 0.0
        self._next_probe = 0  # the probe that failed last: asked first (one request a poll)
        self.probe_requests = 0  # every request costs ovs-vswitchd a main-loop wakeup
        self.count_rounds = 0

    async def start(self, within: float = 30.0) -> None:
        await asyncio.gather(*(c.start(within=within) for c in self.channels.values()))

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    def connected(self) -> bool:
        return all(channel.connected for channel in self.channels.values())

    async def wait_connected(self, within: float = 30.0) -> None:
        await asyncio.gather(*(c.wait_connected(within) for c in self.channels.values()))

    async def count(self, bridge: str, table: int = ofp.OFPTT_ALL, **match: Any) -> int | None:
        """Flows on ``bridge`` (in ``table``, matching ``match``); None if it cannot answer."""
        channel = self.channels[bridge]
        if not channel.connected:
            return None
        request = ofpp.OFPAggregateStatsRequest(
            DATAPATH, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, ofpp.OFPMatch(**match)
        )
        try:
            (reply,) = await channel.multipart(request, within=REQUEST_TIMEOUT)
        except (OpenFlowError, ValueError):
            return None
        return int(reply.flow_count)

    async def matches(
        self,
        counts: Mapping[str, int],
        probes: Sequence[Probe],
        count_interval: float = COUNT_INTERVAL,
    ) -> bool:
        """Every probe port is wired and every bridge holds exactly ``counts`` flows (asked
        only once the probes pass, and at most every ``count_interval``). The probe that
        failed last is asked first, so a poll before convergence costs one request."""
        for step in range(len(probes)):
            index = (self._next_probe + step) % len(probes)
            probe = probes[index]
            self.probe_requests += 1
            got = await self.count(probe.bridge, probe.table, in_port=probe.ofport)
            if got != probe.count:
                self._next_probe = index
                return False
        now = time.monotonic()
        if now - self._last_count < count_interval:
            await asyncio.sleep(count_interval - (now - self._last_count))
        self._last_count = time.monotonic()
        self.count_rounds += 1
        for bridge, expected in counts.items():
            if await self.count(bridge) != expected:
                return False
        return True

    async def polling_cost(
        self, counts: Mapping[str, int], probes: Sequence[Probe], cpu: Callable[[], float | None]
    ) -> tuple[float, float] | None:
        """ovs-vswitchd's CPU seconds per probe request and per count round, measured now (on
        the converged switch) by ``cpu`` samples around 400 probes and 4 count rounds."""
        if not probes:
            return None
        before = cpu()
        for index in range(400):
            probe = probes[index % len(probes)]
            await self.count(probe.bridge, probe.table, in_port=probe.ofport)
        middle = cpu()
        for _ in range(4):
            for bridge in counts:
                await self.count(bridge)
        after = cpu()
        if before is None or middle is None or after is None:
            return None
        return (middle - before) / 400, (after - middle) / 4

    async def wait_port(self, probe: Probe, within: float) -> float:
        """Poll until one port is wired; the monotonic time it was first seen so."""
        deadline = time.monotonic() + within
        while True:
            got = await self.count(probe.bridge, probe.table, in_port=probe.ofport)
            now = time.monotonic()
            if got == probe.count:
                return now
            if now > deadline:
                raise TimeoutError(f"ofport {probe.ofport}: {got} of {probe.count} flows")
            await asyncio.sleep(POLL_INTERVAL)


# ---- the full check --------------------------------------------------------------------------


def dump_lines(text: str) -> list[str]:
    """``dump-flows --no-stats`` output as sorted flow lines (pure)."""
    return sorted(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(("OFPST_FLOW", "NXST_FLOW"))
    )


@dataclass(frozen=True)
class Comparison:
    flows: int
    missing: tuple[str, ...]  # expected, not on the switch
    extra: tuple[str, ...]  # on the switch, not expected

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra


def compare(expected: Sequence[str], actual: Sequence[str]) -> Comparison:
    want, got = set(expected), set(actual)
    return Comparison(len(got), tuple(sorted(want - got)), tuple(sorted(got - want)))


@dataclass
class Verdict:
    """One full check: flows compared, traces run."""

    ok: bool
    flows: int = 0
    problem: str | None = None
    missing: int = 0
    extra: int = 0
    examples: list[str] = field(default_factory=list)
    traces: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "flows": self.flows,
                                "check_seconds": round(self.seconds, 3)}  # fmt: skip
        if self.problem:
            data["problem"] = self.problem
        if self.missing or self.extra:
            data.update(missing=self.missing, extra=self.extra, examples=self.examples[:6])
        if self.traces:
            data["traces"] = self.traces
        return data


class Verifier:
    """Full checks against expected flows rendered through a reference OVS."""

    def __init__(self, sandbox: OVSSandbox, reference: OVSSandbox) -> None:
        self.sandbox = sandbox
        self.reference = reference
        self._canonical: dict[tuple[str, int], tuple[frozenset[Flow], list[str]]] = {}

    async def dump(
        self, bridge: str, sandbox: OVSSandbox | None = None, table: int | None = None
    ) -> list[str]:
        only = [] if table is None else [f"table={table}"]
        out = await ofctl(sandbox or self.sandbox, "dump-flows", "--no-stats", "--no-names",
                          bridge, *only)  # fmt: skip
        return dump_lines(out)

    async def canonical(self, bridge: str, flows: frozenset[Flow]) -> list[str]:
        """``flows`` as ovs-ofctl prints them once installed (with the agent's cookie)."""
        key = (bridge, hash(flows))
        cached = self._canonical.get(key)
        if cached is not None and cached[0] == flows:
            return cached[1]
        scratch = f"ref-{bridge}"[:15]
        await vsctl(self.reference, "--may-exist", "add-br", scratch, "--", "set", "Bridge",
                    scratch, "datapath_type=dummy", "fail-mode=secure",
                    "protocols=OpenFlow13")  # fmt: skip
        cookie = stable_cookie(bridge)
        path = self.reference.directory / f"{scratch}.flows"
        path.write_text("".join(to_ofctl(flow, cookie) + "\n" for flow in flows))
        await ofctl(self.reference, "del-flows", scratch)
        await ofctl(self.reference, "--bundle", "add-flows", scratch, str(path))
        lines = await self.dump(scratch, self.reference)
        self._canonical = {key: (flows, lines)}  # one flow set at a time: bounded memory
        return lines

    async def check(self, expected: BridgeFlows) -> Verdict:
        started = time.monotonic()
        total = 0
        for bridge, flows in sorted(expected.items()):
            want = await self.canonical(bridge, flows)
            comparison = compare(want, await self.dump(bridge))
            total += comparison.flows
            if not comparison.ok:
                examples = [f"missing on {bridge}: {line}" for line in comparison.missing[:3]]
                examples += [f"extra on {bridge}: {line}" for line in comparison.extra[:3]]
                return Verdict(
                    ok=False, flows=total,
                    problem=f"{bridge}: {len(comparison.missing)} flows missing, "
                    f"{len(comparison.extra)} unexpected",
                    missing=len(comparison.missing), extra=len(comparison.extra),
                    examples=examples, seconds=time.monotonic() - started,
                )  # fmt: skip
        return Verdict(ok=True, flows=total, seconds=time.monotonic() - started)

    # -- traces --------------------------------------------------------------------------------
    async def datapath_ports(self) -> dict[str, int]:
        """Interface name -> datapath port number (``dpif/show``)."""
        out = await appctl(self.sandbox, "dpif/show")
        ports: dict[str, int] = {}
        for match in re.finditer(r"^\s+(\S+) (\d+)/(\d+):", out, re.MULTILINE):
            ports[match.group(1)] = int(match.group(3))
        return ports

    async def trace(self, bridge: str, packet: str, ct_next: str | None) -> str:
        """The final "Datapath actions:" of an ofproto/trace."""
        args = ["ofproto/trace", bridge, packet]
        if ct_next is not None:
            args += ["--ct-next", ct_next]
        out = await appctl(self.sandbox, *args)
        actions = [ln for ln in out.splitlines() if ln.startswith("Datapath actions:")]
        return actions[-1].split(":", 1)[1].strip() if actions else "(no datapath actions)"

    async def traces(self, samples: Sequence[TraceSample]) -> dict[str, Any]:
        """Four verdicts per sampled port; a summary with the first failures."""
        odp = await self.datapath_ports()
        uplink = odp.get(UPLINK)
        passed, failures = 0, []
        for sample in samples:
            vm_odp = odp.get(sample.vm.tap)
            for what, bridge, packet, ct, expect in sample.cases():
                actions = await self.trace(bridge, packet, ct)
                ok = _verdict_ok(actions, expect, sample.segmentation_id, uplink, vm_odp)
                if ok:
                    passed += 1
                else:
                    failures.append(f"{sample.vm.tap} {what}: {actions[:160]}")
        return {"passed": passed, "failed": len(failures), "failures": failures[:5]}


def _verdict_ok(
    actions: str, expect: str, segmentation_id: int, uplink: int | None, vm_odp: int | None
) -> bool:
    outputs = {int(token) for token in re.findall(r"(?:^|,)(\d+)(?=,|$)", actions)}
    if expect == "drop":
        return actions == "drop"
    if expect == "uplink":
        return f"push_vlan(vid={segmentation_id}," in actions and uplink in outputs
    if expect == "vm":
        return vm_odp is not None and outputs == {vm_odp}
    raise ValueError(f"unknown expectation {expect!r}")


@dataclass(frozen=True)
class TraceSample:
    vm: VmPort
    ofport: int
    ip: str
    segmentation_id: int

    def cases(self) -> list[tuple[str, str, str, str | None, str]]:
        """(what, bridge, packet, ct_next, expected verdict)."""
        egress = (f"in_port={self.ofport},udp,dl_src={self.vm.mac},dl_dst={OUTSIDE_MAC},"
                  f"nw_src={self.ip},nw_dst={OUTSIDE_IP},udp_src=1000,udp_dst=2000")  # fmt: skip
        spoofed = egress.replace(f"dl_src={self.vm.mac}", f"dl_src={SPOOFED_MAC}")

        def ingress(port: int) -> str:
            return (f"in_port={UPLINK},dl_vlan={self.segmentation_id},dl_src={OUTSIDE_MAC},"
                    f"dl_dst={self.vm.mac},tcp,nw_src={OUTSIDE_IP},nw_dst={self.ip},"
                    f"tp_src=40000,tp_dst={port}")  # fmt: skip

        return [
            ("egress to the uplink", INTEGRATION_BRIDGE, egress, "trk,new", "uplink"),
            ("spoofed source MAC dropped", INTEGRATION_BRIDGE, spoofed, "trk,new", "drop"),
            ("ingress tcp/22 delivered", PHYSICAL_BRIDGE, ingress(22), "trk,new", "vm"),
            ("ingress tcp/23 dropped", PHYSICAL_BRIDGE, ingress(23), "trk,new", "drop"),
        ]


# ---- waiting for a correct dataplane ---------------------------------------------------------

Expectation = Callable[[], Awaitable[BridgeFlows]]


@dataclass
class Convergence:
    """When the dataplane was first seen correct, and the check that proved it."""

    matched_at: float | None  # monotonic; None: never within the deadline
    verdict: Verdict
    full_checks: int
    problems: list[str] = field(default_factory=list)  # what the failed full checks found


async def wait_correct(
    watch: FlowWatch,
    verifier: Verifier,
    counts: Mapping[str, int],
    probes: Sequence[Probe],
    expectation: Expectation,
    within: float,
    samples: Sequence[TraceSample] = (),
    alive: Callable[[], None] = lambda: None,
    on_wait: Callable[[str], None] = lambda _: None,
    on_match: Callable[[], None] = lambda: None,
    after_match: Callable[[], Awaitable[None]] | None = None,
    poll_interval: float = POLL_INTERVAL,
    count_interval: float = COUNT_INTERVAL,
) -> Convergence:
    """Poll the cheap level until it matches, then prove it with the full check and traces;
    on a failed proof keep polling (the agent may still be converging) until ``within``.
    ``after_match`` runs between the match and the full check (e.g. waiting for the agent's
    later OVSDB writes before ovs-vswitchd's CPU is sampled)."""
    deadline = time.monotonic() + within
    checks = 0
    problems: list[str] = []
    last = Verdict(ok=False, problem="flow counts never matched")
    while time.monotonic() < deadline:
        alive()
        if not await watch.matches(counts, probes, count_interval):
            on_wait("waiting for the flows")
            await asyncio.sleep(poll_interval)
            continue
        matched_at = time.monotonic()
        on_match()
        if after_match is not None:
            await after_match()
        on_wait("counts match: full check")
        checks += 1
        try:
            expected = await expectation()
        except ValueError as exc:  # e.g. a port without its VLAN yet
            last = Verdict(ok=False, problem=str(exc))
            problems.append(f"{time.monotonic() - matched_at:.2f} s: {exc}"[:300])
            await asyncio.sleep(0.1)
            continue
        last = await verifier.check(expected)
        if last.ok and samples:
            last.traces = await verifier.traces(samples)
            if last.traces["failed"]:
                last.ok = False
                last.problem = f"{last.traces['failed']} trace verdicts wrong"
        if last.ok:
            return Convergence(matched_at, last, checks, problems[:5])
        examples = last.examples[:2] or list(last.traces.get("failures", []))[:2]
        problems.append(f"{time.monotonic() - matched_at:.2f} s: {last.problem}: "
                        f"{'; '.join(examples)}"[:300])  # fmt: skip
        await asyncio.sleep(0.1)
    return Convergence(None, last, checks, problems[:5])


async def flows_younger_than(sandbox: OVSSandbox, bridge: str, seconds: float) -> int:
    """Flows whose ``duration`` is below ``seconds``: added or replaced since (an ADD of an
    identical flow resets it), as the switch counts them, independently of the agent."""
    out = await ofctl(sandbox, "dump-flows", bridge)
    young = 0
    for match in re.finditer(r"duration=([\d.]+)s", out):
        if float(match.group(1)) < seconds:
            young += 1
    return young


async def close_quietly(watch: FlowWatch) -> None:
    with contextlib.suppress(Exception):
        await watch.close()
