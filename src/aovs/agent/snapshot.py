"""The local snapshot: what the agent needs to rebuild the dataplane with no neutron-server.

After a host reboot OVS and the agent start fresh and neutron-server may answer late or not at
all; the snapshot (port details, local VLANs, security groups) lets the agent reinstall every
flow at once, then reconcile with the server's truth when it answers. It is JSON in
``[agent] state_path``/snapshot.json, written atomically (temp file, fsync, rename, fsync of the
directory) and debounced, so a burst of 1000 port changes costs one write. A missing,
unreadable or corrupt file is one warning and an empty snapshot, never a failed start.

This module is the value and its parsing (loaded by the core, no asyncio); the debounced
writer, the shell's part, is :mod:`aovs.agent.snapshot_writer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aovs.firewall.base import SecurityGroupState
from aovs.model import PortDetails, SecurityGroup

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILE_NAME = "snapshot.json"


@dataclass(frozen=True)
class LocalSnapshot:
    ports: Mapping[str, PortDetails] = field(default_factory=dict)  # by iface-id
    local_vlans: Mapping[str, int] = field(default_factory=dict)  # by network id
    security_groups: SecurityGroupState = field(
        default_factory=lambda: SecurityGroupState(groups={}, members={})
    )
    # endpoints and l2population FDB (JSON shaped by aovs.agent.tunnels); optional, so version
    # 1 files without it still load
    tunnels: Mapping[str, Any] = field(default_factory=dict)
    # the QoS policies the ports use (JSON shaped by aovs.agent.core), so a restart applies
    # them before the server answers the pull; optional, as tunnels
    qos_policies: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {
            "version": FORMAT_VERSION,
            "ports": {k: v.model_dump(mode="json") for k, v in sorted(self.ports.items())},
            "local_vlans": dict(sorted(self.local_vlans.items())),
            "security_groups": {
                k: v.model_dump(mode="json") for k, v in sorted(self.security_groups.groups.items())
            },
            "members": {
                sg: {kind: sorted(ips) for kind, ips in by_kind.items()}
                for sg, by_kind in sorted(self.security_groups.members.items())
            },
            "tunnels": dict(self.tunnels),
            "qos_policies": dict(sorted(self.qos_policies.items())),
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LocalSnapshot:
        """Parse; raises ValueError with one line naming what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version {FORMAT_VERSION} aovs snapshot")
        try:
            ports = {str(k): PortDetails.model_validate(v) for k, v in data["ports"].items()}
            vlans = {str(k): int(v) for k, v in data["local_vlans"].items()}
            groups = {
                str(k): SecurityGroup.model_validate(v) for k, v in data["security_groups"].items()
            }
            members = {
                str(sg): {str(kind): frozenset(map(str, ips)) for kind, ips in by_kind.items()}
                for sg, by_kind in data["members"].items()
            }
        except (KeyError, TypeError, AttributeError, ValueError, ValidationError) as exc:
            raise ValueError(f"malformed snapshot: {str(exc).splitlines()[0]}") from None
        tunnels = data.get("tunnels", {})
        qos_policies = data.get("qos_policies", {})
        if not isinstance(tunnels, dict) or not isinstance(qos_policies, dict):
            raise ValueError("malformed snapshot: tunnels or qos_policies is not an object")
        groups_state = SecurityGroupState(groups=groups, members=members)
        return cls(ports, vlans, groups_state, tunnels, qos_policies)


def load_snapshot(directory: Path) -> LocalSnapshot:
    path = directory / FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return LocalSnapshot()
    except OSError as exc:
        LOG.warning("snapshot unreadable; starting without it", extra={"path": path, "error": exc})
        return LocalSnapshot()
    try:
        return LocalSnapshot.from_json(text)
    except ValueError as exc:
        LOG.warning("snapshot ignored", extra={"path": path, "error": str(exc)})
        return LocalSnapshot()


def snapshot_extra(snapshot: LocalSnapshot) -> dict[str, Any]:
    return {"ports": len(snapshot.ports), "networks": len(snapshot.local_vlans),
            "security_groups": len(snapshot.security_groups.groups)}  # fmt: skip
