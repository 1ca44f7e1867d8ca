"""The ``trunk`` agent extension: neutron's openvswitch trunk driver, as pure values.

nova/os-vif plugs a trunk's VM into its own bridge, ``tbr-<trunk id>``; the agent then patches
that bridge to br-int (neutron 29: services/trunk/drivers/openvswitch/agent/trunk_manager.py and
ovsdb_handler.py), with the very names and ``external_ids`` neutron uses, so either agent can
take the host over from the other:

- the parent: ``tpt-<port id>`` on tbr, peer ``tpi-<port id>`` on br-int; both carry the parent's
  ``iface-id`` and ``attached-mac`` (br-int's side is then wired as any VM port);
- each subport: ``spt-<port id>`` on tbr with ``Port.tag`` = the subport's segmentation id (an
  access port: the VM's frames on that VLAN leave untagged), peer ``spi-<port id>`` on br-int
  with the subport's ``iface-id`` and MAC;
- the VM's tap on tbr records ``bridge_name``, ``trunk_id`` and ``subport_ids`` (JSON) in its
  Interface ``external_ids``: what neutron reads to clean up after the VM.

This module says what OVS must hold for a trunk (:func:`wanted_ports`) and what a host's trunk
bridges hold (:func:`observed_bridges`); :mod:`aovs.extensions.trunk_wiring` (the shell) writes
it and talks to the server. The extension itself adds nothing to a port's flows: the patch ports
on br-int are wired by the agent like any VM port.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from aovs.extensions.base import ExtensionPort, InterfaceColumns, PortContribution
from aovs.rpc.resources import SUBPORT, TRUNK, ResourceCache, TrunkValue

TRUNK_BRIDGE_PREFIX = "tbr-"
DEVICE_NAME_MAX_LEN = 15  # neutron_lib.constants.DEVICE_NAME_MAX_LEN
PARENT_PREFIX = "tp"
SUBPORT_PREFIX = "sp"
ACTIVE, DEGRADED, ERROR = "ACTIVE", "DEGRADED", "ERROR"  # neutron's trunk statuses
# the metadata neutron keeps on the VM's tap (ovsdb_handler._set_trunk_metadata)
BRIDGE_NAME, TRUNK_ID, SUBPORT_IDS = "bridge_name", "trunk_id", "subport_ids"


def trunk_bridge_name(trunk_id: str) -> str:
    """neutron's ``gen_trunk_br_name``: ``tbr-`` + the id, 14 characters."""
    return (TRUNK_BRIDGE_PREFIX + trunk_id)[: DEVICE_NAME_MAX_LEN - 1]


def int_port_name(prefix: str, port_id: str) -> str:
    """The br-int side (``tpi-`` / ``spi-``), 15 characters."""
    return f"{prefix}i-{port_id}"[:DEVICE_NAME_MAX_LEN]


def trunk_port_name(prefix: str, port_id: str) -> str:
    """The trunk bridge's side (``tpt-`` / ``spt-``), 15 characters."""
    return f"{prefix}t-{port_id}"[:DEVICE_NAME_MAX_LEN]


def is_trunk_bridge(name: str) -> bool:
    return name.startswith(TRUNK_BRIDGE_PREFIX)


def is_service_port(name: str) -> bool:
    """A port that realises a trunk (neutron's ``is_trunk_service_port``), not the VM's."""
    return is_trunk_bridge(name) or name[:2] in (PARENT_PREFIX, SUBPORT_PREFIX)


@dataclass(frozen=True, slots=True)
class TrunkPatch:
    """Two patch ports: ``int_name`` on br-int, ``trunk_name`` on the trunk bridge."""

    port_id: str  # the neutron port whose traffic it carries
    int_name: str
    trunk_name: str
    mac: str | None
    tag: int | None = None  # the trunk side's Port.tag (a subport's segmentation id)

    @property
    def external_ids(self) -> dict[str, str]:
        """neutron's ``get_patch_peer_attrs``: both sides carry them."""
        ids = {"iface-id": self.port_id}
        if self.mac:
            ids["attached-mac"] = self.mac
        return ids


