"""The invariant, asked of OVS itself (ovs-vsctl, ovs-ofctl) and of the simulator, never of the
agent: what must hold after every episode, once the agent has converged.

1. every plugged port whose details are valid is wired with exactly its expected flows: the
   flows of every bridge equal ``aovs.dataplane.compose.desired_flows`` (the agent's
   specification) of the state the switch and the server describe (the server's details, the
   live ofports, the local VLANs read from ``Port.tag``, the openvswitch firewall), rendered by
   a reference OVS so both sides print alike;
2. their ``Port.tag`` is a local VLAN (1..4094), one per network, distinct across networks;
3. every other plugged port (bad details, unknown to the server) is dead: ``Port.tag`` 4095
   and only the dead-port drop flows (covered by 1), and was last reported DOWN;
4. every valid plugged port was last reported UP; every unplugged port ever reported, DOWN;
5. no flow names an ofport that is not on its bridge (every ``in_port=N`` and ``output:N``);
6. the agent process is alive.

``check`` returns the problems, one line each; empty means the invariant holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from benchmarks.suite.world import ofctl, vsctl, vsctl_table
from fault_world import HOST, INTEGRATION_BRIDGE, PHYSICAL_BRIDGE, PHYSNET, FaultWorld

from aovs.agent.bridges import INT_PREFIX, PHY_PREFIX, peer_name
from aovs.dataplane import compose
from aovs.dataplane.compose import BridgeFlows
from aovs.firewall.base import SecurityGroupState
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import PortDetails
from aovs.pipelines.tables import DEAD_VLAN_TAG
from aovs.rpc.server_replies import device_outcome, security_group_info
from aovs.testing.simulator import DeviceListReport, NeutronServerSimulator

BRIDGES = (INTEGRATION_BRIDGE, PHYSICAL_BRIDGE)
_PORT_DESC = re.compile(r"^\s*(\d+)\(", re.MULTILINE)
_REFERENCES = re.compile(r"(?:in_port=|output:)(\d+)")


@dataclass(frozen=True)
class SwitchState:
    """What OVS says, read in one go."""

    interfaces: Mapping[str, tuple[int | None, str | None]]  # name -> (ofport, iface-id)
    tags: Mapping[str, int | None]  # Port name -> tag
    bridge_ports: Mapping[str, frozenset[int]]  # bridge -> its ofports
    flows: Mapping[str, Sequence[str]]  # bridge -> dump-flows lines

    def plugged(self) -> dict[str, tuple[str, int | None]]:
        """iface-id -> (interface name, ofport) of every VM port on the switch."""
        return {iid: (name, ofport) for name, (ofport, iid) in self.interfaces.items()
                if iid is not None}  # fmt: skip


async def read_switch(world: FaultWorld) -> SwitchState:
    sandbox = world.sandbox
    rows = vsctl_table(await vsctl(sandbox, "--format=json", "--columns=name,ofport,external_ids",
                                   "list", "Interface", within=10))  # fmt: skip
    interfaces = {
        str(r["name"]): (r["ofport"] if isinstance(r["ofport"], int) else None,
                         (r["external_ids"] or {}).get("iface-id"))
        for r in rows
    }  # fmt: skip
    ports = vsctl_table(await vsctl(sandbox, "--format=json", "--columns=name,tag", "list", "Port",
                                    within=10))  # fmt: skip
    tags = {str(r["name"]): r["tag"] if isinstance(r["tag"], int) else None for r in ports}
    bridge_ports, flows = {}, {}
    for bridge in BRIDGES:
        desc = await ofctl(sandbox, "dump-ports-desc", bridge, within=10)
        bridge_ports[bridge] = frozenset(int(n) for n in _PORT_DESC.findall(desc))
        flows[bridge] = await world.verifier.dump(bridge)
    world.switch_read_at = time.monotonic()
    return SwitchState(interfaces, tags, bridge_ports, flows)


# ---- pure parts ------------------------------------------------------------------------------


def last_reports(reports: Iterable[DeviceListReport]) -> dict[str, bool]:
    """device -> its last report (True: up), in the order the server received them."""
    last: dict[str, bool] = {}
    for report in reports:
        last.update(dict.fromkeys(report.devices_down, False))
        last.update(dict.fromkeys(report.devices_up, True))
    return last


def dangling_references(state: SwitchState) -> list[str]:
    """Flows naming an ofport their bridge does not have."""
    problems = []
    for bridge, lines in state.flows.items():
        live = state.bridge_ports[bridge]
        for line in lines:
            dead = {int(n) for n in _REFERENCES.findall(line)} - live
            if dead:
                problems.append(f"{bridge}: flow references gone ofport(s) {sorted(dead)}: "
                                f"{line[:160]}")  # fmt: skip
    return problems


@dataclass(frozen=True)
class Verdicts:
    """The server's view of every plugged port: valid details, or why the port must be dead."""

    valid: Mapping[str, PortDetails]
    dead: Mapping[str, str]  # iface-id -> why


def server_verdicts(
    sim: NeutronServerSimulator, topology: compose.Topology, iface_ids: Iterable[str]
) -> Verdicts:
    valid: dict[str, PortDetails] = {}
    dead: dict[str, str] = {}
    for iface_id in iface_ids:
        outcome = device_outcome(sim.device_details(iface_id, HOST))
        if not isinstance(outcome, PortDetails):
            dead[iface_id] = type(outcome).__name__
        elif not outcome.admin_state_up:
            dead[iface_id] = "admin down"
        elif (problem := compose.segment_problem(topology, outcome.segment)) is not None:
            dead[iface_id] = problem
        else:
            valid[iface_id] = outcome
    return Verdicts(valid, dead)


