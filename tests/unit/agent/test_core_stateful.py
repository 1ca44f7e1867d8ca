"""AgentCore under random sequences of what OVSDB, neutron-server and the clock say.

After every step (and the flush the shell makes after it), the flows the core holds equal the
specification (:func:`aovs.dataplane.compose.desired_flows` of its state); no port is
half-wired; no flow names an ofport that is no port's; a port reported UP has its flows; an OVS
restart (rows reported again) changes nothing; an agent restart (a fresh core from the OVSDB
rows and the snapshot) computes the same flows.
"""

from __future__ import annotations

from typing import Any

from agent_builders import TOPO, details
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aovs.agent.core import AgentCore, Plan
from aovs.agent.state import InterfaceRow, PortPhase
from aovs.agent.tunnels import TunnelSettings, TunnelState, TunnelSynced
from aovs.dataplane.compose import Topology, TunnelLink, desired_flows
from aovs.firewall.openvswitch import OVSFirewall
from aovs.model import SecurityGroup, SecurityGroupRule, TunnelEndpoint
from aovs.openflow.flows import Flow, Output
from aovs.owners import port_owner
from aovs.pipelines import br_int
from aovs.rpc.server_replies import (
    DeviceOutcome,
    FailedDevice,
    NoActiveBinding,
    SecurityGroupInfo,
    UnknownDevice,
)

IFACES = ("p-1", "p-2", "p-3", "p-4")
GRACE = 1.0
LOCAL_IP = "192.0.2.1"
REMOTE_IPS = ("192.0.2.2", "192.0.2.3", LOCAL_IP)
TUNNELS = TunnelSettings(LOCAL_IP, ("vxlan",), bridge="br-tun")
TUNNEL_LINK = TunnelLink("br-tun", patch_tun_ofport=300, patch_int_ofport=1,
                         network_types=frozenset({"vxlan"}))  # fmt: skip
TOPOLOGY = Topology(TOPO.integration_bridge, TOPO.physical, TUNNEL_LINK)
PHYS = TOPO.physical["physnet1"]
PATCHES = {  # the ofports on each bridge that are no VM's and no tunnel's
    "br-int": {PHYS.int_patch_ofport, TUNNEL_LINK.patch_tun_ofport},
    PHYS.bridge: {PHYS.phy_patch_ofport},
    "br-tun": {TUNNEL_LINK.patch_int_ofport},
}
NETWORKS = {
    "net-a": {"segmentation_id": 101},
    "net-b": {"segmentation_id": 102},
    "net-flat": {"network_type": "flat", "segmentation_id": None},
    "net-bad": {"physical_network": "physnet9"},  # not in bridge_mappings: FAILED
    "net-vx": {"network_type": "vxlan", "physical_network": None, "segmentation_id": 1001},
}
GROUP_SETS = ((), ("web",), ("db",), ("web", "db"))


def _rule(direction: str, **fields: object) -> SecurityGroupRule:
    return SecurityGroupRule.model_validate({"direction": direction, **fields})


RULE_SETS = {
    "web": (
        (_rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
         _rule("ingress", protocol="tcp", port_range_min=80, port_range_max=80,
               remote_group_id="web"),
         _rule("egress", ethertype="IPv4")),
        (_rule("ingress", protocol="icmp", remote_group_id="db"), _rule("egress")),
    ),
    "db": (
        (_rule("ingress", protocol="tcp", port_range_min=5432, port_range_max=5432,
               remote_group_id="web"),),
        (),
    ),
}  # fmt: skip
MEMBER_SETS = (
    {"IPv4": frozenset({"10.0.0.1"})},
    {"IPv4": frozenset({"10.0.0.1", "10.0.0.2"})},
    {"IPv4": frozenset()},
)


def referenced_ofports(flow: Flow) -> set[int]:
    ports = set()
    for field in ("in_port", "reg5"):
        value = flow.match.get(field)
        if isinstance(value, int):
            ports.add(value)
    for action in flow.actions:
        if isinstance(action, Output) and action.port < 0xFFFFFF00:
            ports.add(action.port)
    return ports


class AgentCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.uuids = 0
        self.next_ofport = 10
        self.rows: dict[str, InterfaceRow] = {}  # the live Interface row per iface-id
        self.port_rows: dict[str, tuple[int | None, dict[str, str]]] = {}  # OVSDB Port rows
        self.reported: dict[str, bool] = {}  # the server's view: last report per device
        self.tunnel_rows: dict[str, int] = {}  # br-tun's tunnel Interface rows: name -> ofport
        self.core = self._new_core()
        self._apply(self.core.flush(self.now))

    def _new_core(self) -> AgentCore:
        return AgentCore(TOPOLOGY, OVSFirewall(), needs_security_groups=True,
                         unplug_grace=GRACE, tunnels=TunnelState(TUNNELS))  # fmt: skip

    @property
    def tunnels(self) -> TunnelState:
        assert self.core.tunnels is not None
        return self.core.tunnels

    # -- the shell's part -----------------------------------------------------------------
    def _apply(self, plan: Plan) -> None:
        """What the shell does with a plan: write the Port rows (OVSDB echoes them back to the
        core), send the reports."""
        for name, config in plan.port_configs.items():
            _, other = self.port_rows.get(name, (None, {}))
            if config.other_config is not None:
                other = dict(config.other_config)
            self.port_rows[name] = (config.tag, other)
            self.core.port_row(name, config.tag, other)
        for device, up in plan.reports:
            self.reported[device] = up
        for port in plan.tunnel_ports.add:  # one OVSDB transaction; its rows come back
            self.tunnel_rows[port.name] = self._new_ofport()
            self.tunnels.interface_event(port.name, "vxlan", self.tunnel_rows[port.name],
                                         deleted=False)  # fmt: skip
        for name in plan.tunnel_ports.delete:
            del self.tunnel_rows[name]
            self.tunnels.interface_event(name, "vxlan", None, deleted=True)

    def _flush(self) -> Plan:
        self.core.expire(self.now)
        plan = self.core.flush(self.now)
        self._apply(plan)
        changes = plan.tunnel_ports
        while changes:  # the tunnel rows' events, flushed as the shell does
            later = self.core.flush(self.now)
            self._apply(later)
            plan, changes = plan.then(later), later.tunnel_ports
        return plan

    def _new_row(self, iface: str, ofport: int | None) -> InterfaceRow:
        self.uuids += 1
        return InterfaceRow(f"uuid-{self.uuids}", f"tap-{iface}", iface, ofport)

    def _new_ofport(self) -> int:
        self.next_ofport += 1
        return self.next_ofport

    # -- OVSDB ----------------------------------------------------------------------------
    @rule(iface=st.sampled_from(IFACES), with_ofport=st.booleans())
    def plug(self, iface: str, with_ofport: bool) -> None:
        if iface in self.rows:
            return
        row = self._new_row(iface, None)
        self.rows[iface] = row
        self.core.interface_changed(row, self.now)
        if with_ofport:
            self._assign(iface, self._new_ofport())
        self._flush()

    @rule(
        iface=st.sampled_from(IFACES),
        network=st.sampled_from(["net-a", "net-b", "net-flat", "net-vx"]),
        groups=st.sampled_from(GROUP_SETS[1:]),
    )
    def vm_boots(self, iface: str, network: str, groups: tuple[str, ...]) -> None:
        """The common path: plugged, an ofport, the server answers both questions."""
        if iface not in self.rows:
            self.plug(iface, with_ofport=True)
        self.security_groups_arrive({iface}, groups, 0, 0, 0, 0)
        self.details_arrive(iface, "valid", network, True, groups, True)

    def _assign(self, iface: str, ofport: int) -> None:
        old = self.rows[iface]
        row = InterfaceRow(old.uuid, old.name, old.iface_id, ofport)
        self.rows[iface] = row
        self.core.interface_changed(row, self.now)

    @rule(iface=st.sampled_from(IFACES), failed=st.booleans())
    @precondition(lambda self: bool(self.rows))
    def ofport_assigned(self, iface: str, failed: bool) -> None:
        row = self.rows.get(iface)
        if row is None or row.ofport is not None:
            return
        self._assign(iface, -1 if failed else self._new_ofport())
        self._flush()

    @rule(iface=st.sampled_from(IFACES))
    @precondition(lambda self: bool(self.rows))
    def unplug(self, iface: str) -> None:
        row = self.rows.pop(iface, None)
        if row is None:
            return
        self.core.interface_deleted(row.uuid, self.now)
        self.port_rows.pop(row.name, None)
        self.core.port_row_deleted(row.name)
        self._flush()

    @rule(iface=st.sampled_from(IFACES), flush_between=st.booleans())
    @precondition(lambda self: bool(self.rows))
    def vm_reboot(self, iface: str, flush_between: bool) -> None:
        """The row deleted, a new one (no ofport yet), then its new ofport."""
        row = self.rows.get(iface)
        if row is None:
            return
        self.core.interface_deleted(row.uuid, self.now)
        if flush_between:
            self._flush()
        self.now += 0.1
        new = self._new_row(iface, None)
        self.rows[iface] = new
        self.core.interface_changed(new, self.now)
        if flush_between:
            self._flush()
        self.now += 0.1
        self._assign(iface, self._new_ofport())
        self._flush()

    @rule(endpoints=st.sets(st.sampled_from(REMOTE_IPS)))
    def tunnel_sync(self, endpoints: set[str]) -> None:
        """tunnel_sync's answer: the vxlan endpoints (this host's own IP included)."""
        found = tuple(TunnelEndpoint(ip_address=ip) for ip in sorted(endpoints))
        self.tunnels.notified(TunnelSynced("vxlan", found))
        self._flush()

    @rule()
    def ovs_restart(self) -> None:
        """ovs-vswitchd restarted: OVSDB reports the same rows again; nothing may change."""
        for row in list(self.rows.values()):
            self.core.interface_changed(row, self.now)
        for name, ofport in self.tunnel_rows.items():
            self.tunnels.interface_event(name, "vxlan", ofport, deleted=False)
        self.core.set_topology(TOPOLOGY)
        plan = self._flush()
        assert not plan.flows, plan.flows

    @rule()
    def agent_restart(self) -> None:
        """A fresh core from OVSDB's rows and the snapshot computes the same flows."""
        before = {bridge: self.core.desired(bridge) for bridge in self.core.ledgers}
        settled = self._settled()
        snapshot = self.core.snapshot()
        core = self._new_core()
        for name, (tag, other) in self.port_rows.items():
            core.port_row(name, tag, other)
        core.recover_vlans()
        core.restore(snapshot.ports.values(), snapshot.local_vlans, snapshot.security_groups)
        assert core.tunnels is not None
        core.tunnels.restore(snapshot.tunnels)
        for name, ofport in self.tunnel_rows.items():
            core.tunnels.interface_event(name, "vxlan", ofport, deleted=False)
        for row in self.rows.values():
            core.interface_changed(row, self.now)
        self.core = core
        # what the old core reported is not in the snapshot: the new one answers for its own
        self.reported = {}
        self._flush()
        if settled:
            after = {bridge: self.core.desired(bridge) for bridge in self.core.ledgers}
            assert after == before

    def _settled(self) -> bool:
        """Every port with an ofport wired, nothing in its unplug grace or mid-reboot (a new
        row whose ofport has not come yet: the flows still name the old one, which a restarted
        agent rightly forgets), nothing asked for: what the snapshot holds is then everything
        the flows depend on."""
        return all(
            port.phase is PortPhase.WIRED
            and port.interface is not None
            and port.interface.ofport == port.ofport
            for port in self.core.ports.values()
            if port.ofport is not None
        ) and all(port.ofport is not None for port in self.core.ports.values())

    # -- neutron-server -------------------------------------------------------------------
    @rule(
        iface=st.sampled_from(IFACES),
        kind=st.sampled_from(["valid", "valid", "valid", "unknown", "no_binding", "failed"]),
        network=st.sampled_from(sorted(NETWORKS)),
        admin_up=st.booleans() | st.just(True),
        groups=st.sampled_from(GROUP_SETS),
        port_security=st.booleans() | st.just(True),
    )
    def details_arrive(
        self,
        iface: str,
        kind: str,
        network: str,
        admin_up: bool,
        groups: tuple[str, ...],
        port_security: bool,
    ) -> None:
        outcome: DeviceOutcome
        if kind == "valid":
            extra: dict[str, Any] = dict(NETWORKS[network])
            outcome = details(iface, network, admin_state_up=admin_up, security_groups=groups,
                              port_security_enabled=port_security, **extra)  # fmt: skip
        elif kind == "unknown":
            outcome = UnknownDevice(iface)
        elif kind == "no_binding":
            outcome = NoActiveBinding(iface)
        else:
            outcome = FailedDevice(iface, "server error")
        self.core.details_received({iface: outcome}, self.now)
        self._flush()

    @rule(
        ifaces=st.sets(st.sampled_from(IFACES), min_size=1),
        groups=st.sampled_from(GROUP_SETS),
        web_rules=st.integers(0, 1),
        db_rules=st.integers(0, 1),
        web_members=st.integers(0, len(MEMBER_SETS) - 1),
        db_members=st.integers(0, len(MEMBER_SETS) - 1),
    )
    def security_groups_arrive(
        self,
        ifaces: set[str],
        groups: tuple[str, ...],
        web_rules: int,
        db_rules: int,
        web_members: int,
        db_members: int,
    ) -> None:
        """security_group_info_for_devices' answer: a rule change or a member change is a new
        answer with other rules or other members."""
        info = SecurityGroupInfo(
            devices=dict.fromkeys(sorted(ifaces), groups),
            security_groups={
                "web": SecurityGroup(id="web", rules=RULE_SETS["web"][web_rules]),
                "db": SecurityGroup(id="db", rules=RULE_SETS["db"][db_rules]),
            },
            member_ips={"web": MEMBER_SETS[web_members], "db": MEMBER_SETS[db_members]},
        )
        self.core.security_groups_received(sorted(ifaces), info, self.now)
        self._flush()

    @rule(sg=st.sampled_from(["web", "db"]))
    def security_group_changed(self, sg: str) -> None:
        self.core.security_groups_changed([sg], self.now)
        self._flush()

    @rule(iface=st.sampled_from(IFACES))
    def port_update(self, iface: str) -> None:
        self.core.port_updated(iface, self.now)
        self._flush()

    @rule(iface=st.sampled_from(IFACES))
    def port_delete(self, iface: str) -> None:
        self.core.port_deleted(iface, self.now)
        self._flush()

    # -- the clock --------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([0.05, 0.5, GRACE + 0.1, 30.0]))
    def clock(self, seconds: float) -> None:
        self.now += seconds
        self._flush()

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def flows_are_the_specification(self) -> None:
        spec = desired_flows(self.core.dataplane_state())
        for bridge in self.core.ledgers:
            assert self.core.desired(bridge) == spec.get(bridge, frozenset()), bridge

    @invariant()
    def no_port_is_half_wired(self) -> None:
        ledger = self.core.ledgers[TOPOLOGY.integration_bridge]
        for iface, port in self.core.ports.items():
            owned = ledger.flows_of(port_owner(iface))
            if port.ofport is None:
                assert not owned, iface
            elif port.phase is PortPhase.WIRED:
                assert owned, iface
                assert {p for f in owned for p in referenced_ofports(f)} <= (
                    {port.ofport} | PATCHES["br-int"]
                ), iface
            else:
                assert owned == br_int.dead_port_flows(port.ofport), (iface, port.phase)
        for iface in IFACES:
            if iface not in self.core.ports:
                assert not ledger.flows_of(port_owner(iface)), iface

    @invariant()
    def no_flow_names_a_gone_ofport(self) -> None:
        live = {
            "br-int": {p.ofport for p in self.core.ports.values() if p.ofport is not None},
            "br-tun": set(self.tunnel_rows.values()),
        }
        for bridge in self.core.ledgers:
            allowed = live.get(bridge, set()) | PATCHES[bridge]
            for flow in self.core.desired(bridge):
                gone = referenced_ofports(flow) - allowed
                assert not gone, (bridge, flow)

    @invariant()
    def up_only_with_its_flows(self) -> None:
        ledger = self.core.ledgers[TOPOLOGY.integration_bridge]
        for device, up in self.reported.items():
            if not up:
                continue
            port = self.core.ports.get(device)
            assert port is not None, device
            assert port.phase is PortPhase.WIRED and port.interface is not None, device
            assert ledger.flows_of(port_owner(device)), device


AgentCoreMachine.TestCase.settings = settings(
    max_examples=70,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_agent_core = AgentCoreMachine.TestCase
