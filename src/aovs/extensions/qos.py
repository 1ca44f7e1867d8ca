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
- ``minimum_packet_rate``: nothing on the dataplane (placement only, as in neutron);
- ``bandwidth_limit`` ingress, ``minimum_bandwidth`` egress, ``packet_rate_limit`` and any
  unknown type: NOT applied yet; each is returned as a problem (the agent logs it per port),
  never silently ignored.
"""

from __future__ import annotations

from typing import ClassVar

from aovs.extensions.base import ExtensionPort, InterfaceColumns, PortContribution
from aovs.openflow.flows import Flow, Match, Resubmit, SetField
from aovs.pipelines import tables
from aovs.rpc.resources import QOS_POLICY, QosPolicyValue, QosRuleValue, ResourceCache

DSCP_PRIORITY = 65535  # neutron's install_dscp_marking_rule
DSCP_MARKED_REG = "reg2"  # 0 on the first pass through table 0, 1 once marked
ETH_TYPES = (0x0800, 0x86DD)
DEFAULT_BURST_RATE = 0.8  # neutron_lib.services.qos.constants.DEFAULT_BURST_RATE
POLICING_RATE = "ingress_policing_rate"
POLICING_BURST = "ingress_policing_burst"
PLACEMENT_ONLY = frozenset({"minimum_packet_rate"})


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


def egress_policing(rule: QosRuleValue) -> dict[str, int]:
    """The Interface columns of an egress bandwidth limit (no limit: none)."""
    rate = rule.max_kbps or 0
    if rate <= 0:
        return {}
    burst = rule.max_burst_kbps or int(rate * DEFAULT_BURST_RATE)
    return {POLICING_RATE: rate, POLICING_BURST: int(burst)}


def rule_contribution(port: ExtensionPort, rule: QosRuleValue) -> PortContribution:
    """One rule on one port."""
    if rule.type == "bandwidth_limit" and rule.direction == "egress":
        return PortContribution(interface=egress_policing(rule))
    if rule.type == "dscp_marking":
        if rule.dscp_mark is None or not 0 <= rule.dscp_mark <= 63:
            return PortContribution(problems=(f"dscp_marking rule {rule.id}: no valid mark",))
        return PortContribution(flows=dscp_flows(port.ofport, rule.dscp_mark))
    if rule.type in PLACEMENT_ONLY:
        return PortContribution()
    what = f"{rule.type} {rule.direction}" if rule.type != "dscp_marking" else rule.type
    return PortContribution(problems=(f"{what} rule {rule.id}: not supported by aovs yet",))


def policy_contribution(port: ExtensionPort, policy: QosPolicyValue) -> PortContribution:
    """Every rule of ``policy`` on ``port``."""
    flows: set[Flow] = set()
    interface: dict[str, int] = {}
    problems: list[str] = []
    for rule in policy.rules:
        part = rule_contribution(port, rule)
        flows |= part.flows
        interface.update(part.interface)
        problems.extend(part.problems)
    return PortContribution(
        flows=frozenset(flows),
        interface=interface,
        needs=frozenset({(QOS_POLICY, policy.id)}),
        problems=tuple(problems),
    )


class QosExtension:
    """``[agent] extensions = qos``."""

    name: ClassVar[str] = "qos"
    resource_types: ClassVar[frozenset[str]] = frozenset({QOS_POLICY})
    interface_columns: ClassVar[InterfaceColumns] = {POLICING_RATE: 0, POLICING_BURST: 0}

    def port_contribution(self, port: ExtensionPort, resources: ResourceCache) -> PortContribution:
        policy_id = port_policy_id(port)
        if policy_id is None:
            return PortContribution()
        policy = resources.get(QOS_POLICY, policy_id)
        if not isinstance(policy, QosPolicyValue):  # not known yet: pulled, then recomputed
            return PortContribution(needs=frozenset({(QOS_POLICY, policy_id)}))
        return policy_contribution(port, policy)
