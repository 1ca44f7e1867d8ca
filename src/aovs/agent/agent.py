"""``Agent``: the asyncio shell around :class:`~aovs.agent.core.AgentCore`.

One task owns the core. Everything that happens (OVSDB row events, neutron-server's answers
and notifications, timers) becomes an item on one inbox; the loop takes whatever has piled up,
feeds it to the core, flushes, and carries the plan out: a bundle per changed bridge and the
Port rows in one OVSDB transaction, concurrently; then reports (queued, sent in the background)
and fetches (background tasks that post their answers back to the inbox). Work that arrives
while a plan is being carried out is batched into the next one, so a burst of 1000 ports costs
a handful of bundles, and a lone VM reboot costs one bundle of that port's flows.

Start-up restores before it asks: OVSDB (ports, ofports, neutron's Port.other_config VLANs) and
the local snapshot give the first desired state, installed with ONE sync per bridge (nothing is
sent when the switch already has it: an agent restart is free), with ``flow-restore-wait`` set
around it when the switch came up empty. Only then is neutron-server asked, and it may take its
time. An OVS restart is handled by each bridge's reconciler (it re-dumps and replays on
reconnect); the canary flow in table 23 is checked now and then as a backstop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.agent.bridges import bridge_commands, patch_pairs, topology_from
from aovs.agent.configurations import ovs_capabilities, reported_configurations
from aovs.agent.core import AgentCore, Plan, Transition, resource_of
from aovs.agent.heap import LongLivedHeap
from aovs.agent.latencies import LatencyWindow
from aovs.agent.port_metadata import PortMetadataWriter
from aovs.agent.reporter import DeviceReporter
from aovs.agent.snapshot import load_snapshot, snapshot_extra
from aovs.agent.snapshot_writer import SnapshotWriter
from aovs.agent.state import InterfaceRow, PortPhase
from aovs.agent.telemetry import AgentTelemetry, MeteredRpcTransport
from aovs.agent.tunnel_io import apply_port_changes, sync_tunnels
from aovs.agent.tunnels import TUNNEL_INPUTS, TunnelSettings, TunnelState, TunnelSynced
from aovs.backoff import Backoff
from aovs.config import AgentConfig, ConfigError
from aovs.config_reload import reload_plan
from aovs.dataplane.compose import Topology
from aovs.extensions.base import (
    AgentExtension,
    ExtensionError,
    load_extensions,
    neutral_columns,
)
from aovs.extensions.interface_writes import write_interface_columns
from aovs.extensions.queue_writes import QueueWriter
from aovs.extensions.trunk import TrunkExtension
from aovs.extensions.trunk_wiring import TrunkWiring
from aovs.firewall.base import FirewallDriver, load_driver
from aovs.firewall.noop import NoopFirewall
from aovs.logs import configure_logging
from aovs.observability import System
from aovs.openflow import codec
from aovs.openflow.channel import Connected, Disconnected, OpenFlowChannel
from aovs.openflow.errors import BundleError, OpenFlowError
from aovs.openflow.flows import Meter
from aovs.openflow.messages import DATAPATH
from aovs.openflow.meters import MeterReconciler
from aovs.openflow.reconcile import FlowReconciler, stable_cookie
from aovs.openflow.switch_busy import SwitchBusy
from aovs.ovsdb import (
    Interface,
    Monitor,
    OVSDBClient,
    OVSDBError,
    RowEvent,
    flow_restore_wait,
)
from aovs.ovsdb.rows import EventKind
from aovs.ovsdb.transaction import Select, SelectedRows
from aovs.ovsdb.views import AGENT_MONITOR
from aovs.pipelines import tables
from aovs.rpc import events as rpc_events
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.errors import RpcError
from aovs.rpc.notifications import NotificationConsumer
from aovs.rpc.resources import (
    AddressGroupPush,
    QosPolicyPush,
    ResourcePush,
    ResourcePushConsumer,
    SubPortPush,
    TrunkPush,
    bulk_pull,
    consumed_resources,
    missing_as_deleted,
    push_values,
)
from aovs.rpc.server_api import NeutronServerApi
from aovs.rpc.server_replies import DevicesDetails
from aovs.rpc.state_report import StateReporter

LOG = logging.getLogger("aovs.agent")

MONITORED = AGENT_MONITOR  # Interface and Port rows; Port.tag is read once (see _port_tags)
# with the ``trunk`` extension: the bridges too (trunk bridges come and go; their ports are not
# br-int's)
TRUNK_MONITORED = {**AGENT_MONITOR, "Bridge": ("name", "ports")}
PROGRESS_EVERY = 1.0  # seconds between progress lines during long work
BIG_BATCH = 100  # ports in flight above which progress is shown
# FlowMods per flush (see AgentCore.flush): a slice is well under a second of our CPU, so the
# loop stays responsive (OVSDB events, RPC answers) through thousands of ports.
FLOW_BUDGET = 20_000
# FlowMods per bundle: slices that piled up while ovs-vswitchd committed the previous bundle go
# in one. A burst (a cold boot, a storm) so goes in few bundles that grow as ovs-vswitchd falls
# behind (one ovs-vsctl plugging 1000, 3000 or 5000 ports: br-int took each in ONE bundle), and
# each bundle costs ovs-vswitchd more than its flows (the same 66k flows of 1000 ports: in 4
# bundles of 20k, 1.27-1.30x the CPU of ovs-ofctl --bundle; in one, 1.07-1.09x), while the
# agent still computes the next slices as the switch commits. Bounded so that a bundle stays
# within what its timeouts allow (see aovs.openflow.bundle).
BUNDLE_BUDGET = 500_000
BIG_BUNDLE = 10_000  # FlowMods from which a committed bundle is logged at INFO
# How often OVSDB's and RabbitMQ's connection states are sampled for /healthz (the OpenFlow
# channels report theirs as events): off the hot path, and well under a probe's period.
CONNECTION_SAMPLE_INTERVAL = 0.5


@dataclass
class AgentStats:
    """Counters tests, the demo and the benchmark read."""

    flushes: int = 0
    bundles: int = 0
    rpc_details_calls: int = 0
    rpc_sg_calls: int = 0
    initial_sync_s: float | None = None
    initial_flowmods: int = 0
    ovs_restarts: int = 0
    last_replay_s: float | None = None
    # event -> commit, per wired port: the last 4096 values and a count of all (bounded)
    commit_latencies_ms: LatencyWindow = field(default_factory=LatencyWindow)


@dataclass(frozen=True, slots=True)
class _Details:
    devices: tuple[str, ...]
    outcomes: Any


@dataclass(frozen=True, slots=True)
class _Pulled:
    """A resource pull's answer (``answers``), or its failure (``error``) for ``keys``."""

    keys: tuple[str, ...]
    answers: tuple[ResourcePush, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _SecurityGroups:
    devices: tuple[str, ...]
    info: Any  # SecurityGroupInfo, or an error text


@dataclass(frozen=True, slots=True)
class _MetersRefused:
    """br-int's meter reconciler's ``rejected``: every meter it refused, with the error."""

    rejected: Mapping[Meter, str]


# Everything the inbox carries, matched exhaustively by Agent._apply (assert_never): OVSDB row
# events, the answers of the agent's own fetches, neutron-server's notifications (tunnel and
# l2pop ones included), tunnel_sync's answer, pushed address groups, and None ("flush again").
AgentInput = (
    RowEvent
    | _Details
    | _SecurityGroups
    | rpc_events.AgentEvent
    | TunnelSynced
    | AddressGroupPush
    | QosPolicyPush
    | TrunkPush
    | SubPortPush
    | _Pulled
    | _MetersRefused
    | None
)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        firewall: FirewallDriver | None = None,
        unplug_grace: float = 1.0,
        canary_interval: float = 10.0,
        snapshot_delay: float = 0.2,
    ) -> None:
        self.config = config
        self.firewall = firewall or self._firewall_from(config)
        self.extensions = self._extensions_from(config)
        self._neutral = neutral_columns(self.extensions)  # the extensions' Interface columns
        self._columns_written: set[str] = set()  # Interfaces this run set a non-neutral value on
        self.resource_versions = consumed_resources(
            kind for extension in self.extensions for kind in extension.resource_types
        )
        self.unplug_grace = unplug_grace
        self.canary_interval = canary_interval
        self.snapshot_delay = snapshot_delay
        self.stats = AgentStats()
        self.bridges = (config.ovs.integration_bridge,
                        *(pair.bridge for pair in patch_pairs(config)))  # fmt: skip
        self.tunnel_settings = TunnelSettings.from_config(config)
        if self.tunnel_settings is not None:
            self.bridges = (*self.bridges, self.tunnel_settings.bridge)
        self.telemetry = AgentTelemetry(config, self.bridges)
        self.ovsdb = OVSDBClient(config.ovs.ovsdb_connection, **config.ovs.ovsdb_client_options)
        self.port_metadata = PortMetadataWriter(self.ovsdb, config.ovs.port_metadata_delay)
        self.queue_writer = QueueWriter(self.ovsdb)  # the qos extension's minimum bandwidth
        self.transport: RpcTransport = self._new_transport()
        self.api = NeutronServerApi(
            self.transport,
            config.host,
            rpc_response_timeout=config.agent.rpc_response_timeout,
            rpc_response_max_timeout=config.agent.rpc_response_max_timeout,
        )
        self.reporter = DeviceReporter(
            self.api, batch_size=config.agent.rpc_resources_processing_step
        )
        self.channels: dict[str, OpenFlowChannel] = {}
        self.reconcilers: dict[str, FlowReconciler] = {}
        self.meters: MeterReconciler | None = None  # br-int's, with an extension using meters
        self._meters_told: dict[Meter, str] = {}
        self.core: AgentCore | None = None
        self.ready = asyncio.Event()  # the first desired state is installed
        self._inbox: asyncio.Queue[tuple[float, AgentInput]] = asyncio.Queue()  # (arrival, item)
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._monitor: Monitor | None = None
        self.trunks: TrunkWiring | None = None  # the ``trunk`` extension's shell, when loaded
        self._notifications: NotificationConsumer | None = None
        self._pushes: ResourcePushConsumer | None = None
        self._heartbeat: StateReporter | None = None
        self._snapshot: SnapshotWriter | None = None
        self._stopping = False
        self._last_progress = 0.0
        self._idle = asyncio.Event()
        self._plans: collections.deque[Plan] = collections.deque()
        self._plans_ready = asyncio.Event()
        # set once the notification consumers listen: no question goes out before, so no
        # notification about its answer can be missed (neutron's agent orders it the same way)
        self._rpc_ready = asyncio.Event()
        self._plans_in_flight = 0
        self._connection_sampler: asyncio.Task[None] | None = None
        self._replay_pending = False  # an OpenFlow reconnect's replay is not yet counted
        self.heap = LongLivedHeap()
        self._capabilities: dict[str, list[str]] = {"datapath_types": [], "iface_types": []}

    @staticmethod
    def _firewall_from(config: AgentConfig) -> FirewallDriver:
        if not config.securitygroup.enable_security_group:
            return NoopFirewall()
        return load_driver(config.securitygroup.firewall_driver)

    @staticmethod
    def _extensions_from(config: AgentConfig) -> tuple[AgentExtension, ...]:
        """``[agent] extensions``; one that cannot be loaded stops the start (exit 2)."""
        try:
            return load_extensions(config.agent.extensions)
        except ExtensionError as exc:
            raise ConfigError(f"[agent] extensions: {exc}") from exc

    def _new_transport(self) -> RpcTransport:
        return MeteredRpcTransport(self.config.transport_url, self.telemetry.metrics.rpc_call,
                                   options=self.config.oslo_messaging_rabbit)  # fmt: skip

    @property
    def needs_security_groups(self) -> bool:
        return self.firewall.name != "noop" and self.config.securitygroup.enable_security_group

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Bridges, state from OVSDB and snapshot, first install; then RPC in the background.

        The status socket answers from the first moment (a slow start is visible to
        ``aovs status``); everything is closed again if the start fails."""
        await self.telemetry.start()
        self._connection_sampler = asyncio.create_task(
            self._sample_connections(), name="aovs-connection-sampler"
        )
        try:
            await self._start()
        except BaseException:  # the start failed or was cancelled: stop what it started
            await self._abandon_start()
            await self._stop_telemetry()
            raise

    async def _abandon_start(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def _start(self) -> None:
        started = time.monotonic()
        state_path = self.config.agent.state_path
        snapshot = load_snapshot(state_path)
        LOG.info("agent starting", extra={"host": self.config.host, **snapshot_extra(snapshot)})
        await self.ovsdb.start(timeout=30.0)
        await self.ovsdb.transact(*bridge_commands(self.config), wait_applied=True, timeout=30.0)
        trunk_on = any(isinstance(e, TrunkExtension) for e in self.extensions)
        monitored = dict(TRUNK_MONITORED if trunk_on else MONITORED)
        policed = tuple(sorted(self._neutral))
        if policed:  # the extensions' Interface columns, to skip writing what is already there
            monitored["Interface"] = (*monitored["Interface"], *policed)
        self._monitor = await self.ovsdb.monitor(monitored)
        await self._read_capabilities()
        topology = await self._wait_topology()
        core = AgentCore(
            topology,
            self.firewall,
            needs_security_groups=self.needs_security_groups,
            unplug_grace=self.unplug_grace,
            tunnels=TunnelState(self.tunnel_settings) if self.tunnel_settings else None,
            extensions=self.extensions,
        )
        self.core = core
        if self.extensions:
            self.telemetry.metrics.watch_extensions(
                [extension.name for extension in self.extensions], self._extension_counts
            )
        if trunk_on:
            self.trunks = TrunkWiring(self.ovsdb, self._monitor, lambda: self.transport,
                                      self._post, self.config.ovs.integration_bridge)  # fmt: skip
        now = time.monotonic()
        tags = await self._port_tags()
        for row in self._monitor.rows("Port").values():
            name = row["name"]
            core.port_row(name, tags.get(name), row["other_config"])
        core.recover_vlans()
        core.restore(snapshot.ports.values(), snapshot.local_vlans, snapshot.security_groups)
        core.restore_resources(snapshot.qos_policies, now)
        if core.tunnels is not None:
            try:
                core.tunnels.restore(snapshot.tunnels)
            except ValueError as exc:
                LOG.warning("snapshot's tunnels ignored", extra={"error": str(exc)})
        for uuid, row in self._monitor.rows("Interface").items():
            self._tunnel_interface(row, deleted=False)
            if self.trunks is None or not self.trunks.off_br_int(str(uuid)):
                self._interface_event(Interface.from_row(row), now)
        self._monitor.pending()  # the initial rows, already applied above
        plan = core.flush(now)
        # neutron-server is asked about the ports found NOW, while the switch is connected and
        # the first flows go in (the answers wait in the inbox for the loop): the broker's
        # connect and the details RPC overlap with the install instead of following it
        asked = bool(plan.fetch_details or plan.fetch_security_groups)
        self._tasks.append(asyncio.create_task(self._start_rpc(), name="aovs-rpc-start"))
        self._start_fetches(plan)
        plan = dataclasses.replace(plan, fetch_details=[], fetch_security_groups=[],
                                   fetch_resources=[])  # fmt: skip
        busy = SwitchBusy()  # one ovs-vswitchd: its bridges' channels wait on the same commits
        for bridge in self.bridges:
            channel = OpenFlowChannel.for_mgmt_socket(
                self.config.ovs.mgmt_socket(bridge),
                busy=busy,
                **self.config.ovs.openflow_channel_options,
            )
            self.channels[bridge] = channel
            if bridge == self.config.ovs.integration_bridge and self._uses_meters():
                self.meters = MeterReconciler(channel)  # br-int's (QoS rate limits)
            # take_over: the first sync also replaces a previous agent's flows (neutron's)
            self.reconcilers[bridge] = FlowReconciler(
                channel, stable_cookie(bridge), take_over=True,
                companion=self.meters if bridge == self.config.ovs.integration_bridge else None,
            )  # fmt: skip
            channel.subscribe(functools.partial(self._on_channel_event, bridge))
        await asyncio.gather(*(c.start() for c in self.channels.values()))  # of_connect_timeout
        plan = await self._ask_before_takeover(plan, asked)
        await self._initial_install(plan)
        self.telemetry.metrics.full_sync_done()
        self._snapshot = SnapshotWriter(state_path, core.snapshot, self.snapshot_delay)
        self.stats.initial_sync_s = time.monotonic() - started
        LOG.info(
            "dataplane installed",
            extra={"ports": len(core.ports), "flowmods": self.stats.initial_flowmods,
                   "ms": self.stats.initial_sync_s * 1e3, **core.counts()},
        )  # fmt: skip
        self.heap.settle(force=True, release=True)
        self.ready.set()
        self._tasks += [
            asyncio.create_task(self._pump_ovsdb(), name="aovs-ovsdb-events"),
            asyncio.create_task(self._loop(), name="aovs-agent-loop"),
            asyncio.create_task(self._commit_plans(), name="aovs-agent-commits"),
            asyncio.create_task(self._watch_canary(), name="aovs-canary"),
        ]
        self._start_fetches(plan)
        self._after_commit(plan)
        self._spawn(self._warm_flowmod_caches())

    async def stop(self) -> None:
        if self._stopping:
            return  # stopped already (e.g. a test's restart, then its fixture's teardown)
        self._stopping = True
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.queue_writer.stop()
        if self._snapshot is not None:
            await self._snapshot.flush()
        await self.reporter.stop()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._notifications is not None:
            with contextlib.suppress(Exception):
                await self._notifications.stop()
        if self._pushes is not None:
            with contextlib.suppress(Exception):
                await self._pushes.stop()
        for reconciler in self.reconcilers.values():
            reconciler.close()
        for channel in self.channels.values():
            await channel.close()
        with contextlib.suppress(Exception):
            await self.transport.close()
        with contextlib.suppress(Exception):  # leave neutron's view of the Port rows complete
            await asyncio.wait_for(self.port_metadata.flush(), 10.0)
        await self.ovsdb.close()
        await self._stop_telemetry()

    async def _stop_telemetry(self) -> None:
        if self._connection_sampler is not None:
            self._connection_sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection_sampler
            self._connection_sampler = None
        await self.telemetry.close()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def settled(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 -- a test bound
        """Wait until the inbox is empty and no fetch or flush is under way (tests, demo)."""
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.02)
                quiet = self._inbox.empty() and not self._background and self._idle.is_set()
                if quiet and self._plans_in_flight == 0:
                    core = self.core
                    if core is None or (core.details_fetch.waiting == 0
                                        and core.sg_fetch.waiting == 0):  # fmt: skip
                        return

    @property
    def flowmods_sent(self) -> int:
        return sum(r.flowmods_sent for r in self.reconcilers.values())

    # -- start-up pieces -------------------------------------------------------------------
    async def _wait_topology(self) -> Topology:
        assert self._monitor is not None
        found: list[Topology] = []

        def ready(monitor: Monitor) -> bool:
            by_name = {
                i.name: i for i in map(Interface.from_row, monitor.rows("Interface").values())
            }
            topology = topology_from(self.config, by_name)
            if topology is not None:
                found.append(topology)
            return topology is not None

        await self._monitor.wait_for(ready, timeout=30.0)
        return found[-1]

    async def _port_tags(self) -> dict[str, int]:
        """Every Port's tag, read once (see MONITORED)."""
        select = {"op": "select", "table": "Port", "where": [], "columns": ["name", "tag"]}
        (result,) = await self.ovsdb.transact_ops([select], timeout=30.0)
        tags: dict[str, int] = {}
        for row in result.get("rows", []):
            tag = row.get("tag")
            if isinstance(tag, int):
                tags[str(row["name"])] = tag
        return tags

    async def _ask_before_takeover(self, plan: Plan, asked: bool) -> Plan:
        """Another agent's flows (neutron's) still forward the VMs: keep them until ours can
        replace them whole. The answers to what neutron-server was ``asked`` about the ports
        found (details and security groups, retried as usual) are awaited first, and only
        then does the first sync take each bridge over in one bundle. Returns ``plan``
        followed by what the answers changed."""
        core = self.core
        assert core is not None
        # each reconciler dumps its bridge (every cookie: take_over) on connect
        await asyncio.gather(*(r.wait_idle() for r in self.reconcilers.values()))
        foreign = sum(len(r.foreign) for r in self.reconcilers.values())
        if not foreign or not asked:
            return plan
        LOG.info("another agent's flows found: awaiting neutron-server before taking over",
                 extra={"flows": foreign, "ports": len(core.ports)})  # fmt: skip

        async def ask_again(devices: list[str]) -> None:
            await asyncio.sleep(1.0)
            await self._fetch_details(devices)

        while core.details_fetch.waiting or core.sg_fetch.waiting:
            deadline = core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                arrived, item = await asyncio.wait_for(self._inbox.get(), timeout)
                if isinstance(item, _Details) and item.outcomes.failed:
                    # not failed now (its dead VLAN would replace neutron's flows, which
                    # forward it meanwhile, and a dead tag its Port row): asked again
                    failed = item.outcomes.failed
                    self._spawn(ask_again(list(failed)))
                    answered = {d: o for d, o in item.outcomes.outcomes.items()
                                if d not in failed}  # fmt: skip
                    item = _Details(tuple(answered), DevicesDetails(answered))
                self._apply(item, arrived)
            later = core.flush(time.monotonic())
            self._start_fetches(later)  # retries
            plan = plan.then(dataclasses.replace(later, fetch_details=[],
                                                 fetch_security_groups=[]))  # fmt: skip
        return plan

    async def _initial_install(self, plan: Plan) -> None:
        """One sync per bridge; flow-restore-wait around it when the switch came up empty."""
        assert self.core is not None
        # each reconciler dumps its bridge on connect; wait for that rather than dump twice
        await asyncio.gather(*(r.wait_idle() for r in self.reconcilers.values()))
        empty = all(not r.installed and not r.foreign for r in self.reconcilers.values())
        if empty:
            await self.ovsdb.transact(flow_restore_wait(True))
        if self.meters is not None:  # sent before the bundle whose flows name them
            self.meters.want(self.core.desired_meters())
        sent = await asyncio.gather(*(self._timed_sync(b, r) for b, r in self.reconcilers.items()))
        self._meters_refused()
        self.stats.initial_flowmods = sum(sent)
        self.port_metadata.changed(plan.port_configs)
        if empty:
            await self.ovsdb.transact(flow_restore_wait(False))
        self._log_transitions(plan.transitions, time.monotonic())

    async def _timed_sync(self, bridge: str, reconciler: FlowReconciler) -> int:
        """A full sync of one bridge, counted as a bundle when it sent anything."""
        assert self.core is not None
        started = time.monotonic()
        sent = await reconciler.sync(self.core.desired(bridge))
        if sent:
            self.telemetry.metrics.bundle_committed(bridge, sent, time.monotonic() - started)
        return sent

    async def _start_rpc(self) -> None:
        backoff = Backoff(initial=1.0, cap=30.0, jitter=False)
        while True:
            try:
                await self.transport.start()
                break
            except RpcError as exc:
                delay = backoff.next_delay()
                LOG.warning("RabbitMQ unreachable; the dataplane runs on, retrying",
                            extra={"error": exc, "retry_in_s": delay})  # fmt: skip
                self.transport = self._new_transport()
                self.api.transport = self.transport
                await asyncio.sleep(delay)
        self.reporter.start()
        self._notifications = NotificationConsumer(self.transport, self.config.host)
        await self._notifications.start()
        self._pushes = ResourcePushConsumer(
            self.transport, self.config.host, self._post, resources=self.resource_versions
        )
        await self._pushes.start()
        self._rpc_ready.set()
        self._tasks.append(asyncio.create_task(self._pump_notifications(), name="aovs-notify"))
        if self.trunks is not None:
            self._tasks.append(asyncio.create_task(self.trunks.run(), name="aovs-trunks"))
        self._sync_tunnels()
        if self.config.agent.report_interval > 0:
            self._heartbeat = StateReporter(
                self.api,
                interval=self.config.agent.report_interval,
                configurations=self._configurations,
                device_count=lambda: len(self.core.ports) if self.core else 0,
                on_revived=self._resync_all,
                resource_versions=self.resource_versions,
            )
            self._heartbeat.start()

    def _extension_counts(self) -> dict[str, tuple[int, int]]:
        """Per extension (ports it acts on, ports with a problem); the trunk extension acts in
        the shell: its ports are the trunks wired."""
        counts = self.core.extension_counts() if self.core is not None else {}
        if self.trunks is not None:
            _, troubled = counts.get(TrunkExtension.name, (0, 0))
            counts[TrunkExtension.name] = (len(self.trunks.wired), troubled)
        return counts

    def _configurations(self) -> dict[str, Any]:
        return reported_configurations(
            self.config, firewall_driver=self.firewall.name, capabilities=self._capabilities,
            extensions=[extension.name for extension in self.extensions],
        )  # fmt: skip

    async def _read_capabilities(self) -> None:
        """The datapath and interface types this OVS supports (reported to the server: nova
        plugs vhost-user on netdev hosts only when the agent says OVS can)."""
        select = Select("Open_vSwitch", (), ("datapath_types", "iface_types"))
        try:
            (result,) = await self.ovsdb.transact_ops([select.op()], timeout=30.0)
            selected = SelectedRows(self.ovsdb.schema, {select.key: result.get("rows", [])})
            rows = selected.rows(select)
            self._capabilities = ovs_capabilities(rows[0] if rows else {})
        except (OVSDBError, TimeoutError) as exc:
            LOG.warning("OVS capabilities unread; reporting none", extra={"error": exc})

    def _sync_tunnels(self) -> None:
        """``tunnel_sync`` in the background (at start and when the server revives us)."""
        if self.tunnel_settings is not None:
            self._spawn(sync_tunnels(self.api, self.tunnel_settings, self._post))

    def _tunnel_interface(self, row: Any, *, deleted: bool) -> None:
        assert self.core is not None
        if self.core.tunnels is not None:
            self.core.tunnels.interface_event(
                row["name"], row["type"], row["ofport"], deleted=deleted
            )

    def _resync_all(self) -> None:
        """neutron-server had declared us dead: ask about every port again."""
        self._sync_tunnels()
        if self.core is not None:
            now = time.monotonic()
            for iface_id in list(self.core.ports):
                self.core.port_updated(iface_id, now)
            self._post(None)

    # -- inputs ------------------------------------------------------------------------------
    def _post(self, item: AgentInput) -> None:
        self._inbox.put_nowait((time.monotonic(), item))

    async def _pump_ovsdb(self) -> None:
        assert self._monitor is not None
        try:
            async for event in self._monitor:
                self._post(event)
        except OVSDBError as exc:
            LOG.error("OVSDB monitor failed; port events stopped", extra={"error": exc})

    async def _pump_notifications(self) -> None:
        assert self._notifications is not None
        async for event in self._notifications:
            self._post(event)

    async def _sample_connections(self) -> None:
        """OVSDB's and RabbitMQ's states for /healthz; their clients reconnect by themselves
        and say so only through these flags and session counters."""
        while True:
            self.telemetry.session_state(System.OVSDB, self.ovsdb.connected, self.ovsdb.connects)
            transport = self.transport
            self.telemetry.session_state(
                System.RABBITMQ, transport.is_connected, transport.connections_made
            )
            await asyncio.sleep(CONNECTION_SAMPLE_INTERVAL)

    def _on_channel_event(self, bridge: str, event: Connected | Disconnected) -> None:
        self.telemetry.openflow_event(bridge, event)
        if isinstance(event, Disconnected):
            LOG.warning(
                "OpenFlow connection lost", extra={"bridge": bridge, "reason": event.reason}
            )
        elif self.ready.is_set():
            self.stats.ovs_restarts += 1
            self._replay_pending = True
            reconciler = self.reconcilers[bridge]
            task = asyncio.create_task(self._timed_replay(bridge, reconciler, time.monotonic()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _timed_replay(self, bridge: str, reconciler: FlowReconciler, since: float) -> None:
        """The reconciler replays on its own; this only measures and logs it. The replay is a
        full sync once every bridge is connected and replayed (an OVS restart drops them all)."""
        await asyncio.sleep(0)
        sent_before = reconciler.flowmods_sent
        await reconciler.wait_idle()
        self.stats.last_replay_s = time.monotonic() - since
        sent = reconciler.flowmods_sent - sent_before
        self._meters_refused()
        if sent:  # its seconds include the dump before the bundle
            self.telemetry.metrics.bundle_committed(bridge, sent, self.stats.last_replay_s)
        await asyncio.gather(*(r.wait_idle() for r in self.reconcilers.values()))
        if self._replay_pending and all(c.connected for c in self.channels.values()):
            self._replay_pending = False
            self.telemetry.metrics.full_sync_done()
        LOG.info("OpenFlow reconnected: flows replayed from state, no RPC",
                 extra={"bridge": bridge, "flows": len(reconciler.installed),
                        "ms": self.stats.last_replay_s * 1e3})  # fmt: skip

    async def _watch_canary(self) -> None:
        """Backstop for a lost reconnect: the canary missing on a live connection means the
        switch lost its tables behind our back; re-dump and re-sync."""
        bridge = self.config.ovs.integration_bridge
        reconciler = self.reconcilers[bridge]
        channel = self.channels[bridge]
        while self.canary_interval > 0:
            await asyncio.sleep(self.canary_interval)
            if not channel.connected:
                continue
            request = ofpp.OFPFlowStatsRequest(
                DATAPATH, 0, tables.CANARY_TABLE, ofp.OFPP_ANY, ofp.OFPG_ANY,
                reconciler.cookie, codec.ALL_ONES_64, ofpp.OFPMatch(),
            )  # fmt: skip
            try:
                stats = await channel.multipart(request, within=5.0)
            except OpenFlowError:
                continue
            if not stats and self.core is not None:
                LOG.warning("canary flow missing: re-syncing every bridge")
                for name, each in self.reconcilers.items():
                    with contextlib.suppress(OpenFlowError):
                        await each.refresh()
                        await each.sync(self.core.desired(name))

    # -- the loop ------------------------------------------------------------------------------
    async def _loop(self) -> None:
        core = self.core
        assert core is not None
        while True:
            self._idle.set()
            deadline = core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                first = await asyncio.wait_for(self._inbox.get(), timeout)
                items = [first]
            except TimeoutError:
                items = []
            self._idle.clear()
            while not self._inbox.empty():
                items.append(self._inbox.get_nowait())
            for arrived, item in items:  # "since" is when it arrived, not when we got to it
                self._apply(item, arrived)
            now = time.monotonic()
            core.expire(now)
            plan = core.flush(now, flow_budget=FLOW_BUDGET)
            self.heap.grew(plan.flow_changes)
            if core.has_dirty_ports:
                self._post(None)  # the next slice, while this one is committed
                # this slice's objects live on: frozen, so that the collections while the next
                # slices are built do not walk them again
                self.heap.settle()
            self.stats.flushes += 1
            self._start_fetches(plan)
            self._plans_in_flight += 1
            self._plans.append(plan)
            del plan  # the committer's now: not held while the loop waits for input
            self._plans_ready.set()
            if core.has_dirty_ports:
                # the inbox's get() does not yield when the next slice's marker is waiting: let
                # the committer send this slice now, so ovs-vswitchd works on it while the next
                # is built (what piles up meanwhile still goes as one bundle)
                await asyncio.sleep(0)

    def _apply(self, item: AgentInput, now: float) -> None:
        core = self.core
        assert core is not None
        if item is None:
            pass  # "flush again": the loop flushes after every batch
        elif isinstance(item, RowEvent):
            self._row_event(item, now)
        elif isinstance(item, _Details):
            self.stats.rpc_details_calls += 1
            core.details_received(item.outcomes.outcomes, now)
        elif isinstance(item, _SecurityGroups):
            self.stats.rpc_sg_calls += 1
            if isinstance(item.info, str):
                core.security_groups_unavailable(item.devices, now)
            else:
                core.security_groups_received(item.devices, item.info, now)
        elif isinstance(item, TUNNEL_INPUTS):
            if core.tunnels is not None:
                core.tunnels.notified(item)
        elif isinstance(item, rpc_events.PortUpdate):
            core.port_updated(item.port_id, now)
        elif isinstance(item, rpc_events.PortDelete):
            core.port_deleted(item.port_id, now)
        elif isinstance(item, rpc_events.NetworkUpdate | rpc_events.NetworkDelete):
            core.network_changed(item.network_id, now)
        elif isinstance(item, rpc_events.BindingActivate):
            if item.host == self.config.host:
                core.binding_activated(item.port_id, now)
        elif isinstance(item, rpc_events.BindingDeactivate):
            if item.host == self.config.host:
                core.binding_deactivated(item.port_id, now)
        elif isinstance(item, QosPolicyPush):
            self._count_resources(item, "push")
            core.resources_received(item, now)
        elif isinstance(item, TrunkPush | SubPortPush):
            self._count_resources(item, "push")
            core.resources_received(item, now)  # the one cache; then the trunk shell acts
            if self.trunks is not None:
                self.trunks.pushed(item)
        elif isinstance(item, _MetersRefused):
            core.meters_rejected(item.rejected)
        elif isinstance(item, _Pulled):
            if item.error is not None:
                for resource_type, keys in itertools.groupby(
                    sorted(resource_of(key)[0] for key in item.keys)
                ):
                    self.telemetry.metrics.resource_updates(
                        resource_type, "pull_failed", len(list(keys))
                    )
                core.resources_unavailable(item.keys, now)
            for answer in item.answers:
                self._count_resources(answer, "pull")
                core.resources_received(answer, now)
        elif isinstance(item, AddressGroupPush):
            self._count_resources(item, "push")
            for group in item.groups:
                deleted = item.event_type == "deleted"
                core.address_group_changed(
                    group.id, None if deleted else group.by_ethertype(), group.revision
                )
        elif isinstance(
            item, rpc_events.SecurityGroupsRuleUpdated | rpc_events.SecurityGroupsMemberUpdated
        ):
            core.security_groups_changed(item.security_groups, now)
        elif isinstance(item, rpc_events.SecurityGroupsProviderUpdated):
            pass  # DHCP is allowed by the firewall's base flows: nothing to do
        else:
            assert_never(item)

    def _count_resources(self, push: ResourcePush, source: str) -> None:
        resource_type, values = push_values(push)
        self.telemetry.metrics.resource_updates(resource_type, source, len(values))

    def _row_event(self, event: RowEvent, now: float) -> None:
        core = self.core
        assert core is not None
        if event.table == "Port":
            if event.kind is EventKind.DELETE:
                core.port_row_deleted(event.row["name"])
            else:
                row = event.row
                tag = None
                if event.old is not None:
                    tag = core.port_rows.get(row["name"], (None, {}))[0]
                core.port_row(row["name"], tag, row["other_config"])
            return
        if event.table == "Bridge" and self.trunks is not None:
            self.trunks.changed()  # a trunk bridge added, removed, or its ports changed
            return
        if event.table != "Interface":
            return
        self._tunnel_interface(event.row, deleted=event.kind is EventKind.DELETE)
        if event.kind is EventKind.DELETE:
            core.interface_deleted(str(event.uuid), now)
            return
        iface = Interface.from_row(event.row)
        if self.trunks is not None and self.trunks.off_br_int(str(event.uuid)):
            # a trunk bridge's (the VM's tap, tpt-/spt-): not a br-int port, as for neutron
            core.interface_deleted(str(event.uuid), now)
            self.trunks.changed()
            return
        if iface.iface_id is None:
            if event.old is not None and Interface.from_row(event.old).iface_id is not None:
                core.interface_deleted(str(event.uuid), now)  # iface-id removed from the row
            self._maybe_topology_changed()
            return
        self._interface_event(iface, now)

    def _interface_event(self, iface: Interface, now: float) -> None:
        assert self.core is not None
        if iface.iface_id is None:
            return
        row = InterfaceRow(str(iface.uuid), iface.name, iface.iface_id, iface.ofport)
        self.core.interface_changed(row, now)

    def _maybe_topology_changed(self) -> None:
        assert self._monitor is not None and self.core is not None
        by_name = {
            i.name: i for i in map(Interface.from_row, self._monitor.rows("Interface").values())
        }
        topology = topology_from(self.config, by_name)
        if topology is not None:
            self.core.set_topology(topology)

    # -- outputs -------------------------------------------------------------------------------
    async def _commit_plans(self) -> None:
        """Carry plans out one after the other (bundles in order), while the loop computes the
        next slice: our CPU and ovs-vswitchd's work on a bundle overlap."""
        while True:
            while not self._plans:
                self._plans_ready.clear()
                await self._plans_ready.wait()
            batch = [self._plans.popleft()]
            size = batch[0].flow_changes
            # what piled up while the last bundle was committed goes in one bundle
            while self._plans and size + self._plans[0].flow_changes <= BUNDLE_BUDGET:
                batch.append(self._plans.popleft())
                size += batch[-1].flow_changes
            taken = len(batch)
            plan = batch[0] if taken == 1 else Plan.merged(batch)
            del batch  # the slices' deltas, merged: not held while the bundle is sent (5000
            # ports: ~18 MB)
            try:
                await self._execute(plan)
            except Exception:  # one bad plan must not stop the agent
                LOG.exception("plan execution failed", extra={"flows": plan.flow_changes})
            finally:
                self._plans_in_flight -= taken
            del plan  # not held while waiting for the next: its removals are the flows it
            # replaced (a reboot storm's: the old generation, 66k flows at 1000 ports)
            if not self._plans:
                self.heap.settle(release=not self._burst_pending())

    def _burst_pending(self) -> bool:
        """More slices of the change being committed are still to come (dirty ports left)."""
        return self.core is not None and self.core.has_dirty_ports

    async def _execute(self, plan: Plan) -> None:
        work: list[Awaitable[object]] = [
            self._apply_flows(bridge, delta.remove, delta.add)
            for bridge, delta in plan.flows.items()
        ]
        if plan.meters is not None and self.meters is not None:
            self.meters.want(plan.meters)  # sent around br-int's bundle (an empty one if none)
            br_int = self.config.ovs.integration_bridge
            if br_int not in plan.flows:
                work.append(self._apply_meters(br_int))
        if work:
            await asyncio.gather(*work)
        self._meters_refused()
        committed = time.monotonic()
        self.port_metadata.changed(plan.port_configs)  # never before the bundle: see its module
        self._log_transitions(plan.transitions, committed)
        self._progress(committed)
        self._after_commit(plan)

    async def _apply_meters(self, bridge: str) -> None:
        """A change of meters alone (a rule's rate): through the bridge's reconciler, whose lock
        orders it with the bundles (its companion sends the meter mods), with no bundle."""
        try:
            await self.reconcilers[bridge].apply()
        except OpenFlowError as exc:  # the desired meters are sent again on reconnect
            LOG.warning("meters not applied; they follow on reconnect",
                        extra={"bridge": bridge, "error": exc})  # fmt: skip

    def _uses_meters(self) -> bool:
        """An extension that rate-limits with OpenFlow meters is loaded (``qos``)."""
        return any(getattr(extension, "uses_meters", False) for extension in self.extensions)

    def _meters_refused(self) -> None:
        """What br-int refused to meter, to the core (as a problem of the ports wanting it)."""
        if self.meters is not None and self.meters.rejected != self._meters_told:
            self._meters_told = dict(self.meters.rejected)
            self._post(_MetersRefused(self._meters_told))

    def _start_fetches(self, plan: Plan) -> None:
        """Questions to neutron-server: asked at once, answers come back through the inbox."""
        if plan.fetch_details:
            self._spawn(self._fetch_details(plan.fetch_details))
        if plan.fetch_security_groups:
            self._spawn(self._fetch_security_groups(plan.fetch_security_groups))
        if plan.fetch_resources:
            self._spawn(self._pull_resources(plan.fetch_resources))

    def _columns_to_write(
        self, columns: Mapping[str, Mapping[str, int]]
    ) -> dict[str, Mapping[str, int]]:
        """What must be written: an Interface whose monitored row already holds the values is
        skipped unless this run ever set a value on it (then its write may be in flight and
        the row not yet updated: written, and the command compares again). A cold boot of
        1000 ports with ``qos`` loaded and no policy so sends no transaction at all."""
        assert self._monitor is not None
        rows = {str(row["name"]): row for row in self._monitor.rows("Interface").values()}
        wanted: dict[str, Mapping[str, int]] = {}
        for name, want in columns.items():
            row = rows.get(name)
            if (
                name in self._columns_written
                or row is None
                or any(row.get(column) != value for column, value in want.items())
            ):
                wanted[name] = want
                if any(value != self._neutral.get(column) for column, value in want.items()):
                    self._columns_written.add(name)
        return wanted

    def _after_commit(self, plan: Plan) -> None:
        """Reports (a port is UP only once its flows are in), snapshot, tunnel ports."""
        for device, up in plan.reports:
            self.reporter.report(device, up)
        if plan.interface_columns:  # agent extensions' columns (QoS), after the bundle
            columns = self._columns_to_write(plan.interface_columns)
            if columns:
                self._spawn(write_interface_columns(self.ovsdb, columns))
        if plan.queues is not None:  # minimum-bandwidth queues (QoS), after the bundle
            bridges = [pair.bridge for pair in patch_pairs(self.config)]
            self.queue_writer.want(plan.queues.wanted, plan.queues.keep, bridges)
        if plan.state_changed and self._snapshot is not None:
            self._snapshot.changed()
        if plan.tunnel_ports and self.core is not None and self.core.tunnels is not None:
            assert self.tunnel_settings is not None
            self._spawn(apply_port_changes(self.ovsdb, self.tunnel_settings, plan.tunnel_ports,
                                           self.core.tunnels))  # fmt: skip

    async def _apply_flows(self, bridge: str, remove: Iterable[Any], add: Iterable[Any]) -> None:
        reconciler = self.reconcilers[bridge]
        started = time.monotonic()
        try:
            sent = await reconciler.apply(remove, add)
            self.stats.bundles += 1
            seconds = time.monotonic() - started
            if sent:
                self.telemetry.metrics.bundle_committed(bridge, sent, seconds)
            ms = seconds * 1e3
            # a burst's bundle may keep ovs-vswitchd busy for minutes: the operator sees it
            level = logging.INFO if sent >= BIG_BUNDLE else logging.DEBUG
            LOG.log(level, "bundle committed", extra={"bridge": bridge, "flowmods": sent, "ms": ms})
        except BundleError as exc:
            self.telemetry.metrics.bundle_failed(bridge)
            LOG.error("bundle rejected; bridge left as it was, re-syncing it",
                      extra={"bridge": bridge, "error": exc})  # fmt: skip
            with contextlib.suppress(OpenFlowError):
                await self._timed_sync(bridge, reconciler)
        except OpenFlowError as exc:
            # the reconciler keeps the desired set and replays it on reconnect
            LOG.warning("bridge unreachable; flows follow on reconnect",
                        extra={"bridge": bridge, "error": exc})  # fmt: skip

    async def _warm_flowmod_caches(self) -> None:
        """An OVS restart replays from cached bytes; a restarted agent sent nothing, so fill
        its caches now, in the background (see FlowReconciler.warm_cache)."""
        for bridge, reconciler in self.reconcilers.items():
            started = time.monotonic()
            encoded = await reconciler.warm_cache()
            if encoded:
                LOG.debug("FlowMod cache warmed", extra={
                    "bridge": bridge, "flows": encoded,
                    "ms": (time.monotonic() - started) * 1e3})  # fmt: skip

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fetch_details(self, devices: list[str]) -> None:
        await self._rpc_ready.wait()
        started = time.monotonic()
        outcomes = await self.api.get_devices_details(devices)
        ms = (time.monotonic() - started) * 1e3
        LOG.debug("device details answered", extra={"devices": len(devices), "ms": ms})
        self._post(_Details(tuple(devices), outcomes))

    async def _pull_resources(self, keys: list[str]) -> None:
        """``bulk_pull`` the versioned objects extensions need (one call per type); what the
        server lacks comes back as deleted, so the ports waiting for it settle."""
        await self._rpc_ready.wait()
        by_type: dict[str, list[str]] = {}
        for key in keys:
            resource_type, _, resource_id = key.partition("/")
            by_type.setdefault(resource_type, []).append(resource_id)
        for resource_type, ids in by_type.items():
            wanted = tuple(f"{resource_type}/{i}" for i in ids)
            try:
                timeout = self.config.agent.rpc_response_timeout
                answer = await bulk_pull(self.transport, resource_type, ids, timeout=timeout)
            except (RpcError, ValueError) as exc:
                LOG.warning("resource pull failed; retrying", extra={
                    "resource_type": resource_type, "ids": len(ids), "error": exc})  # fmt: skip
                self._post(_Pulled(wanted, error=str(exc)))
                continue
            LOG.debug("resources pulled", extra={"resource_type": resource_type, "ids": len(ids)})
            gone = missing_as_deleted(resource_type, ids, answer)
            self._post(_Pulled(wanted, (answer, gone)))

    async def _fetch_security_groups(self, devices: list[str]) -> None:
        await self._rpc_ready.wait()
        started = time.monotonic()
        try:
            info: Any = await self.api.security_group_info_for_devices(devices)
            LOG.debug("security group info answered", extra={"devices": len(devices),
                      "ms": (time.monotonic() - started) * 1e3})  # fmt: skip
        except (RpcError, ValueError) as exc:
            LOG.warning("security group info failed; retrying",
                        extra={"devices": len(devices), "error": exc})  # fmt: skip
            info = str(exc)
        self._post(_SecurityGroups(tuple(devices), info))

    # -- logs ----------------------------------------------------------------------------------
    def _log_transitions(self, transitions: list[Transition], committed: float) -> None:
        """One log line and one telemetry record per transition, at its commit."""
        for t in transitions:
            seconds = committed - t.started
            self.telemetry.port_transition(t, seconds)
            ms = seconds * 1e3
            if t.phase is PortPhase.WIRED and t.flows_changed:
                self.stats.commit_latencies_ms.record(ms)
            level = logging.WARNING if t.phase is PortPhase.FAILED else logging.INFO
            extra: dict[str, Any] = {"iface_id": t.iface_id, "ofport": t.ofport,
                                     "phase": t.phase.value, "ms": ms}  # fmt: skip
            if t.old_ofport is not None:
                extra["old_ofport"] = t.old_ofport
            if t.reason:
                extra["reason"] = t.reason
            LOG.log(level, f"port {t.event}", extra=extra)

    def _progress(self, now: float) -> None:
        core = self.core
        assert core is not None
        waiting = core.details_fetch.waiting
        if waiting < BIG_BATCH or now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        LOG.info("progress", extra={"waiting_for_details": waiting, **core.counts()})


def run_agent(config: AgentConfig, reread: Callable[[], AgentConfig] | None = None) -> int:
    """``aovs agent``: run until SIGINT/SIGTERM (a clean stop: pending Port rows are written);
    SIGHUP re-reads the configuration with ``reread`` and applies what neutron's agent does
    (the log level and format), naming the options whose change needs a restart."""
    import uvloop

    running = config

    def hangup() -> None:
        nonlocal running
        if reread is None:
            LOG.warning("SIGHUP: nothing to re-read (no configuration file)")
            return
        try:
            plan = reload_plan(running, reread())
        except ConfigError as exc:
            LOG.error("SIGHUP: configuration not reloaded; keeping the running one",
                      extra={"error": str(exc)})  # fmt: skip
            return
        if plan.applied and plan.config is not None:
            running = plan.config
            configure_logging(running.agent.log_level, running.agent.log_format)
            LOG.warning("SIGHUP: applied", extra={"changes": "; ".join(plan.applied)})
        if plan.needs_restart:
            LOG.warning("SIGHUP: changed, but applied only by a restart",
                        extra={"options": ", ".join(plan.needs_restart)})  # fmt: skip
        if not plan.changed:
            LOG.info("SIGHUP: configuration unchanged")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGHUP, hangup)
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, task.cancel)
        agent = Agent(config)
        with contextlib.suppress(asyncio.CancelledError):
            await agent.run_forever()
        LOG.info("agent stopped")

    uvloop.run(main())
    return 0
