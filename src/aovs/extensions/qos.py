"""The ``qos`` agent extension: a port's QoS policy as neutron's openvswitch QoS driver applies
it (neutron/plugins/ml2/drivers/openvswitch/agent/extension_drivers/qos_driver.py, neutron 29).

The port's policy is its own ``qos_policy_id``, else its network's (``qos_network_policy_id``),
as neutron's ``QosAgentExtension.handle_port`` picks it; the policy and its rules come from the
agent's resource cache (pulled once, then kept current by ``neutron-vo-QosPolicy-1.10`` pushes).

Rules, from the VM's point of view:

- ``bandwidth_limit`` egress (what the VM sends is what OVS receives on the tap): the
  Interface's ``ingress_policing_rate`` / ``ingress_policing_burst`` (kbps / kb), burst
  defaulting to 80 % of the rate as neutron's ``get_ingress_qdisc_burst_value``;
- ``dscp_marking``: neutron's two flows in table 0 at priority 65535 (``in_port``, ``reg2=0``,
  IPv4 / IPv6): ``reg2=1``, ``set ip_dscp``, resubmit to table 0, where the packet continues as
  any other (``reg2`` keeps it from matching again);
- ``minimum_bandwidth`` egress, on a vlan/flat port: a Queue (``min-rate``) numbered by the
  port's ofport in the linux-htb QoS of the physical bridges' NICs (a :class:`MinBandwidthQueue`,
  written by the agent), and a table 0 flow (priority 200, ``in_port``, ``reg4=0``) that sets
  that queue, ``reg4=1`` and resubmits to table 0, where the packet continues as any other;
  on a tunnelled port (neutron: physical networks only) and in the ingress direction (not
  enforced by neutron's openvswitch driver either) it is a problem, not applied;
- ``bandwidth_limit`` ingress and ``packet_rate_limit`` (egress, ingress): OpenFlow meters,
  as neutron's ``OVSMeterQoSDriver`` (``[ovs] qos_meter_bandwidth``): a kbps meter in table 59,
  pktps meters in table 58, priority 100 (``meter:N``, then the next table), reached through
  table-60 "divert" flows (aovs' table 0 goes to 60, not through 58 and 59 as neutron's does).
  Why meters and not neutron's default QoS/Queue rows for ingress bandwidth: those are an OVSDB
  write per port, and each makes ovs-vswitchd reconfigure every port (the cost aovs avoids), and
  linux-htb needs the kernel datapath; meters work in the kernel (Linux >= 4.15) and userspace
  datapaths (the tests' dummy one too), go through the same OpenFlow channel and reconciler as
  flows, and packet_rate_limit needs them anyway. The trade-off: a meter polices (drops what
  exceeds the rate; the burst absorbs peaks), it does not shape. Meter ids are derived:
  ``ofport * 4 + slot``. See docs/extensions.md and :mod:`aovs.openflow.meters`;
- ``minimum_packet_rate``: nothing on the dataplane (placement only, as in neutron);
- ``packet_rate_limit`` direction ``any`` and any unknown type: NOT applied; each is returned
  as a problem (the agent logs it per port), never silently ignored.
"""

from __future__ import annotations

from typing import ClassVar

from aovs.extensions.base import (
    ExtensionPort,
    InterfaceColumns,
    MinBandwidthQueue,
    PortContribution,
)
from aovs.openflow.flows import (
    ApplyMeter,
    Flow,
    GotoTable,
    Match,
    Meter,
    RegLoad,
    Resubmit,
    SetField,
    SetQueue,
    vid,
)
from aovs.pipelines import tables
from aovs.rpc.resources import QOS_POLICY, QosPolicyValue, QosRuleValue, ResourceCache

DSCP_PRIORITY = 65535  # neutron's install_dscp_marking_rule
DSCP_MARKED_REG = "reg2"  # 0 on the first pass through table 0, 1 once marked
ETH_TYPES = (0x0800, 0x86DD)
DEFAULT_BURST_RATE = 0.8  # neutron_lib.services.qos.constants.DEFAULT_BURST_RATE
POLICING_RATE = "ingress_policing_rate"
POLICING_BURST = "ingress_policing_burst"
PLACEMENT_ONLY = frozenset({"minimum_packet_rate"})
METER_PRIORITY = 100  # neutron's apply_meter_to_port, in tables 58 and 59
# table 60's entry, above the openvswitch firewall's (100: in_port, 90: VLAN and MAC)
DIVERT_EGRESS_PRIORITY = 102
DIVERT_INGRESS_PRIORITY = 101
METERED_BIT = 0x2  # reg2 bit 1: the packet went through tables 58-59 (bit 0 is DSCP's mark)
METER_SLOTS = 4  # meter id = ofport * 4 + slot
SLOT_EGRESS_PPS, SLOT_INGRESS_PPS, SLOT_INGRESS_KBPS = 0, 1, 2  # 3: free (egress kbps)
METER_SLOTS_PPS = {"egress": SLOT_EGRESS_PPS, "ingress": SLOT_INGRESS_PPS}
MIN_BW_PRIORITY = 200  # neutron's _set_pkt_mark_for_minimum_bandwidth
MIN_BW_QUEUED_REG = "reg4"  # 0 on the first pass through table 0, 1 once queued (neutron's)
PHYSICAL_NETWORK_TYPES = frozenset({"vlan", "flat"})


