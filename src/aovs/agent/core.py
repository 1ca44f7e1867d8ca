"""The agent's decisions, without I/O: events in, a :class:`Plan` out.

The shell (:mod:`aovs.agent.agent`) feeds ``AgentCore`` what OVSDB, neutron-server and the clock
say, then calls :meth:`AgentCore.flush`, which recomputes the flows of the owners those events
made dirty (and nothing else) and returns one plan: a flow delta per bridge (one bundle each),
the OVSDB Port rows to write, what to ask neutron-server, what to report, and one transition
record per port for the log.

Port lifecycle (keyed by iface-id, see :mod:`aovs.agent.state`):

- An Interface row with ``external_ids:iface-id`` appears: details are asked for at once (even
  before OVS gives it an ofport); with a valid ofport the port is PENDING (dead VLAN + drop)
  until they come, or WIRED at once when they are cached (a VM reboot: no RPC).
- Its row is deleted: reported DOWN at once, but its flows stay for ``unplug_grace`` seconds, so
  that a reboot's re-inserted row (new ofport, ~100-200 ms later) swaps old flows for new in ONE
  bundle; after the grace the flows go. A new row for the same iface-id is a re-plug: reported
  DOWN then UP (LP 1963899). A modify that only changes the ofport re-wires (LP 1843870).
- ofport -1: FAILED, no flows, reported down (LP 1992109).
- admin_state_up false, unknown to the server, bound elsewhere: DEAD (dead VLAN 4095 + drop).
- Details that do not parse, a network this host cannot carry, no local VLAN left: FAILED (drop),
  reported down, and asked again with back-off.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aovs.agent.ledger import FlowDelta, FlowLedger
from aovs.agent.schedule import RetrySchedule
from aovs.agent.snapshot import LocalSnapshot
from aovs.agent.state import CachedDetails, InterfaceRow, PortConfig, PortPhase, PortState
from aovs.agent.tunnels import PortChanges, TunnelState
from aovs.agent.vlans import LocalVlanAllocator, VlansExhausted
from aovs.dataplane import compose
from aovs.dataplane.compose import (
    DataplaneState,
    PortPlan,
    Topology,
    Wiring,
    hosted_tunnel_networks,
)
from aovs.extensions.base import (
    NOTHING,
    AgentExtension,
    ExtensionPort,
    MinBandwidthQueue,
    PortContribution,
    ResourceKey,
    combine,
    neutral_columns,
)
from aovs.firewall.base import (
    FilteredPort,
    FirewallDriver,
    IncrementalFirewallDriver,
    SecurityGroupState,
)
from aovs.model import NetworkSegment, PortDetails, SecurityGroup
from aovs.openflow.flows import Flow, Meter
from aovs.owners import FIREWALL_BASE_OWNER, OwnerKey, network_owner, port_of, port_owner
from aovs.pipelines import br_int
from aovs.rpc.resources import (
    ADDRESS_GROUP,
    QOS_POLICY,
    AddressGroupPush,
    AddressGroupValue,
    QosPolicyPush,
    QosPolicyValue,
    QosRuleValue,
    ResourceCache,
    ResourcePush,
    push_values,
)
from aovs.rpc.server_replies import (
    DeviceOutcome,
    FailedDevice,
    NoActiveBinding,
    SecurityGroupInfo,
    UnknownDevice,
)

LOG = logging.getLogger(__name__)

DEFAULT_UNPLUG_GRACE = 1.0
BINDING_DEACTIVATED = "binding deactivated: the port is active on another host"
NO_ACTIVE_BINDING = "bound to another host"


@dataclass(frozen=True, slots=True)
class Transition:
    """One port's change in one flush, for the one-line log after it is committed."""

    iface_id: str
    event: str
    phase: PortPhase
    ofport: int | None
    old_ofport: int | None
    started: float
    reason: str = ""
    name: str | None = None
    flows_changed: bool = False  # its flows are in this plan's bundle (latency is measured)


@dataclass(frozen=True, slots=True)
class Queues:
    """Every wired port's minimum-bandwidth queue (by iface id), and the ports whose Queue
    rows stay as OVSDB has them (waiting for their details or policy: an agent restart
    removes nothing it will want back)."""

    wanted: Mapping[str, MinBandwidthQueue]
    keep: frozenset[str]


@dataclass
class Plan:
    """Everything one flush asks the shell to do, in this order: flows and Port rows
    (concurrently), then reports; fetches at once."""

    flows: dict[str, FlowDelta] = field(default_factory=dict)
    port_configs: dict[str, PortConfig] = field(default_factory=dict)  # by Port name
    fetch_details: list[str] = field(default_factory=list)
    fetch_security_groups: list[str] = field(default_factory=list)  # device ids
    reports: list[tuple[str, bool]] = field(default_factory=list)  # (device, up), in order
    transitions: list[Transition] = field(default_factory=list)
    state_changed: bool = False  # something the snapshot holds changed
    tunnel_ports: PortChanges = field(default_factory=PortChanges)  # br-tun, one transaction
    # agent extensions: Interface columns to set, by Interface name (after the bundle), and
    # the versioned objects to pull ("<type>/<id>", see resource_key)
    interface_columns: dict[str, dict[str, int]] = field(default_factory=dict)
    fetch_resources: list[str] = field(default_factory=list)
    queues: Queues | None = None  # the whole set, when it changed (after the bundle)
    # br-int's meters, the whole set, when it changed (sent around the bundle: see
    # aovs.openflow.meters)
    meters: frozenset[Meter] | None = None

    @property
    def flow_changes(self) -> int:
        return sum(len(delta) for delta in self.flows.values())

    def then(self, later: Plan) -> Plan:
        """This plan followed by ``later``, carried out as one (queued plans are merged)."""
        return Plan.merged((self, later))

    @staticmethod
    def merged(plans: Sequence[Plan]) -> Plan:
        """``plans`` in order, carried out as one (a burst's slices: one bundle per bridge),
        each bridge's deltas merged in one pass."""
        by_bridge: dict[str, list[FlowDelta]] = {}
        for plan in plans:
            for bridge, delta in plan.flows.items():
                by_bridge.setdefault(bridge, []).append(delta)
        return Plan(
            flows={
                bridge: deltas[0] if len(deltas) == 1 else FlowDelta.merged(deltas)
                for bridge, deltas in by_bridge.items()
            },
            port_configs={k: v for plan in plans for k, v in plan.port_configs.items()},
            fetch_details=[d for plan in plans for d in plan.fetch_details],
            fetch_security_groups=[d for plan in plans for d in plan.fetch_security_groups],
            reports=[r for plan in plans for r in plan.reports],
            transitions=[t for plan in plans for t in plan.transitions],
            state_changed=any(plan.state_changed for plan in plans),
            tunnel_ports=PortChanges(
                add=tuple(p for plan in plans for p in plan.tunnel_ports.add),
                delete=tuple(p for plan in plans for p in plan.tunnel_ports.delete),
            ),
            interface_columns={k: v for plan in plans for k, v in plan.interface_columns.items()},
            fetch_resources=[r for plan in plans for r in plan.fetch_resources],
            queues=next((p.queues for p in reversed(plans) if p.queues is not None), None),
            meters=next((p.meters for p in reversed(plans) if p.meters is not None), None),
        )