def local_vlans(
    valid: Mapping[str, PortDetails],
    plugged: Mapping[str, tuple[str, int | None]],
    tags: Mapping[str, int | None],
) -> tuple[dict[str, int], list[str]]:
    """network -> the local VLAN its ports carry; the problems with the tags (invariant 2)."""
    problems: list[str] = []
    vlans: dict[str, int] = {}
    for iface_id, details in sorted(valid.items()):
        name = plugged[iface_id][0]
        tag = tags.get(name)
        if tag is None or not 1 <= tag < DEAD_VLAN_TAG:
            problems.append(f"port {name} ({iface_id}): Port.tag {tag}, not a local VLAN")
            continue
        known = vlans.setdefault(details.network_id, tag)
        if known != tag:
            problems.append(f"network {details.network_id}: ports carry tags {known} and {tag}")
    by_vlan: dict[int, list[str]] = {}
    for network, vlan in vlans.items():
        by_vlan.setdefault(vlan, []).append(network)
    problems += [f"networks {sorted(nets)} share local VLAN {vlan}"
                 for vlan, nets in by_vlan.items() if len(nets) > 1]  # fmt: skip
    return vlans, problems


def expected_flows(
    topology: compose.Topology,
    verdicts: Verdicts,
    plugged: Mapping[str, tuple[str, int | None]],
    vlans: Mapping[str, int],
    sg_reply: object,
) -> BridgeFlows:
    """Every bridge's flows for these ports: the desired flows of the state they describe."""
    info = security_group_info(sg_reply)
    members = {sg: dict(by_kind) for sg, by_kind in info.member_ips.items()}
    sgs = SecurityGroupState(groups=dict(info.security_groups), members=members)
    ports: dict[str, compose.PortPlan] = {}
    for iface_id, (_, ofport) in plugged.items():
        if ofport is None or ofport <= 0:
            continue
        details = verdicts.valid.get(iface_id)
        if details is None:
            ports[iface_id] = compose.PortPlan(iface_id, ofport, compose.Wiring.DEAD)
        else:
            groups = info.devices.get(iface_id, details.security_groups)
            details = details.model_copy(update={"security_groups": groups})
            ports[iface_id] = compose.PortPlan(iface_id, ofport, compose.Wiring.WIRED, details,
                                               vlans[details.network_id])  # fmt: skip
    state = compose.DataplaneState(
        topology=topology,
        firewall=OVSFirewall(),
        ports=ports,
        networks={d.network_id: d.segment for d in verdicts.valid.values()},
        local_vlans=dict(vlans),
        security_groups=sgs,
    )
    return compose.desired_flows(state)


# ---- the check -------------------------------------------------------------------------------


async def check(world: FaultWorld) -> list[str]:
    """Every problem with the world as it is now (empty: the invariant holds)."""
    problems: list[str] = []
    if not world.agent_alive():
        process = None if world.agent is None else world.agent.process
        code = None if process is None else process.returncode
        return [f"the agent is not running (exit code {code})"]
    state = await read_switch(world)
    plugged = state.plugged()
    unnumbered = sorted(n for n, ofport in plugged.values() if ofport is None or ofport <= 0)
    if unnumbered:
        return [f"ports without an ofport yet: {unnumbered}"]
    int_patch, phy_patch = (
        peer_name(INT_PREFIX, PHYSICAL_BRIDGE),
        peer_name(PHY_PREFIX, PHYSICAL_BRIDGE),
    )
    patch = {name: state.interfaces.get(name, (None, None))[0] for name in (int_patch, phy_patch)}
    if None in patch.values():
        return [f"patch ports missing: {patch}"]
    link = compose.PhysicalLink(PHYSNET, PHYSICAL_BRIDGE, patch[int_patch] or 0,
                                patch[phy_patch] or 0)  # fmt: skip
    topology = compose.Topology(INTEGRATION_BRIDGE, {PHYSNET: link})
    sim = world.simulator
    verdicts = server_verdicts(sim, topology, plugged)
    vlans, tag_problems = local_vlans(verdicts.valid, plugged, state.tags)
    problems += tag_problems
    for iface_id, why in sorted(verdicts.dead.items()):
        name = plugged[iface_id][0]
        if state.tags.get(name) != DEAD_VLAN_TAG:
            problems.append(f"dead port {name} ({why}): Port.tag {state.tags.get(name)}, "
                            f"not {DEAD_VLAN_TAG}")  # fmt: skip
    problems += dangling_references(state)
    reported = last_reports(sim.device_list_reports)
    for iface_id in sorted(plugged):
        want_up = iface_id in verdicts.valid
        got = reported.get(iface_id)
        if got is not want_up:
            what = {None: "never reported", True: "reported UP", False: "reported DOWN"}[got]
            problems.append(f"port {iface_id}: {what}, must be {'UP' if want_up else 'DOWN'}")
    for iface_id, up in sorted(reported.items()):
        if up and iface_id not in plugged:
            problems.append(f"unplugged port {iface_id}: last reported UP")
    if tag_problems:
        return problems  # no local VLANs to compute the flows with
    sg_reply = sim.security_group_info(sorted(verdicts.valid))
    expected = expected_flows(topology, verdicts, plugged, vlans, sg_reply)
    verdict = await world.verifier.check(expected)
    if not verdict.ok:
        problems.append(f"flows: {verdict.problem}; " + " | ".join(verdict.examples[:4]))
    return problems
