"""Firewall benchmark: compute the openvswitch driver's flows for 1000 ports, install them.

Scenario: 1000 ports on one network, in 10 security groups of 20 rules each (tcp ports and
ranges, udp, icmp, prefixes, egress any, and rules whose remote group is a 1000-member
"cluster" group every port belongs to).

Reports (JSON in benchmarks/results/firewall.json, medians of --runs):
- flows and seconds to compute every flow (base + 1000 ports + shared member flows);
- a member joining "cluster": owners dirtied, flows changed, seconds to find and recompute;
- seconds to install the flows into an empty sandbox bridge with
  ``ovs-ofctl -O OpenFlow13 --bundle add-flows`` (the baseline) and with aovs's
  FlowReconciler (one ONF bundle over the bridge's OpenFlow socket), in the same run.

    python -m benchmarks.bench_firewall [--ports 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aovs.dataplane.compose import firewall_owners
from aovs.firewall import FilteredPort, OwnerKey, SecurityGroupState, load_driver
from aovs.model import FixedIP, PortDetails, SecurityGroup, SecurityGroupRule
from aovs.openflow.flows import Flow
from aovs.openflow.ofctl_text import to_ofctl
from aovs.owners import MEMBER, PORT, kind_of
from aovs.sandbox import OVSSandbox

RESULTS = Path(__file__).parent / "results" / "firewall.json"
N_GROUPS = 10
RULES_PER_GROUP = 20
CLUSTER = "cluster"
VLAN = 1
BRIDGE = "br-fwb"


def group_rules(index: int) -> tuple[SecurityGroupRule, ...]:
    def r(direction: str, **fields: Any) -> SecurityGroupRule:
        return SecurityGroupRule.model_validate({"direction": direction, **fields})

    rules = [
        r("egress", ethertype="IPv4"),
        r("egress", ethertype="IPv6"),
        r("ingress", protocol="icmp"),
        r("ingress", ethertype="IPv6", protocol="icmp"),
        r("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        r("ingress", protocol="tcp", port_range_min=80, port_range_max=80),
        r("ingress", protocol="tcp", port_range_min=443, port_range_max=443),
        r("ingress", protocol="tcp", port_range_min=8000, port_range_max=8100 + index),
        r("ingress", protocol="udp", port_range_min=53, port_range_max=53),
        r("ingress", protocol="udp", port_range_min=5060, port_range_max=5061),
        r("ingress", protocol="tcp", port_range_min=3306, port_range_max=3306,
          remote_ip_prefix=f"10.{index}.0.0/16"),
        r("ingress", protocol="tcp", port_range_min=5432, port_range_max=5432,
          remote_ip_prefix="192.168.0.0/16"),
        r("ingress", protocol="icmp", port_range_min=8, port_range_max=0,
          remote_ip_prefix="172.16.0.0/12"),
        r("ingress", protocol="112"),
        r("ingress", protocol="tcp", port_range_min=9000, port_range_max=9000 + 10 * index,
          remote_group_id=CLUSTER),
        r("ingress", protocol="udp", port_range_min=4789, port_range_max=4789,
          remote_group_id=CLUSTER),
        r("ingress", protocol="icmp", remote_group_id=CLUSTER),
        r("ingress", ethertype="IPv6", remote_group_id=CLUSTER),
        r("egress", protocol="tcp", port_range_min=2379, port_range_max=2380,
          remote_group_id=CLUSTER),
        r("ingress", protocol="sctp", port_range_min=38412, port_range_max=38412),
    ]  # fmt: skip
    assert len(rules) == RULES_PER_GROUP
    return tuple(rules)


def scenario(n_ports: int) -> tuple[dict[str, FilteredPort], SecurityGroupState]:
    groups = {f"sg-{i}": SecurityGroup(id=f"sg-{i}", rules=group_rules(i)) for i in range(N_GROUPS)}
    groups[CLUSTER] = SecurityGroup(id=CLUSTER)
    ports: dict[str, FilteredPort] = {}
    v4: set[str] = set()
    v6: set[str] = set()
    for i in range(n_ports):
        ip4, ip6 = f"10.100.{i >> 8}.{i & 0xFF}", f"fd00:100::{i:x}"
        details = PortDetails(
            device=f"port-{i}", port_id=f"port-{i}", network_id="net", network_type="vxlan",
            segmentation_id=100, mac_address=f"fa:16:3e:01:{i >> 8:02x}:{i & 0xFF:02x}",
            fixed_ips=(FixedIP(ip_address=ip4), FixedIP(ip_address=ip6)),
            security_groups=(f"sg-{i % N_GROUPS}", CLUSTER),
        )  # fmt: skip
        ports[details.device] = FilteredPort(details, ofport=i + 1, local_vlan=VLAN)
        v4.add(ip4)
        v6.add(ip6)
    members = {CLUSTER: {"IPv4": frozenset(v4), "IPv6": frozenset(v6)}}
    return ports, SecurityGroupState(groups, members)


def compute_all(
    ports: Mapping[str, FilteredPort], sgs: SecurityGroupState
) -> dict[OwnerKey, frozenset[Flow]]:
    return firewall_owners(load_driver("openvswitch"), ports, sgs)


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def member_join(
    ports: Mapping[str, FilteredPort], sgs: SecurityGroupState, runs: int
) -> dict[str, Any]:
    driver = load_driver("openvswitch")
    assert hasattr(driver, "owners_for_change")
    before = compute_all(ports, sgs)
    joined = {CLUSTER: {**sgs.members[CLUSTER],
                        "IPv4": sgs.members[CLUSTER]["IPv4"] | {"10.100.250.1"}}}  # fmt: skip
    after = SecurityGroupState(sgs.groups, joined)
    driver.port_flows(next(iter(ports.values())), after)  # warm the conjunction-id memo

    def incremental() -> dict[OwnerKey, frozenset[Flow]]:
        dirty = driver.owners_for_change(ports, sgs, ports, after)
        shared = [o for o in dirty if o[0] != "port"]
        result = dict(driver.shared_flows(ports, after, shared))
        result.update({o: driver.port_flows(ports[o[1]], after) for o in dirty if o[0] == "port"})
        return result

    seconds, recomputed = timed(incremental, runs)
    changed = set()
    for owner, flows in recomputed.items():
        changed |= flows ^ before.get(owner, frozenset())
    return {"owners_dirtied": len(recomputed), "flows_changed": len(changed),
            "seconds": seconds}  # fmt: skip


def install_ofctl(sandbox: OVSSandbox, flows: frozenset[Flow], runs: int) -> float:
    path = sandbox.directory / "firewall-flows.txt"
    path.write_text("".join(f"{to_ofctl(flow)}\n" for flow in flows))
    times = []
    for _ in range(runs):
        sandbox.ofctl("del-flows", BRIDGE)
        start = time.perf_counter()
        sandbox.ofctl("--bundle", "add-flows", BRIDGE, str(path))
        times.append(time.perf_counter() - start)
    installed = len(sandbox.dump_flows(BRIDGE))
    if installed != len(flows):
        raise RuntimeError(f"ovs-ofctl installed {installed} flows, expected {len(flows)}")
    return statistics.median(times)


def install_reconciler(sandbox: OVSSandbox, flows: frozenset[Flow], runs: int) -> float:
    from aovs.openflow.channel import OpenFlowChannel
    from aovs.openflow.reconcile import FlowReconciler, stable_cookie

    async def once() -> float:
        channel = OpenFlowChannel.for_mgmt_socket(sandbox.mgmt_socket(BRIDGE))
        await channel.start()
        try:
            reconciler = FlowReconciler(channel, stable_cookie(BRIDGE))
            start = time.perf_counter()
            await reconciler.sync(flows)
            return time.perf_counter() - start
        finally:
            reconciler.close()
            await channel.close()

    times = []
    for _ in range(runs):
        sandbox.ofctl("del-flows", BRIDGE)
        times.append(asyncio.run(once()))
    installed = len(sandbox.dump_flows(BRIDGE))
    if installed != len(flows):
        raise RuntimeError(f"reconciler installed {installed} flows, expected {len(flows)}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    ports, sgs = scenario(args.ports)
    compute_s, owned = timed(lambda: compute_all(ports, sgs), args.runs)
    flows = frozenset().union(*owned.values())
    result: dict[str, Any] = {
        "ports": args.ports,
        "security_groups": N_GROUPS,
        "rules_per_group": RULES_PER_GROUP,
        "remote_group_members": len(sgs.members[CLUSTER]["IPv4"]),
        "runs": args.runs,
        "flows": len(flows),
        "flows_per_port": round(
            sum(len(f) for o, f in owned.items() if kind_of(o) == PORT) / args.ports, 1
        ),
        "shared_flows": sum(len(f) for o, f in owned.items() if kind_of(o) == MEMBER),
        "compute_seconds": round(compute_s, 4),
        "member_join": member_join(ports, sgs, args.runs),
    }
    with tempfile.TemporaryDirectory(prefix="aovs-bfw-", dir="/tmp") as directory:
        sandbox = OVSSandbox(Path(directory))
        sandbox.start()
        try:
            bridge_options = ("datapath_type=dummy", "protocols=OpenFlow13", "fail-mode=secure")
            sandbox.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, *bridge_options)
            baseline = install_ofctl(sandbox, flows, args.runs)
            result["install_ofctl_bundle_seconds"] = round(baseline, 4)
            try:
                aovs = install_reconciler(sandbox, flows, args.runs)
                result["install_reconciler_seconds"] = round(aovs, 4)
                result["install_reconciler_vs_ofctl"] = round(aovs / baseline, 2)
            except Exception as exc:  # the reconciler is another package: report, do not hide
                result["install_reconciler_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            sandbox.remove()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