def port_policy_id(port: ExtensionPort) -> str | None:
    """The policy that applies: the port's own, else its network's (neutron's handle_port;
    :func:`aovs.rpc.server_replies.device_outcome` folds ``qos_network_policy_id`` into
    ``qos_policy_id`` when the port has none)."""
    return port.details.qos_policy_id


def dscp_flows(ofport: int, dscp_mark: int) -> frozenset[Flow]:
    """neutron's ``install_dscp_marking_rule``: mark once, then table 0 again."""
    actions = (
        SetField(DSCP_MARKED_REG, 1),
        SetField("ip_dscp", dscp_mark),
        Resubmit(tables.LOCAL_SWITCHING),
    )
    return frozenset(
        Flow(
            tables.LOCAL_SWITCHING,
            DSCP_PRIORITY,
            Match(in_port=ofport, reg2=0, eth_type=eth_type),
            actions,
        )
        for eth_type in ETH_TYPES
    )


def minimum_bandwidth_flows(ofport: int) -> frozenset[Flow]:
    """The port's egress traffic on its own queue (numbered by its ofport), then table 0
    again. neutron 29 sets ``pkt_mark`` here and ``set_queue`` in the physical bridge; the
    queue set here reaches the NIC the same way (ovs-vswitchd keeps it across the patch port:
    see docs/extensions.md)."""
    actions = (
        SetQueue(ofport),
        RegLoad(MIN_BW_QUEUED_REG, 1, 0, 1),
        Resubmit(tables.LOCAL_SWITCHING),
    )
    match = Match(in_port=ofport, reg4=0)
    return frozenset({Flow(tables.LOCAL_SWITCHING, MIN_BW_PRIORITY, match, actions)})


def minimum_bandwidth(port: ExtensionPort, rule: QosRuleValue) -> PortContribution:
    """A minimum_bandwidth rule on one port (neutron's update_minimum_bandwidth)."""
    if rule.direction != "egress":
        return PortContribution(
            problems=(
                f"minimum_bandwidth {rule.direction} rule {rule.id}: not enforced on the "
                "dataplane (neutron's openvswitch driver does not either: placement only)",
            )
        )
    details = port.details
    if details.network_type not in PHYSICAL_NETWORK_TYPES or not details.physical_network:
        return PortContribution(
            problems=(
                f"minimum_bandwidth egress rule {rule.id}: only on vlan/flat networks, the "
                f"port's network is {details.network_type}",
            )
        )
    if not rule.min_kbps or rule.min_kbps <= 0:
        return PortContribution(problems=(f"minimum_bandwidth rule {rule.id}: no min_kbps",))
    return PortContribution(
        flows=minimum_bandwidth_flows(port.ofport),
        queue=MinBandwidthQueue(details.port_id, port.ofport, rule.min_kbps),
    )


def egress_policing(rule: QosRuleValue) -> dict[str, int]:
    """The Interface columns of an egress bandwidth limit (no limit: none)."""
    rate = rule.max_kbps or 0
    if rate <= 0:
        return {}
    burst = rule.max_burst_kbps or int(rate * DEFAULT_BURST_RATE)
    return {POLICING_RATE: rate, POLICING_BURST: int(burst)}


def meter_id(ofport: int, slot: int) -> int:
    """A port's meter for one kind of limit: derived, not allocated (no state to lose or
    persist; an agent restart finds the same ids), unique on br-int (an ofport is) and within
    ovs-vswitchd's ``max_meter`` (262144 in the userspace datapath) for every ofport below
    65536."""
    return ofport * METER_SLOTS + slot


def divert_flow(port: ExtensionPort, direction: str) -> Flow:
    """Table 60's entry, for this port's traffic in ``direction``: through tables 58 and 59
    first (once: the reg2 bit), then table 60 again, where it goes on as it would have."""
    if direction == "egress":
        match = Match(in_port=port.ofport, reg2=(0, METERED_BIT))
        priority = DIVERT_EGRESS_PRIORITY
    else:
        match = Match(vlan_vid=vid(port.local_vlan), eth_dst=port.details.mac_address,
                      reg2=(0, METERED_BIT))  # fmt: skip
        priority = DIVERT_INGRESS_PRIORITY
    actions = (RegLoad(DSCP_MARKED_REG, 1, 1, 1), Resubmit(tables.PACKET_RATE_LIMIT))
    return Flow(tables.TRANSIENT_TABLE, priority, match, actions)