def resource_key(key: ResourceKey) -> str:
    """A (type, id) as a schedule key: ``"<type>/<id>"``."""
    return f"{key[0]}/{key[1]}"


def resource_of(key: str) -> ResourceKey:
    resource_type, _, resource_id = key.partition("/")
    return resource_type, resource_id


class AgentCore:
    def __init__(
        self,
        topology: Topology,
        firewall: FirewallDriver,
        *,
        needs_security_groups: bool = True,
        unplug_grace: float = DEFAULT_UNPLUG_GRACE,
        retry_first_delay: float = 1.0,
        retry_cap: float = 60.0,
        tunnels: TunnelState | None = None,
        extensions: Sequence[AgentExtension] = (),
    ) -> None:
        self.topology = topology
        self.tunnels = tunnels  # the overlay's state, when [agent] tunnel_types is set
        self.firewall = firewall
        self.needs_security_groups = needs_security_groups
        self.unplug_grace = unplug_grace
        self.ports: dict[str, PortState] = {}
        self.rows: dict[str, InterfaceRow] = {}  # Interface uuid -> row (with an iface-id)
        self.details: dict[str, CachedDetails] = {}
        self.refusals: dict[str, tuple[PortPhase, str]] = {}  # what the server said instead
        self.networks: dict[str, NetworkSegment] = {}
        self.vlans = LocalVlanAllocator()
        self.sgs = SecurityGroupState(groups={}, members={})
        # a port's groups come from security_group_info_for_devices, not from its details
        self.device_groups: dict[str, tuple[str, ...]] = {}
        # the one cache of neutron's versioned objects (pushed address groups, QoS policies)
        self.resources = ResourceCache()
        self.extensions = tuple(extensions)
        self.resource_fetch = RetrySchedule(retry_first_delay, retry_cap)
        self.extension_problems: dict[str, tuple[str, ...]] = {}  # iface id -> not applied
        # ofport -> ports unplugged from it in their grace (checked when a port takes it)
        self._grace_ofports: dict[int, set[str]] = {}
        # by extension name: the ports it contributes to, and those with a problem it reported
        self.extension_ports: dict[str, set[str]] = {e.name: set() for e in self.extensions}
        self.extension_problem_ports: dict[str, set[str]] = {e.name: set() for e in self.extensions}
        self._contributions: dict[str, PortContribution] = {}  # iface id -> its extensions'
        self._needed_by: dict[ResourceKey, set[str]] = {}  # object -> iface ids reading it
        self._wanted_resources: set[ResourceKey] = set()
        self._missing: set[ResourceKey] = set()  # deleted, or a pull found no such object
        self._dirty_contributions: set[str] = set()  # ports reading a changed object
        self._neutral_columns = neutral_columns(self.extensions)
        self._interface_sent: dict[str, tuple[str, dict[str, int]]] = {}  # name -> (row, cols)
        self._queues: dict[str, MinBandwidthQueue] = {}  # iface id -> its minimum-bandwidth queue
        self._queue_keep: set[str] = set()  # iface ids whose queue is not known yet
        self._queues_sent: Queues | None = None
        self.rejected_meters: dict[Meter, str] = {}  # br-int refused them (the shell says)
        self._meters_changed = False
        self.port_rows: dict[str, tuple[int | None, dict[str, str]]] = {}  # Port name -> row
        self.ledgers: dict[str, FlowLedger] = {}
        self.details_fetch = RetrySchedule(retry_first_delay, retry_cap)
        self.sg_fetch = RetrySchedule(retry_first_delay, retry_cap)
        self._net_members: dict[str, set[str]] = {}
        self._local: dict[str, br_int.LocalPort] = {}  # iface id -> as the switching sees it
        self._filtered: dict[str, FilteredPort] = {}
        self._config_sent: dict[str, tuple[str, PortConfig]] = {}  # name -> (row, config)
        self._bridge_owners: set[tuple[str, OwnerKey]] = set()
        self._shared_owners: set[OwnerKey] = set()
        self._dirty_ports: set[str] = set()
        self._dirty_networks: set[str] = set()
        self._topology_dirty = True
        self._sgs_before: SecurityGroupState | None = None
        self._reports: list[tuple[str, bool]] = []
        self._reported: dict[str, bool] = {}  # device -> last report made (True = up)
        self._removed: dict[str, tuple[PortState, int | None]] = {}
        self._state_changed = False
        # snapshot ports not yet matched against OVSDB's rows (see ``flush``)
        self._restored: set[str] | None = None
        self._ensure_ledgers()

    # -- what OVSDB says ------------------------------------------------------------------
    def set_topology(self, topology: Topology) -> None:
        if topology != self.topology:
            self.topology = topology
            self._topology_dirty = True
            self._ensure_ledgers()
            for port in self.ports.values():  # a network may have become (un)carriable
                self._evaluate(port, port.since)

    def port_row(self, name: str, tag: int | None, other_config: Mapping[str, str]) -> None:
        """An OVSDB Port row (what is written there now)."""
        self.port_rows[name] = (tag, dict(other_config))

    def port_row_deleted(self, name: str) -> None:
        self.port_rows.pop(name, None)
        self._config_sent.pop(name, None)
        self._interface_sent.pop(name, None)

    def recover_vlans(self) -> None:
        """Offer each network the local VLAN OVSDB's Port rows say it had (neutron's
        other_config net_uuid/tag), so an agent restart computes the same flows."""
        hints = []
        for tag, other in self.port_rows.values():
            net = other.get("net_uuid")
            vlan = other.get("tag")
            if net and vlan and vlan.isdigit() and tag == int(vlan):
                hints.append((net, int(vlan)))
        self.vlans.remember(hints)

    def interface_changed(self, row: InterfaceRow, now: float) -> None:
        """An Interface row with an iface-id was inserted or modified."""
        previous = self.rows.get(row.uuid)
        self.rows[row.uuid] = row
        if previous is not None and previous.iface_id != row.iface_id:
            self._row_gone(previous, now)
        cached = self.details.get(row.iface_id)
        unknown = cached is None and row.iface_id not in self.refusals
        if (unknown or (cached is not None and not cached.confirmed)) and (
            row.iface_id not in self.details_fetch
        ):
            # asked even before it has an ofport; snapshot details are confirmed or corrected
            self.details_fetch.want([row.iface_id], now)
            if self.needs_security_groups and row.iface_id not in self.sg_fetch:
                self.sg_fetch.want([row.iface_id], now)
        port = self.ports.get(row.iface_id)
        if port is None:
            if row.ofport is None:
                return
            port = PortState(iface_id=row.iface_id, interface=row, ofport=None, since=now)
            self.ports[row.iface_id] = port
            self._removed.pop(row.iface_id, None)
            port.notes.append("plugged")
        elif port.interface is None or port.interface.uuid != row.uuid:
            self._replug(port, row, now)
        else:
            port.interface = row
        if row.ofport is None:
            return  # a re-plug keeps the old flows until OVS assigns the new ofport
        self._place(port, row.ofport, now)

    def interface_deleted(self, uuid: str, now: float) -> None:
        row = self.rows.pop(uuid, None)
        if row is not None:
            self._row_gone(row, now)

    # -- what neutron-server says ---------------------------------------------------------
    def details_received(self, outcomes: Mapping[str, DeviceOutcome], now: float) -> None:
        failed: list[str] = []
        for device, outcome in outcomes.items():
            if isinstance(outcome, PortDetails):
                groups = self.device_groups.get(device)
                if groups is not None:
                    outcome = outcome.model_copy(update={"security_groups": groups})
                self.details[device] = CachedDetails(outcome, confirmed=True)
                self.refusals.pop(device, None)
                self._state_changed = True
                # answering details moves an ACTIVE port back to BUILD on the server (ML2's
                # get_device_details): an UP already sent must be sent again, or the port stays
                # BUILD after every port_update, network_update or binding activation
                if self._reported.get(device) is True:
                    del self._reported[device]
                missing = self.needs_security_groups and self._missing_groups(outcome)
                if missing and device not in self.sg_fetch:
                    self.sg_fetch.want([device], now)
            elif isinstance(outcome, UnknownDevice | NoActiveBinding):
                self.details.pop(device, None)
                reason = (
                    "unknown to neutron-server"
                    if isinstance(outcome, UnknownDevice)
                    else NO_ACTIVE_BINDING
                )
                self.refusals[device] = (PortPhase.DEAD, reason)
                self._state_changed = True
            elif isinstance(outcome, FailedDevice):
                failed.append(device)
                if device not in self.details:
                    self.refusals[device] = (PortPhase.FAILED, outcome.reason)
                else:
                    LOG.warning(
                        "details refresh failed; keeping the cached ones",
                        extra={"iface_id": device, "reason": outcome.reason},
                    )
        self.details_fetch.done([d for d in outcomes if d not in failed], now)
        if failed:
            delay = self.details_fetch.failed(failed, now)
            LOG.warning(
                "device details failed; retrying",
                extra={"devices": len(failed), "retry_in_s": delay, "first": failed[0]},
            )
        for device in outcomes:
            port = self.ports.get(device)
            if port is not None:
                self._evaluate(port, now)

    def security_groups_received(
        self, devices: Iterable[str], info: SecurityGroupInfo, now: float
    ) -> None:
        self.sg_fetch.done(devices, now)
        groups: dict[str, SecurityGroup] = dict(self.sgs.groups)
        members = {k: dict(v) for k, v in self.sgs.members.items()}
        groups.update(info.security_groups)
        for sg_id, by_type in info.member_ips.items():
            pushed = self.resources.get(ADDRESS_GROUP, sg_id)
            members[sg_id] = (
                pushed.by_ethertype() if isinstance(pushed, AddressGroupValue) else dict(by_type)
            )
        new = SecurityGroupState(groups=groups, members=members)
        if new.groups != self.sgs.groups or new.members != self.sgs.members:
            if self._sgs_before is None:
                self._sgs_before = self.sgs
            self.sgs = new
            self._state_changed = True
        touched = set()
        for device, device_groups in info.devices.items():
            self.device_groups[device] = device_groups
            cached = self.details.get(device)
            if cached is not None and cached.details.security_groups != device_groups:
                details = cached.details.model_copy(update={"security_groups": device_groups})
                self.details[device] = CachedDetails(details, cached.confirmed)
                touched.add(device)
        for port in self.ports.values():
            if port.phase is PortPhase.PENDING or port.iface_id in touched:
                self._evaluate(port, now)

    def security_groups_unavailable(self, devices: Iterable[str], now: float) -> None:
        self.sg_fetch.failed(devices, now)

    def is_local(self, iface_id: str) -> bool:
        """Whether a port id concerns this host: plugged here, or asked or answered about.

        neutron fans port_update / port_delete out to every agent; acting on other hosts'
        ports would cost a details call each (a storm at cloud scale) and memory forever."""
        return (
            iface_id in self.ports
            or iface_id in self.details
            or iface_id in self.details_fetch
            or iface_id in self.refusals
        )

    def port_updated(self, iface_id: str, now: float) -> None:
        """port_update notification: ask again (the cached details keep wiring meanwhile)."""
        if not self.is_local(iface_id):
            return
        self.details_fetch.want([iface_id], now)
        if self.needs_security_groups and iface_id in self.ports:
            self.sg_fetch.want([iface_id], now)

    def binding_activated(self, iface_id: str, now: float) -> None:
        """Live migration: this host's binding became active; wire the port (as if re-added:
        the server now answers its details instead of no_active_binding)."""
        if not self.is_local(iface_id):
            return
        if self.refusals.get(iface_id, (None, ""))[1] == BINDING_DEACTIVATED:
            self.refusals.pop(iface_id)
        self.details_fetch.want([iface_id], now)
        if self.needs_security_groups:
            self.sg_fetch.want([iface_id], now)

    def binding_deactivated(self, iface_id: str, now: float) -> None:
        """Live migration: the port's active binding moved to another host; unwire it here
        (dead VLAN + drop) until a binding on this host is activated again."""
        if self.is_local(iface_id):
            self._refuse(iface_id, BINDING_DEACTIVATED, now)

    def address_group_changed(
        self,
        group_id: str,
        addresses: Mapping[str, frozenset[str]] | None,
        revision: int | None = None,
    ) -> None:
        """An address group's CIDRs changed, or it was deleted (``addresses`` None): pushed as
        an AddressGroup object, the only way such a change reaches agents.

        Every pushed group is kept (an address group is small, and few), so a
        security_group_info reply computed before the push cannot bring back addresses the
        push removed: the pushed value wins over any reply, and an older revision never
        overrides a newer one."""
        known = self.resources.get(ADDRESS_GROUP, group_id)
        known_revision = None if known is None else known.revision
        if revision is not None and known_revision is not None and revision < known_revision:
            return
        if addresses is None:
            push = AddressGroupPush("deleted", (AddressGroupValue(group_id, frozenset()),))
            value: dict[str, frozenset[str]] = {}
        else:
            cidrs = frozenset().union(*addresses.values())
            push = AddressGroupPush("updated", (AddressGroupValue(group_id, cidrs, revision),))
            value = dict(addresses)
        self.resources.apply(push)
        referenced = any(
            rule.remote_address_group_id == group_id
            for group in self.sgs.groups.values()
            for rule in group.rules
        )
        if not referenced or self.sgs.members.get(group_id) == value:
            return
        members = {**self.sgs.members, group_id: value}
        if self._sgs_before is None:
            self._sgs_before = self.sgs
        self.sgs = SecurityGroupState(groups=self.sgs.groups, members=members)
        self._state_changed = True

    @property
    def pushed_address_groups(self) -> dict[str, tuple[int | None, dict[str, frozenset[str]]]]:
        """Address group id -> (revision, CIDRs by ethertype), as last pushed."""
        groups = self.resources.of_type(ADDRESS_GROUP)
        return {
            group_id: (group.revision, group.by_ethertype())
            for group_id, group in groups.items()
            if isinstance(group, AddressGroupValue)
        }

    def resources_received(self, push: ResourcePush, now: float) -> None:
        """Versioned objects pushed by the server or pulled by us (not address groups: see
        :meth:`address_group_changed`): the ports whose extensions read a changed one are
        recomputed."""
        resource_type, values = push_values(push)
        keys = [(resource_type, value.id) for value in values]
        self.resource_fetch.done([resource_key(k) for k in keys], now)
        dirty = {(resource_type, resource_id) for resource_id in self.resources.apply(push)}
        if push.event_type == "deleted":  # known not to exist: ports stop waiting for it
            read = [k for k in keys if k in self._needed_by and k not in self._missing]
            dirty.update(read)
            self._missing.update(read)  # only what a port reads: forgotten with its readers
        else:
            self._missing.difference_update(keys)
        for key in dirty:
            self._dirty_contributions.update(self._needed_by.get(key, ()))
            if key[0] == QOS_POLICY and key in self._needed_by:
                self._state_changed = True  # the snapshot keeps the policies ports use

    def resources_unavailable(self, keys: Iterable[str], now: float) -> None:
        """A pull failed: asked again with back-off."""
        self.resource_fetch.failed(keys, now)

    def port_deleted(self, iface_id: str, now: float) -> None:
        if self.is_local(iface_id):
            self._refuse(iface_id, "deleted in neutron", now)

    def _refuse(self, iface_id: str, reason: str, now: float) -> None:
        """Forget the port's details and keep it DEAD for ``reason`` (no more asking)."""
        self.details.pop(iface_id, None)
        self.details_fetch.forget([iface_id])
        self.refusals[iface_id] = (PortPhase.DEAD, reason)
        self._state_changed = True
        port = self.ports.get(iface_id)
        if port is not None:
            self._evaluate(port, now)

    def network_changed(self, network_id: str, now: float) -> None:
        """network_update / network_delete: ask again about the ports on it (a segmentation
        change, an MTU change, or their deletion follows from the answers)."""
        devices = [d for d, c in self.details.items() if c.details.network_id == network_id]
        self.details_fetch.want(devices, now)

    def security_groups_changed(self, sg_ids: Iterable[str], now: float) -> None:
        """A rule or member update for these groups: re-fetch for the ports that use them,
        directly or as a remote group."""
        changed = set(sg_ids)
        referencing = {
            sg.id
            for sg in self.sgs.groups.values()
            if any(rule.remote_id in changed for rule in sg.rules)
        }
        wanted = changed | referencing
        devices = [
            iface_id
            for iface_id, cached in self.details.items()
            if iface_id in self.ports and wanted & set(cached.details.security_groups)
        ]
        self.sg_fetch.want(devices, now)

    # -- snapshot ------------------------------------------------------------------------
    def restore(
        self,
        details: Iterable[PortDetails],
        local_vlans: Mapping[str, int],
        sgs: SecurityGroupState,
    ) -> None:
        """Prime the caches from the snapshot: unconfirmed, used to wire before the server
        answers; OVSDB's Port rows win over the snapshot's VLANs (call recover_vlans first)."""
        self._restored = set()
        for item in details:
            self._restored.add(item.device)
            self.details.setdefault(item.device, CachedDetails(item, confirmed=False))
            self.device_groups.setdefault(item.device, item.security_groups)
        self.vlans.remember(local_vlans.items())
        self.sgs = sgs

    # -- the clock ---------------------------------------------------------------------
    def expire(self, now: float) -> None:
        for port in list(self.ports.values()):
            if port.unplugged_at is not None and now - port.unplugged_at >= self.unplug_grace:
                self._remove(port, now)

    def next_deadline(self) -> float | None:
        deadlines = [
            port.unplugged_at + self.unplug_grace
            for port in self.ports.values()
            if port.unplugged_at is not None
        ]
        for schedule in (self.details_fetch, self.sg_fetch, self.resource_fetch):
            deadline = schedule.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        return min(deadlines, default=None)

    # -- the flush -----------------------------------------------------------------------
    def flush(
        self, now: float, max_ports: int | None = None, flow_budget: int | None = None
    ) -> Plan:
        """Recompute the dirty owners. With ``max_ports`` or ``flow_budget`` (FlowMods), stop
        after the port that exhausts it: the rest stay dirty (see :attr:`has_dirty_ports`), so
        a burst of thousands of ports is committed in slices and the event loop stays
        responsive between them. A port is never split."""
        plan = Plan()
        if self._restored is not None:
            # the first flush after the restore, with OVSDB's rows applied: a port of the
            # snapshot that is gone was unplugged while we were down (or its DOWN never went)
            for device in sorted(self._restored - self.ports.keys()):
                self._report(device, up=False)
            self._restored = None
        filtered_before = dict(self._filtered) if self._dirty_ports else self._filtered
        if self._topology_dirty:
            self._flush_topology()
        pending = list(self._dirty_ports)
        batch: set[str] = set()
        for iface_id in pending:
            if max_ports is not None and len(batch) >= max_ports:
                break
            if flow_budget is not None and batch and self._pending_cost() >= flow_budget:
                break
            batch.add(iface_id)
            self._flush_port(iface_id, plan)
        self._dirty_ports = set(pending[len(batch) :])
        if self._dirty_contributions:
            self._refresh_contributions(batch, plan)
        for network_id in self._dirty_networks:
            self._flush_network(network_id)
        self._flush_firewall(filtered_before, batch)
        if self.tunnels is not None:
            self._flush_tunnels(plan)
        self._dirty_networks.clear()
        for bridge, ledger in self.ledgers.items():
            delta = ledger.take_delta()
            if delta:
                plan.flows[bridge] = delta
        if self.extensions:
            self._plan_queues(plan)
            if self._meters_changed:
                self._meters_changed = False
                plan.meters = self.desired_meters()
        if self._wanted_resources:
            wanted = [resource_key(k) for k in self._wanted_resources if k not in self.resources]
            self.resource_fetch.want([k for k in wanted if k not in self.resource_fetch], now)
            self._wanted_resources.clear()
        plan.fetch_resources = self.resource_fetch.take_due(now)
        plan.fetch_details = self.details_fetch.take_due(now)
        if self.needs_security_groups:
            plan.fetch_security_groups = self.sg_fetch.take_due(now)
        plan.reports, self._reports = self._reports, []
        plan.state_changed, self._state_changed = self._state_changed, False
        return plan

    def _pending_cost(self) -> int:
        cost = 0
        for ledger in self.ledgers.values():
            cost += ledger.pending
        return cost

    @property
    def has_dirty_ports(self) -> bool:
        return bool(self._dirty_ports)

    def desired(self, bridge: str) -> frozenset[Flow]:
        """What this core holds for ``bridge``: once every dirty port is flushed, always
        ``compose.desired_flows(self.dataplane_state())[bridge]`` (the specification)."""
        return self.ledgers[bridge].desired()

    def dataplane_state(self) -> DataplaneState:
        """The state the desired flows are a function of (see :func:`compose.desired_flows`)."""
        ports = {}
        for iface_id, port in self.ports.items():
            plan = self._port_plan(port)
            if plan is not None:
                ports[iface_id] = plan
        return DataplaneState(
            topology=self.topology,
            firewall=self.firewall,
            ports=ports,
            networks=dict(self.networks),
            local_vlans=self.vlans.assignments(),
            security_groups=self.sgs,
            tunnels=self.tunnels,
        )

    def snapshot(self) -> LocalSnapshot:
        """What a host reboot needs to rebuild this dataplane (see :mod:`aovs.agent.snapshot`)."""
        ports = {i: self.details[i].details for i in self.ports if i in self.details}
        tunnels = self.tunnels.snapshot() if self.tunnels is not None else {}
        qos = {
            key[1]: dataclasses.asdict(value)
            for key in self._needed_by
            if key[0] == QOS_POLICY
            and isinstance(value := self.resources.get(*key), QosPolicyValue)
        }
        return LocalSnapshot(ports, self.vlans.assignments(), self.sgs, tunnels, qos)

    def restore_resources(self, qos_policies: Mapping[str, Any], now: float) -> None:
        """The snapshot's QoS policies: applied at once (an agent restart keeps its QoS flows
        and meters), pulled again all the same (a change while the agent was down)."""
        try:
            policies = tuple(
                QosPolicyValue(str(data["id"]), tuple(QosRuleValue(**rule) for rule in
                               data["rules"]), data.get("revision"))
                for data in qos_policies.values()
            )  # fmt: skip
        except (KeyError, TypeError) as exc:
            LOG.warning("snapshot's QoS policies ignored", extra={"error": str(exc)})
            return
        if policies:
            self.resources.apply(QosPolicyPush("updated", policies))
            self.resource_fetch.want([resource_key((QOS_POLICY, p.id)) for p in policies], now)

    def counts(self) -> dict[str, int]:
        counts = {phase.value: 0 for phase in PortPhase}
        for port in self.ports.values():
            counts[port.phase.value] += 1
        return counts

    # -- transitions ---------------------------------------------------------------------
    def _row_gone(self, row: InterfaceRow, now: float) -> None:
        port = self.ports.get(row.iface_id)
        if port is None or port.interface is None or port.interface.uuid != row.uuid:
            return
        port.interface = None
        port.unplugged_at = now
        if port.ofport is not None:
            self._grace_ofports.setdefault(port.ofport, set()).add(port.iface_id)
        port.since = now
        port.notes.append("unplugged")
        self._report(port.iface_id, up=False)
        if port.ofport is None:
            self._remove(port, now)
        else:
            self._dirty_ports.add(port.iface_id)  # its Port row is gone: nothing else to do

    def _replug(self, port: PortState, row: InterfaceRow, now: float) -> None:
        if port.interface is not None:  # the new row came before the old one's delete
            self.rows.pop(port.interface.uuid, None)
        self._report(port.iface_id, up=False)  # nova waits for DOWN -> UP (LP 1963899)
        port.interface = row
        port.unplugged_at = None
        port.plugs += 1
        port.since = now
        port.notes.append("replugged")
        self._dirty_ports.add(port.iface_id)

    def _place(self, port: PortState, ofport: int, now: float) -> None:
        if ofport == -1:
            if port.phase is not PortPhase.FAILED or port.ofport is not None:
                self._set_phase(port, PortPhase.FAILED, "ofport -1: OVS could not add it", now)
                port.ofport = None
                self._set_network(port, None)
                self._dirty_ports.add(port.iface_id)
            return
        if ofport != port.ofport:
            self._end_grace_on(ofport, port, now)
            if port.ofport is not None:
                port.notes.append(f"ofport {port.ofport}->{ofport}")
            port.ofport = ofport
            port.since = now
            self._dirty_ports.add(port.iface_id)
        self._evaluate(port, now)

    def _end_grace_on(self, ofport: int, port: PortState, now: float) -> None:
        """``port`` takes ``ofport``: a port unplugged from it, its flows kept for the grace,
        goes now. Its flows match the new VM's traffic (its firewall rules on in_port and
        reg5 would admit what the old VM was allowed), and the grace is for that same VM
        coming back, not for another VM on its number."""
        holders = self._grace_ofports.pop(ofport, None)
        for iface_id in holders or ():
            other = self.ports.get(iface_id)
            if other is None or other is port or other.interface is not None:
                continue  # replugged or removed since
            if other.ofport == ofport:
                other.notes.append(f"ofport {ofport} taken by {port.iface_id}")
                self._remove(other, now)

    def _evaluate(self, port: PortState, now: float) -> None:
        """Decide the phase of a port from what is known about it."""
        if port.ofport is None:
            return
        cached = self.details.get(port.iface_id)
        refusal = self.refusals.get(port.iface_id)
        if cached is None:
            phase, reason = refusal if refusal is not None else (PortPhase.PENDING, "")
            self._set_phase(port, phase, reason, now)
            self._set_network(port, None)
            return
        details = cached.details
        segment = details.segment
        problem = compose.segment_problem(self.topology, segment)
        if not details.admin_state_up:
            self._set_phase(port, PortPhase.DEAD, "admin_state_up is false", now)
            self._set_network(port, None)
        elif problem is not None:
            self._set_phase(port, PortPhase.FAILED, problem, now)
            self._set_network(port, None)
        elif self.needs_security_groups and self._missing_groups(details):
            if port.iface_id not in self.sg_fetch:
                self.sg_fetch.want([port.iface_id], now)
            self._set_phase(port, PortPhase.PENDING, "waiting for security groups", now)
            self._set_network(port, None)
        else:
            if self.networks.get(details.network_id) != segment:
                self.networks[details.network_id] = segment
                self._dirty_networks.add(details.network_id)
            try:
                self._set_network(port, details.network_id)
            except VlansExhausted as exc:
                self._set_phase(port, PortPhase.FAILED, str(exc), now)
                return
            self._set_phase(port, PortPhase.WIRED, "", now)
            if self._filtered.get(port.iface_id) != self._filtered_port(port):
                self._dirty_ports.add(port.iface_id)
            # details restored from the snapshot wait for the server; a port whose row is gone
            # (flows kept for the unplug grace) was reported DOWN and must stay so
            if cached.confirmed and port.interface is not None:
                self._report(port.iface_id, up=True)

    def _set_phase(self, port: PortState, phase: PortPhase, reason: str, now: float) -> None:
        if port.phase is phase and port.reason == reason:
            return
        port.notes.append(phase.value)
        port.phase = phase
        port.reason = reason
        self._dirty_ports.add(port.iface_id)
        # a live migration's destination (its binding not active yet) says nothing, as neutron's
        # agent: the server hands a DOWN from it to l2population (fdb removals)
        silent = reason == NO_ACTIVE_BINDING and not self._reported.get(port.iface_id)
        down = phase is not PortPhase.WIRED and (phase is not PortPhase.PENDING or reason)
        if down and not silent:
            self._report(port.iface_id, up=False)

    def _set_network(self, port: PortState, network_id: str | None) -> None:
        if port.network_id == network_id:
            return
        if network_id is not None:
            self.vlans.allocate(network_id)  # raises VlansExhausted before anything changes
            self._net_members.setdefault(network_id, set()).add(port.iface_id)
            self._dirty_networks.add(network_id)
            self._state_changed = True
        old = port.network_id
        port.network_id = network_id
        self._dirty_ports.add(port.iface_id)
        if old is not None:
            members = self._net_members.get(old, set())
            members.discard(port.iface_id)
            if not members:
                self._net_members.pop(old, None)
                self.vlans.release(old)
                self._dirty_networks.add(old)
                self._state_changed = True

    def _remove(self, port: PortState, now: float) -> None:
        port.notes.append("removed")
        self._set_network(port, None)
        old = port.ofport
        port.ofport = None
        self._dirty_ports.add(port.iface_id)
        del self.ports[port.iface_id]
        self._removed[port.iface_id] = (port, old)

    def _report(self, device: str, *, up: bool) -> None:
        if self._reported.get(device) is up:
            return
        self._reported[device] = up
        self._reports.append((device, up))

    def _missing_groups(self, details: PortDetails) -> bool:
        if not details.port_security_enabled:
            return False
        if details.device not in self.device_groups:
            return True
        return any(sg not in self.sgs.groups for sg in details.security_groups)

    # -- flushing helpers ------------------------------------------------------------------
    def _ensure_ledgers(self) -> None:
        for bridge in self.topology.bridges:
            self.ledgers.setdefault(bridge, FlowLedger(bridge))

    def _replace(self, owner: OwnerKey, flows: Mapping[str, frozenset[Flow]]) -> None:
        for bridge, ledger in self.ledgers.items():
            ledger.replace(owner, flows.get(bridge, frozenset()))

    def _flush_topology(self) -> None:
        owners = compose.bridge_flows(self.topology)
        owners[FIREWALL_BASE_OWNER] = compose.firewall_base_flows(self.topology, self.firewall)
        for owner, flows in owners.items():
            self._replace(owner, flows)
        for bridge, owner in self._bridge_owners:
            if owner not in owners and bridge in self.ledgers:
                self.ledgers[bridge].replace(owner, ())
        self._bridge_owners = {(b, o) for o in owners for b in self.ledgers}
        self._dirty_networks.update(self.vlans.assignments())
        self._dirty_ports.update(self.ports)
        self._topology_dirty = False

    def _filtered_port(self, port: PortState) -> FilteredPort | None:
        plan = self._port_plan(port)
        return plan.filtered() if plan is not None else None

    def _port_plan(self, port: PortState) -> PortPlan | None:
        if port.ofport is None:
            return None
        if port.phase is PortPhase.WIRED and port.network_id is not None:
            cached = self.details[port.iface_id]
            vlan = self.vlans.get(port.network_id)
            extra = self._contributions.get(port.iface_id, NOTHING).flows
            return PortPlan(port.iface_id, port.ofport, Wiring.WIRED, cached.details, vlan, extra)
        return PortPlan(port.iface_id, port.ofport, Wiring.DEAD)

    def _flush_port(self, iface_id: str, plan: Plan) -> None:
        port = self.ports.get(iface_id)
        owner = port_owner(iface_id)
        if self.extensions:
            self._contribute(iface_id, port)
        if port is None:
            self._replace(owner, {})
            unwired = self._filtered.pop(iface_id, None)
            self._local.pop(iface_id, None)
            if unwired is not None:
                self._dirty_networks.add(unwired.details.network_id)
            removed = self._removed.pop(iface_id, None)
            if removed is not None:
                gone, old = removed
                plan.transitions.append(self._transition(gone, "removed", old))
            return
        port_plan = self._port_plan(port)
        flows = (
            compose.port_flows(self.topology, port_plan, self.firewall, self.sgs)
            if port_plan is not None
            else {}
        )
        before = [ledger.flows_of(owner) for ledger in self.ledgers.values()]
        self._replace(owner, flows)
        changed = before != [ledger.flows_of(owner) for ledger in self.ledgers.values()]
        filtered = port_plan.filtered() if port_plan is not None else None
        previous = self._filtered.get(iface_id)
        if filtered != previous:  # its network's flooding follows its ofport, MAC, trust
            for wired in (previous, filtered):
                if wired is not None:
                    self._dirty_networks.add(wired.details.network_id)
        if filtered is None:
            self._filtered.pop(iface_id, None)
            self._local.pop(iface_id, None)
        else:
            self._filtered[iface_id] = filtered
            if filtered != previous:
                self._local[iface_id] = compose.local_port(filtered)
        config = self._port_config(port)
        if config is not None and port.interface is not None:
            name = port.interface.name
            sent = (port.interface.uuid, config)
            tag, other = self.port_rows.get(name, (None, {}))
            if not config.satisfied_by(tag, other) and self._config_sent.get(name) != sent:
                plan.port_configs[name] = config
                self._config_sent[name] = sent
        if self._neutral_columns and port.interface is not None:
            self._interface_columns(port, plan)
        if port.notes:
            transition = self._transition(port, " ".join(port.notes), None)
            plan.transitions.append(dataclasses.replace(transition, flows_changed=changed))
            port.notes.clear()

    # -- agent extensions ------------------------------------------------------------------
    def _contribute(self, iface_id: str, port: PortState | None) -> None:
        """Ask the extensions what a port needs now (nothing unless it is wired)."""
        ext_port = None
        if (
            port is not None
            and port.phase is PortPhase.WIRED
            and port.network_id is not None
            and port.ofport is not None
        ):
            vlan = self.vlans.get(port.network_id)
            cached = self.details.get(iface_id)
            if vlan is not None and cached is not None:
                name = port.interface.name if port.interface is not None else None
                ext_port = ExtensionPort(iface_id, name, port.ofport, cached.details, vlan)
        parts: dict[str, PortContribution] = {}
        if ext_port is not None:
            parts = {
                extension.name: self._ask(extension, ext_port) for extension in self.extensions
            }
        contribution = combine(parts.values()) if parts else NOTHING
        # what each extension could not apply: its rules' problems and its refused meters
        problems_by = {name: part.problems + self._meter_problems(part)
                       for name, part in parts.items()}  # fmt: skip
        self._count_by_extension(iface_id, parts, problems_by)
        old = self._contributions.pop(iface_id, NOTHING)
        if contribution:
            self._contributions[iface_id] = contribution
        for key in old.needs - contribution.needs:
            readers = self._needed_by.get(key)
            if readers is not None:
                readers.discard(iface_id)
                if not readers:
                    del self._needed_by[key]
                    self._missing.discard(key)
        for key in contribution.needs:
            self._needed_by.setdefault(key, set()).add(iface_id)
            if key not in self.resources and key not in self._missing:
                self._wanted_resources.add(key)
        self._track_queue(iface_id, port, contribution)
        if contribution.meters != old.meters:
            self._meters_changed = True
        problems = tuple(problem for each in problems_by.values() for problem in each)
        if problems != self.extension_problems.get(iface_id, ()):
            if problems:
                self.extension_problems[iface_id] = problems
                troubled = sorted(name for name, each in problems_by.items() if each)
                LOG.warning(
                    "agent extension could not apply everything to the port",
                    extra={"iface_id": iface_id, "extensions": ",".join(troubled),
                           "problems": "; ".join(problems)},
                )  # fmt: skip
            else:
                self.extension_problems.pop(iface_id, None)

    def _count_by_extension(
        self,
        iface_id: str,
        parts: Mapping[str, PortContribution],
        problems_by: Mapping[str, tuple[str, ...]],
    ) -> None:
        """Which extensions act on the port, and which of them could not apply everything."""
        for name, ports in self.extension_ports.items():
            part = parts.get(name, NOTHING)
            troubled = bool(problems_by.get(name))
            (ports.add if part.flows or part.meters or part.interface or part.queue else
             ports.discard)(iface_id)  # fmt: skip
            problem_ports = self.extension_problem_ports[name]
            (problem_ports.add if troubled else problem_ports.discard)(iface_id)

    def extension_counts(self) -> dict[str, tuple[int, int]]:
        """Per extension: (ports it acts on, ports with something it could not apply)."""
        return {name: (len(ports), len(self.extension_problem_ports[name]))
                for name, ports in self.extension_ports.items()}  # fmt: skip

    def _meter_problems(self, contribution: PortContribution) -> tuple[str, ...]:
        """The port's meters the switch refused: its rule is not applied (its flows are held
        back by the meter reconciler)."""
        return tuple(
            f"meter {meter.id} ({meter.rate} {meter.unit}) refused by the switch: {reason}"
            for meter in sorted(contribution.meters, key=lambda m: m.id)
            if (reason := self.rejected_meters.get(meter)) is not None
        )

    def meters_rejected(self, rejected: Mapping[Meter, str]) -> None:
        """The meters br-int refused, with why (all of them, as the meter reconciler holds
        them now): the ports that want one have a problem, until it is accepted."""
        changed = set(rejected.items()) ^ set(self.rejected_meters.items())
        self.rejected_meters = dict(rejected)
        touched = {meter for meter, _ in changed}
        for iface_id, contribution in self._contributions.items():
            if contribution.meters & touched:
                self._dirty_contributions.add(iface_id)

    def desired_meters(self) -> frozenset[Meter]:
        """br-int's meters: every wired port's extensions'."""
        return frozenset().union(*(c.meters for c in self._contributions.values()))

    def _track_queue(
        self, iface_id: str, port: PortState | None, contribution: PortContribution
    ) -> None:
        """The port's queue. While it cannot be known (details or policy awaited) the last one
        stays planned; before the first plan (an agent restart), what OVSDB has stays (keep).
        Ports plugged later never wait in keep: a cold boot plans nothing for ports without
        a queue."""
        unknown = port is not None and (
            port.phase is PortPhase.PENDING
            or any(k not in self.resources and k not in self._missing for k in contribution.needs)
        )
        if not unknown:
            self._queue_keep.discard(iface_id)
            if contribution.queue is not None:
                self._queues[iface_id] = contribution.queue
            else:
                self._queues.pop(iface_id, None)
        elif self._queues_sent is None:
            self._queue_keep.add(iface_id)

    def _plan_queues(self, plan: Plan) -> None:
        """Every queue, when the set changed since it was last planned (the first flush
        always: OVSDB may hold a previous agent's rows)."""
        queues = Queues(dict(self._queues), frozenset(self._queue_keep))
        if queues != self._queues_sent:
            plan.queues = queues
            self._queues_sent = queues

    def _refresh_contributions(self, flushed: set[str], plan: Plan) -> None:
        """A pushed or pulled object changed: only its readers' contributions are recomputed,
        not their own flows (a policy on 1000 ports changes 2000 flows, not 50,000 computed
        again): the port owner keeps its flows less the old contribution's, plus the new one's
        (extension flows are never one of the port's own: see aovs.extensions.base)."""
        dirty, self._dirty_contributions = self._dirty_contributions, set()
        ledger = self.ledgers[self.topology.integration_bridge]
        for iface_id in dirty:
            port = self.ports.get(iface_id)
            if port is None or iface_id in flushed or iface_id in self._dirty_ports:
                continue  # flushed whole, now or in a later slice
            old = self._contributions.get(iface_id, NOTHING).flows
            self._contribute(iface_id, port)
            new = self._contributions.get(iface_id, NOTHING).flows
            if new != old:
                owner = port_owner(iface_id)
                ledger.replace(owner, (ledger.flows_of(owner) - old) | new)
            if self._neutral_columns and port.interface is not None:
                self._interface_columns(port, plan)

    def _ask(self, extension: AgentExtension, port: ExtensionPort) -> PortContribution:
        try:
            return extension.port_contribution(port, self.resources)
        except Exception as exc:  # a third-party extension's bug must not stop the agent
            LOG.exception("agent extension failed", extra={"extension": extension.name,
                          "iface_id": port.iface_id})  # fmt: skip
            return PortContribution(problems=(f"extension {extension.name} failed: {exc}",))

    def _interface_columns(self, port: PortState, plan: Plan) -> None:
        """The Interface columns the extensions manage: their values for this port, else the
        neutral ones; sent when they differ from what was sent for this row (a new row, after
        a re-plug, is sent again). Nothing while an object the port needs is still unknown
        (an agent restart keeps what OVS has until the pull answers; an object the server
        does not have counts as known: the port gets the neutral values, as neutron resets a
        port whose policy is gone)."""
        row = port.interface
        assert row is not None
        contribution = self._contributions.get(port.iface_id, NOTHING)
        if any(
            key not in self.resources and key not in self._missing for key in contribution.needs
        ):
            return
        want = {**self._neutral_columns, **contribution.interface}
        if self._interface_sent.get(row.name) != (row.uuid, want):
            plan.interface_columns[row.name] = want
            self._interface_sent[row.name] = (row.uuid, want)

    def _port_config(self, port: PortState) -> PortConfig | None:
        """What neutron's view of the Port row should say (written lazily, after the flows).
        Nothing while a port waits for its details: its Port.tag does not matter to its flows
        (it is dropped anyway), and a dead tag now would cost a reconfiguration of every port
        just before the real one (os-vif leaves 4095 or nothing)."""
        if port.interface is None or port.phase is PortPhase.PENDING:
            return None
        if port.phase is PortPhase.WIRED and port.network_id is not None:
            vlan = self.vlans.get(port.network_id)
            assert vlan is not None
            return PortConfig.wired(self.details[port.iface_id].details, vlan)
        return PortConfig.dead()

    def _transition(self, port: PortState, event: str, old_ofport: int | None) -> Transition:
        return Transition(
            iface_id=port.iface_id,
            event=event,
            phase=port.phase,
            ofport=port.ofport,
            old_ofport=old_ofport,
            started=port.since,
            reason=port.reason,
            name=port.name,
        )

    def _flush_network(self, network_id: str) -> None:
        vlan = self.vlans.get(network_id)
        segment = self.networks.get(network_id)
        flows: Mapping[str, frozenset[Flow]] = {}
        if vlan is not None and segment is not None:
            members = [
                self._local[iface_id]
                for iface_id in self._net_members.get(network_id, ())
                if (wired := self._filtered.get(iface_id)) is not None
                and wired.details.network_id == network_id
            ]
            flows = compose.network_flows(self.topology, segment, vlan, members)
        self._replace(network_owner(network_id), flows)

    def _flush_tunnels(self, plan: Plan) -> None:
        """br-tun's owners that follow endpoints and l2population (see aovs.agent.tunnels)."""
        assert self.tunnels is not None
        self.tunnels.set_hosted(hosted_tunnel_networks(self.networks, self.vlans.assignments()))
        result = self.tunnels.flush()
        for owner, flows in result.flows.items():
            self._replace(owner, flows)
        plan.tunnel_ports = result.ports
        self._state_changed |= result.state_changed

    def _flush_firewall(
        self, filtered_before: Mapping[str, FilteredPort], flushed: set[str]
    ) -> None:
        sgs_before = self._sgs_before
        self._sgs_before = None
        if sgs_before is None and filtered_before is self._filtered:
            return
        if sgs_before is None and filtered_before == self._filtered:
            return
        before = sgs_before if sgs_before is not None else self.sgs
        if isinstance(self.firewall, IncrementalFirewallDriver):
            dirty = self.firewall.owners_for_change(
                filtered_before, before, self._filtered, self.sgs
            )
            shared = [owner for owner in dirty if port_of(owner) is None]
            ports = [iface for iface in map(port_of, dirty) if iface is not None]
            result = self.firewall.shared_flows(self._filtered, self.sgs, owners=shared)
        else:
            ports = list(self._filtered) if sgs_before is not None else []
            result = self.firewall.shared_flows(self._filtered, self.sgs)
            for owner in self._shared_owners - set(result):
                self._replace(owner, {})
            self._shared_owners = set(result)
        for owner, flows in result.items():
            self._replace(owner, {self.topology.integration_bridge: flows})
        for iface_id in ports:
            if iface_id in flushed:
                continue
            port = self.ports.get(iface_id)
            port_plan = self._port_plan(port) if port is not None else None
            if port_plan is not None:
                self._replace(
                    port_owner(iface_id),
                    compose.port_flows(self.topology, port_plan, self.firewall, self.sgs),
                )
