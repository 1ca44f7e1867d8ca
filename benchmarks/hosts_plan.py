"""The pure parts of ``bench_hosts``: the many-hypervisor world, convergence and message sums.

Nothing here touches OVS, RabbitMQ or the clock, so tests/unit/test_bench_hosts.py checks it.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aovs.testing.cloud import (
    CloudFixedIP,
    CloudNetwork,
    CloudPort,
    CloudRule,
    CloudSecurityGroup,
    SimulatedCloud,
)

_NAMESPACE = uuid.UUID("3b2f1d0c-7a55-4c55-9e0e-1a2b3c4d5e6f")
SHARED_GROUP = str(uuid.uuid5(_NAMESPACE, "sg-shared"))
PHYSNET = "physnet1"
MEMBER_SUBNET = 250  # 10.0.250.x: the reference member and the added members, apart from VMs
REFERENCE_MEMBER_IP = "10.0.250.10"
RULE_PORT_BASE = 5000  # the added rule of repetition N allows tcp/(5000 + N)
REFERENCE_RULE_PORT = 22  # the group's own tcp/22 rule has the added rule's shape


def host_name(index: int) -> str:
    return f"hv{index + 1:02d}"


def tunnel_ip(index: int) -> str:
    """Host ``index``'s tunnelling IP (``[ovs] local_ip``)."""
    return f"192.0.2.{10 + index}"


def _id(kind: str, *parts: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, "-".join([kind, *map(str, parts)])))


def tap_name(port_id: str) -> str:
    return f"tap{port_id[:11]}"


@dataclass(frozen=True, slots=True)
class HostPort:
    """One VM port: which host it is plugged on and what the switch calls it."""

    host_index: int
    port_id: str
    tap: str
    mac: str


def base_rules() -> tuple[CloudRule, ...]:
    """neutron's default group plus ssh: members reach each other (the remote-group rule)."""
    return (
        CloudRule(direction="egress", ethertype="IPv4"),
        CloudRule(direction="egress", ethertype="IPv6"),
        CloudRule(direction="ingress", ethertype="IPv4", remote_group_id=SHARED_GROUP),
        CloudRule(
            direction="ingress",
            protocol="tcp",
            port_range_min=REFERENCE_RULE_PORT,
            port_range_max=REFERENCE_RULE_PORT,
            remote_ip_prefix="0.0.0.0/0",
        ),
    )


def added_rule(repetition: int) -> CloudRule:
    """The rule repetition N adds: the tcp/22 rule's shape on another port."""
    port = RULE_PORT_BASE + repetition
    return CloudRule(direction="ingress", protocol="tcp", port_range_min=port,
                     port_range_max=port, remote_ip_prefix="0.0.0.0/0")  # fmt: skip


def network_ids(networks: int) -> list[str]:
    return [_id("net", index) for index in range(networks)]


def build_world(hosts: int, ports: int, networks: int) -> tuple[SimulatedCloud, list[HostPort]]:
    """``hosts`` x ``ports`` VM ports on ``networks`` networks shared by every host (even ones
    vlan, odd ones vxlan), all in one group whose ingress rule names the group itself; plus one
    unplugged reference member (``REFERENCE_MEMBER_IP``), whose member flows show how many
    flows one member address makes on each host."""
    if not 1 <= hosts <= 200 or not 1 <= ports <= 240 or not 1 <= networks <= 200:
        raise ValueError("hosts 1..200, ports 1..240 a host, networks 1..200")
    nets = {
        net_id: CloudNetwork(
            network_type="vlan" if index % 2 == 0 else "vxlan",
            physical_network=PHYSNET if index % 2 == 0 else None,
            segmentation_id=100 + index if index % 2 == 0 else 1000 + index,
        )
        for index, net_id in enumerate(network_ids(networks))
    }
    net_list = list(nets)
    cloud_ports: list[CloudPort] = []
    vms: list[HostPort] = []
    for host in range(hosts):
        for number in range(ports):
            net_index = number % networks
            port_id = _id("port", host, number)
            mac = f"fa:16:3e:{host:02x}:{number >> 8:02x}:{number & 0xFF:02x}"
            cloud_ports.append(
                CloudPort(
                    port_id=port_id,
                    network_id=net_list[net_index],
                    mac_address=mac,
                    fixed_ips=(CloudFixedIP(subnet_id=_id("subnet", net_index),
                                            ip_address=f"10.{net_index}.{host}.{10 + number}"),),
                    security_groups=(SHARED_GROUP,),
                    binding_host=host_name(host),
                )
            )  # fmt: skip
            vms.append(HostPort(host, port_id, tap_name(port_id), mac))
    cloud_ports.append(member_port(-1, 0, net_list[0], REFERENCE_MEMBER_IP))
    cloud = SimulatedCloud(
        networks=nets,
        security_groups={SHARED_GROUP: CloudSecurityGroup(rules=base_rules())},
        ports=tuple(cloud_ports),
    )
    return cloud, vms


def member_ip(repetition: int) -> str:
    """An address no other member's merges with (every member address is alone in its /27)."""
    return f"10.0.{MEMBER_SUBNET}.{40 + 32 * (repetition % 6)}"


def member_port(repetition: int, host_index: int, network_id: str, ip: str) -> CloudPort:
    """A port joining the shared group on one host (repetition -1: the reference member)."""
    number = repetition + 1
    return CloudPort(
        port_id=_id("member", repetition),
        network_id=network_id,
        mac_address=f"fa:16:3f:00:{number >> 8:02x}:{number & 0xFF:02x}",
        fixed_ips=(CloudFixedIP(subnet_id=_id("subnet", 0), ip_address=ip),),
        security_groups=(SHARED_GROUP,),
        binding_host=host_name(host_index),
    )