def metered_flow(port: ExtensionPort, direction: str, meter: Meter) -> Flow:
    """neutron's ``apply_meter_to_port``: table 58 (pktps) or 59 (kbps), priority 100,
    ``meter:N``, then the next table. Egress matches the port's in_port (neutron adds its MAC:
    an allowed-address-pair MAC would escape the limit), ingress its local VLAN and MAC."""
    table = tables.PACKET_RATE_LIMIT if meter.unit == "pktps" else tables.BANDWIDTH_RATE_LIMIT
    if direction == "egress":
        match = Match(in_port=port.ofport)
    else:
        match = Match(vlan_vid=vid(port.local_vlan), eth_dst=port.details.mac_address)
    return Flow(table, METER_PRIORITY, match, (ApplyMeter(meter.id), GotoTable(table + 1)))


def metered(port: ExtensionPort, direction: str, meter: Meter) -> PortContribution:
    return PortContribution(
        flows=frozenset({divert_flow(port, direction), metered_flow(port, direction, meter)}),
        meters=frozenset({meter}),
    )


def ingress_bandwidth_limit(port: ExtensionPort, rule: QosRuleValue) -> PortContribution:
    """A kbps meter, burst as for egress (neutron's 80 % of the rate when unset)."""
    rate = rule.max_kbps or 0
    if rate <= 0:
        return PortContribution()  # no limit, as egress_policing
    burst = rule.max_burst_kbps or int(rate * DEFAULT_BURST_RATE)
    meter = Meter(meter_id(port.ofport, SLOT_INGRESS_KBPS), "kbps", rate, burst)
    return metered(port, "ingress", meter)


def packet_rate_limit(port: ExtensionPort, rule: QosRuleValue) -> PortContribution:
    """A pktps meter of ``max_kpps`` * 1000, burst ``max_burst_kpps`` * 1000 (0: none), as
    neutron's ``_update_packet_rate_limit``."""
    if rule.direction not in METER_SLOTS_PPS:
        return PortContribution(
            problems=(
                f"packet_rate_limit {rule.direction} rule {rule.id}: not supported by the "
                "openvswitch agent (egress or ingress only)",
            )
        )
    if not rule.max_kpps or rule.max_kpps <= 0:
        return PortContribution(problems=(f"packet_rate_limit rule {rule.id}: no max_kpps",))
    burst = (rule.max_burst_kpps or 0) * 1000
    slot = METER_SLOTS_PPS[rule.direction]
    meter = Meter(meter_id(port.ofport, slot), "pktps", rule.max_kpps * 1000, burst)
    return metered(port, rule.direction, meter)


def rule_contribution(port: ExtensionPort, rule: QosRuleValue) -> PortContribution:
    """One rule on one port."""
    if rule.type == "bandwidth_limit" and rule.direction == "egress":
        return PortContribution(interface=egress_policing(rule))
    if rule.type == "bandwidth_limit" and rule.direction == "ingress":
        return ingress_bandwidth_limit(port, rule)
    if rule.type == "packet_rate_limit":
        return packet_rate_limit(port, rule)
    if rule.type == "dscp_marking":
        if rule.dscp_mark is None or not 0 <= rule.dscp_mark <= 63:
            return PortContribution(problems=(f"dscp_marking rule {rule.id}: no valid mark",))
        return PortContribution(flows=dscp_flows(port.ofport, rule.dscp_mark))
    if rule.type == "minimum_bandwidth":
        return minimum_bandwidth(port, rule)
    if rule.type in PLACEMENT_ONLY:
        return PortContribution()
    what = f"{rule.type} {rule.direction}" if rule.type != "dscp_marking" else rule.type
    return PortContribution(problems=(f"{what} rule {rule.id}: not supported by aovs yet",))


def policy_contribution(port: ExtensionPort, policy: QosPolicyValue) -> PortContribution:
    """Every rule of ``policy`` on ``port``."""
    flows: set[Flow] = set()
    interface: dict[str, int] = {}
    problems: list[str] = []
    queue: MinBandwidthQueue | None = None
    meters: set[Meter] = set()
    for rule in policy.rules:
        part = rule_contribution(port, rule)
        flows |= part.flows
        interface.update(part.interface)
        problems.extend(part.problems)
        queue = part.queue or queue
        meters |= part.meters
    return PortContribution(
        flows=frozenset(flows),
        interface=interface,
        needs=frozenset({(QOS_POLICY, policy.id)}),
        problems=tuple(problems),
        queue=queue,
        meters=frozenset(meters),
    )


class QosExtension:
    """``[agent] extensions = qos``."""

    name: ClassVar[str] = "qos"
    resource_types: ClassVar[frozenset[str]] = frozenset({QOS_POLICY})
    interface_columns: ClassVar[InterfaceColumns] = {POLICING_RATE: 0, POLICING_BURST: 0}
    uses_meters: ClassVar[bool] = True  # br-int's meters are reconciled (see base.py)

    def port_contribution(self, port: ExtensionPort, resources: ResourceCache) -> PortContribution:
        policy_id = port_policy_id(port)
        if policy_id is None:
            return PortContribution()
        policy = resources.get(QOS_POLICY, policy_id)
        if not isinstance(policy, QosPolicyValue):  # not known yet: pulled, then recomputed
            return PortContribution(needs=frozenset({(QOS_POLICY, policy_id)}))
        return policy_contribution(port, policy)
