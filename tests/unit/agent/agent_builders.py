"""Builders for the agent unit tests."""

from __future__ import annotations

from typing import Any

from aovs.agent.state import InterfaceRow
from aovs.dataplane.compose import PhysicalLink, Topology
from aovs.model import PortDetails

TOPO = Topology("br-int", {"physnet1": PhysicalLink("physnet1", "br-phys", 100, 200)})


def details(iface: str, net: str = "net-a", **kw: Any) -> PortDetails:
    index = int(iface.rsplit("-", 1)[-1]) if iface[-1].isdigit() else 1
    data: dict[str, Any] = {
        "device": iface, "port_id": iface, "network_id": net,
        "mac_address": f"fa:16:3e:00:{index // 256:02x}:{index % 256:02x}",
        "network_type": "vlan", "physical_network": "physnet1", "segmentation_id": 101,
        "fixed_ips": [{"ip_address": f"10.0.{index // 256}.{index % 256}"}],
    }  # fmt: skip
    data.update(kw)
    return PortDetails.model_validate(data)


def row(iface: str, ofport: int | None, uuid: str | None = None) -> InterfaceRow:
    return InterfaceRow(uuid=uuid or f"uuid-{iface}", name=f"tap-{iface}"[:15], iface_id=iface,
                        ofport=ofport)  # fmt: skip