def parent_pair(port_id: str, mac: str | None) -> TrunkPatch:
    return TrunkPatch(port_id, int_port_name(PARENT_PREFIX, port_id),
                     trunk_port_name(PARENT_PREFIX, port_id), mac)  # fmt: skip


def subport_pair(port_id: str, mac: str | None, segmentation_id: int) -> TrunkPatch:
    return TrunkPatch(port_id, int_port_name(SUBPORT_PREFIX, port_id),
                     trunk_port_name(SUBPORT_PREFIX, port_id), mac, segmentation_id)  # fmt: skip


def wanted_ports(
    trunk: TrunkValue, parent_mac: str | None, subport_macs: Mapping[str, str]
) -> tuple[TrunkPatch, ...]:
    """The patch pairs ``trunk`` needs: its parent's, then each bound subport's (a subport is
    patched only once the server bound it to this host and said its MAC, as neutron does)."""
    pairs = [parent_pair(trunk.port_id, parent_mac)]
    pairs += [
        subport_pair(s.port_id, subport_macs[s.port_id], s.segmentation_id)
        for s in trunk.sub_ports
        if s.port_id in subport_macs and s.segmentation_type == "vlan"
    ]
    return tuple(pairs)


def tap_metadata(bridge: str, trunk_id: str, subport_ids: Iterable[str]) -> dict[str, str]:
    """The keys neutron writes on the VM's tap (``_set_trunk_metadata``)."""
    return {BRIDGE_NAME: bridge, TRUNK_ID: trunk_id, SUBPORT_IDS: json.dumps(sorted(subport_ids))}


@dataclass(frozen=True, slots=True)
class TrunkBridge:
    """A ``tbr-`` bridge as OVSDB shows it: the VM's tap (if plugged) and the other ports."""

    name: str
    vm_port: str | None  # the VM's tap: the first port that is not a trunk service port
    parent_id: str | None  # its iface-id
    parent_mac: str | None
    service_ports: frozenset[str]  # tpt-/spt- names present


@dataclass(frozen=True, slots=True)
class IfaceView:
    name: str
    external_ids: Mapping[str, str]


def observed_bridges(
    bridges: Mapping[str, Iterable[str]],
    ports: Mapping[str, tuple[str, Iterable[str]]],
    interfaces: Mapping[str, IfaceView],
) -> dict[str, TrunkBridge]:
    """The trunk bridges among ``bridges`` (name -> port uuids; ``ports``: uuid -> (name,
    interface uuids); ``interfaces``: uuid -> view), each with its VM port."""
    found: dict[str, TrunkBridge] = {}
    for name, port_uuids in bridges.items():
        if not is_trunk_bridge(name):
            continue
        vm_port: str | None = None
        parent_id = parent_mac = None
        service: set[str] = set()
        for port_uuid in sorted(port_uuids):
            port = ports.get(port_uuid)
            if port is None:
                continue
            port_name, iface_uuids = port
            if port_name == name:
                continue  # the bridge's own internal port
            if is_service_port(port_name):
                service.add(port_name)
                continue
            for iface_uuid in iface_uuids:
                iface = interfaces.get(iface_uuid)
                if iface is not None and iface.external_ids.get("iface-id") and vm_port is None:
                    vm_port = iface.name
                    parent_id = iface.external_ids["iface-id"]
                    parent_mac = iface.external_ids.get("attached-mac")
        found[name] = TrunkBridge(name, vm_port, parent_id, parent_mac, frozenset(service))
    return found


def trunk_status(expected: int, done: int) -> str:
    """neutron's ``_get_current_status``: every subport handled, else DEGRADED."""
    return ACTIVE if expected == done else DEGRADED


class TrunkExtension:
    """``[agent] extensions = trunk``: consumes Trunk and SubPort objects (reported in
    ``resource_versions`` so the server pushes them); its OVSDB work is the shell's
    (:class:`aovs.extensions.trunk_wiring.TrunkWiring`), nothing per port here."""

    name: ClassVar[str] = "trunk"
    resource_types: ClassVar[frozenset[str]] = frozenset({TRUNK, SUBPORT})
    interface_columns: ClassVar[InterfaceColumns] = {}

    def port_contribution(self, port: ExtensionPort, resources: ResourceCache) -> PortContribution:
        return PortContribution()
