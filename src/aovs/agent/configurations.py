"""What the agent tells neutron-server about itself in ``report_state`` (pure).

neutron's ML2 openvswitch mechanism driver and l2population read these keys: without
``tunneling_ip`` l2population finds no agent on the host (no FDB entries, no tunnels between
hosts); nova's ``vif_details`` come from ``datapath_type``, ``ovs_hybrid_plug`` and
``ovs_capabilities`` (vhost-user on netdev/DPDK hosts). The keys and shapes are those neutron
29's own agent sends (ovs_neutron_agent.py ``agent_state``), so the server cannot tell aovs apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aovs.config import AgentConfig

# neutron's [placement] defaults: what its agent reports when no bandwidth is configured
INVENTORY_DEFAULTS: Mapping[str, Any] = {
    "allocation_ratio": 1.0, "min_unit": 1, "step_size": 1, "reserved": 0,
}  # fmt: skip
# firewall drivers that need the hybrid (linux bridge) plug; aovs has none of them
HYBRID_PLUG_DRIVERS = frozenset({"iptables_hybrid", "hybrid"})


def ovs_capabilities(open_vswitch_row: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"datapath_types": [...], "iface_types": [...]}`` from the (decoded) Open_vSwitch row."""
    return {
        key: sorted(str(v) for v in open_vswitch_row.get(key, ()))
        for key in ("datapath_types", "iface_types")
    }


def reported_configurations(
    config: AgentConfig,
    *,
    firewall_driver: str,
    capabilities: Mapping[str, Sequence[str]],
    extensions: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``configurations`` of ``report_state`` (``devices`` is added per report)."""
    ovs, agent = config.ovs, config.agent
    return {
        "bridge_mappings": ovs.physical_bridges,
        "resource_provider_bandwidths": {},
        "resource_provider_inventory_defaults": dict(INVENTORY_DEFAULTS),
        "resource_provider_packet_processing_without_direction": {},
        "resource_provider_packet_processing_with_direction": {},
        "resource_provider_packet_processing_inventory_defaults": dict(INVENTORY_DEFAULTS),
        "resource_provider_hypervisors": {},
        "integration_bridge": ovs.integration_bridge,
        "tunnel_types": list(agent.tunnel_types),
        "tunneling_ip": ovs.local_ip,
        "l2_population": agent.l2_population,
        "arp_responder_enabled": agent.arp_responder and agent.l2_population,
        "enable_distributed_routing": False,
        "log_agent_heartbeats": False,
        "extensions": list(extensions),
        "datapath_type": ovs.datapath_type,
        "ovs_capabilities": {k: list(v) for k, v in capabilities.items()},
        "vhostuser_socket_dir": str(ovs.vhostuser_socket_dir),
        "ovs_hybrid_plug": firewall_driver in HYBRID_PLUG_DRIVERS,
        "baremetal_smartnic": False,
        "in_distributed_mode": False,
        "firewall_driver": firewall_driver,
    }