# ---- convergence -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Repetition:
    """One change: when the server sent its notification and when each host was correct."""

    kind: str
    notified_at: float
    converged_at: Mapping[str, float | None]  # host -> monotonic time (None: not in time)

    def per_host(self) -> dict[str, float | None]:
        return {
            host: None if at is None else round(at - self.notified_at, 4)
            for host, at in self.converged_at.items()
        }

    @property
    def complete(self) -> bool:
        return all(at is not None for at in self.converged_at.values())

    @property
    def seconds(self) -> float | None:
        """Notification to the LAST host correct: the change's convergence time."""
        times = self.per_host().values()
        return None if None in times else max(t for t in times if t is not None)

    @property
    def spread(self) -> float | None:
        """Last host minus first host."""
        times = [t for t in self.per_host().values() if t is not None]
        return round(max(times) - min(times), 4) if self.complete and times else None


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def summarize(repetitions: Sequence[Repetition], target_seconds: float) -> dict[str, object]:
    """p50/max of the convergence times of one kind of change, and whether the target is met
    (every repetition complete and its max within ``target_seconds``)."""
    times = [r.seconds for r in repetitions if r.seconds is not None]
    spreads = [r.spread for r in repetitions if r.spread is not None]
    failed = sum(1 for r in repetitions if not r.complete)
    summary: dict[str, object] = {
        "repetitions": len(repetitions),
        "incomplete": failed,
        "p50_s": round(percentile(times, 0.5), 4) if times else None,
        "max_s": round(max(times), 4) if times else None,
        "mean_spread_s": round(statistics.fmean(spreads), 4) if spreads else None,
        "max_spread_s": round(max(spreads), 4) if spreads else None,
        "target_s": target_seconds,
    }
    summary["met"] = bool(repetitions) and not failed and max(times) <= target_seconds
    return summary


# ---- broker messages -------------------------------------------------------------------------


@dataclass
class MessageCounts:
    """What the simulator's own transport saw: calls and casts it received (every one an agent
    published), and what it published, by kind: ``reply``, ``fanout:<exchange>`` or
    ``cast:<routing key>``."""

    received: Counter[str] = field(default_factory=Counter)  # by method
    published: Counter[str] = field(default_factory=Counter)

    def copy(self) -> MessageCounts:
        return MessageCounts(Counter(self.received), Counter(self.published))


def publish_kind(exchange: str, routing_key: str) -> str:
    """What one message the server published is: a ``reply`` (the default exchange), a
    ``fanout:<exchange>`` or a ``cast:<routing key>`` (the control exchange)."""
    if not exchange:
        return "reply"
    if exchange.endswith("_fanout"):
        return f"fanout:{exchange}"
    return f"cast:{routing_key}"


def message_delta(
    before: MessageCounts,
    after: MessageCounts,
    fanout_queues: Mapping[str, int],
    exclude: Sequence[str] = ("report_state",),
) -> dict[str, object]:
    """Broker messages between two snapshots. Published: the agents' calls and casts (each
    reached the server) plus the server's own messages. Delivered: each call/cast and reply
    once, each fanout message once per queue bound to its exchange (``fanout_queues``).
    ``exclude`` (the periodic state reports) are left out of the sums and listed apart."""
    received = after.received - before.received
    published = after.published - before.published
    skipped = {m: received.pop(m) for m in list(received) if m in exclude}
    replies = published.get("reply", 0)
    # a reply to an excluded call is excluded too (state reports are calls)
    replies_excluded = min(replies, sum(skipped.values()))
    replies -= replies_excluded
    fanout_delivered = 0
    unknown = []
    for kind, count in published.items():
        if kind.startswith("fanout:"):
            exchange = kind.removeprefix("fanout:")
            if exchange not in fanout_queues:
                unknown.append(exchange)
            fanout_delivered += count * fanout_queues.get(exchange, 0)
    server_published = sum(n for k, n in published.items() if k != "reply") + replies
    agent_published = sum(received.values())
    return {
        "published": agent_published + server_published,
        "delivered": agent_published
        + replies
        + fanout_delivered
        + sum(n for k, n in published.items() if k.startswith("cast:")),
        "agent_calls_and_casts": dict(sorted(received.items())),
        "server_published": {
            **dict(sorted((k, n) for k, n in published.items() if k != "reply")),
            "reply": replies,
        },
        "fanout_delivered": fanout_delivered,
        "excluded": dict(skipped),
        "fanout_exchanges_without_binding_count": unknown,
    }


def fanout_queue_counts(bindings: str) -> dict[str, int]:
    """Queues bound to each ``*_fanout`` exchange, from ``rabbitmqctl list_bindings
    source_name destination_name`` (tab separated; a header row, if any, is skipped)."""
    counts: Counter[str] = Counter()
    for row in bindings.splitlines():
        source, _, destination = row.partition("\t")
        if source.endswith("_fanout") and destination:
            counts[source] += 1
    return dict(sorted(counts.items()))


def busy_jiffies(proc_stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of the ``cpu`` line of /proc/stat: idle and iowait are not busy."""
    for row in proc_stat.splitlines():
        fields = row.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            # guest time is already counted in user time
            total = sum(values[:8])
            return total - idle, total
    raise ValueError("no cpu line in /proc/stat")


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two ``cpu_totals`` samples, per group (a process that went
    away makes a group's total drop: counted as 0, never negative)."""
    return {
        name: round(max(0.0, after.get(name, 0.0) - spent), 3) for name, spent in before.items()
    }


def mean_cpu(costs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of several ``cpu_delta`` results, per group (the first one's groups)."""
    if not costs:
        return {}
    return {name: round(statistics.fmean(c.get(name, 0.0) for c in costs), 3) for name in costs[0]}
