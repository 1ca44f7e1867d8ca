"""The simulator's world: networks, security groups, ports and tunnels, from JSON or generated.

File format (JSON)::

    {"networks": {NET_ID: {"network_type": "vlan", "physical_network": "physnet1",
                           "segmentation_id": 100, "mtu": 1500}},
     "security_groups": {SG_ID: {"rules": [{"direction": "ingress", "ethertype": "IPv4",
                                           "protocol": "tcp", "port_range_min": 22,
                                           "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0",
                                           "remote_group_id": null}]}},
     "ports": [{"port_id": .., "network_id": .., "mac_address": .., "fixed_ips":
                [{"subnet_id": .., "ip_address": ..}], "admin_state_up": true,
                "port_security_enabled": true, "security_groups": [..],
                "allowed_address_pairs": [], "device_owner": "compute:nova",
                "binding_host": null}],
     "tunnels": [{"ip_address": .., "host": ..}]}

``binding_host`` (optional) binds the port to one host: asked from another, the simulator
answers ``no_active_binding`` as neutron does. Cross references are checked on load.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAMESPACE = uuid.UUID("6f1c1a8e-5d2e-4c1b-9a57-0a0b5e0d7a11")  # stable generated ids


class SimulatedCloudError(ValueError):
    """The topology file is unusable; the message is one line naming the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudNetwork(_Strict):
    network_type: Literal["vlan", "flat", "vxlan", "gre"]
    physical_network: str | None = None
    segmentation_id: int | None = Field(default=None, ge=0)
    mtu: int | None = Field(default=None, ge=68)

    @model_validator(mode="after")
    def _check_segment(self) -> CloudNetwork:
        if self.network_type in ("vlan", "flat") and not self.physical_network:
            raise ValueError(f"a {self.network_type} network needs physical_network")
        if self.network_type == "vlan" and not 1 <= (self.segmentation_id or 0) <= 4094:
            raise ValueError("a vlan network needs segmentation_id 1..4094")
        if self.network_type in ("vxlan", "gre") and self.segmentation_id is None:
            raise ValueError(f"a {self.network_type} network needs segmentation_id")
        return self

    @property
    def effective_mtu(self) -> int:
        if self.mtu is not None:
            return self.mtu
        return {"vxlan": 1450, "gre": 1458}.get(self.network_type, 1500)


class CloudRule(_Strict):
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | int | None = None
    port_range_min: int | None = Field(default=None, ge=0, le=65535)
    port_range_max: int | None = Field(default=None, ge=0, le=65535)
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    @field_validator("remote_ip_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value, strict=False))


class CloudSecurityGroup(_Strict):
    rules: tuple[CloudRule, ...] = ()


class CloudFixedIP(_Strict):
    subnet_id: str | None = None
    ip_address: str

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))


class AddressPair(_Strict):
    ip_address: str
    mac_address: str | None = None


class CloudPort(_Strict):
    port_id: str
    network_id: str
    mac_address: str
    fixed_ips: tuple[CloudFixedIP, ...] = ()
    admin_state_up: bool = True
    port_security_enabled: bool = True
    security_groups: tuple[str, ...] = ()
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    device_owner: str = "compute:nova"
    binding_host: str | None = None

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str) -> str:
        if not _MAC_RE.match(value.lower()):
            raise ValueError(f"{value!r} is not a MAC address")
        return value.lower()


class CloudTunnel(_Strict):
    ip_address: str
    host: str | None = None

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))


class SimulatedCloud(_Strict):
    networks: dict[str, CloudNetwork] = {}
    security_groups: dict[str, CloudSecurityGroup] = {}
    ports: tuple[CloudPort, ...] = ()
    tunnels: tuple[CloudTunnel, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> SimulatedCloud:
        seen: set[str] = set()
        for port in self.ports:
            if port.port_id in seen:
                raise ValueError(f"port {port.port_id} is listed twice")
            seen.add(port.port_id)
            if port.network_id not in self.networks:
                raise ValueError(f"port {port.port_id}: unknown network {port.network_id}")
            for sg in port.security_groups:
                if sg not in self.security_groups:
                    raise ValueError(f"port {port.port_id}: unknown security group {sg}")
        for sg_id, group in self.security_groups.items():
            for rule in group.rules:
                if rule.remote_group_id and rule.remote_group_id not in self.security_groups:
                    raise ValueError(
                        f"security group {sg_id}: unknown remote group {rule.remote_group_id}"
                    )
        return self

    @classmethod
    def load(cls, path: Path | str) -> SimulatedCloud:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise SimulatedCloudError(f"topology {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise SimulatedCloudError(f"topology {path}: not valid JSON: {exc}") from None
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: object, *, source: str = "topology") -> SimulatedCloud:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'top level'}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise SimulatedCloudError(f"topology {source}: {problems}") from None

    @classmethod
    def generate(
        cls,
        ports: int = 1000,
        *,
        networks: int | None = None,
        network_types: tuple[Literal["vlan", "vxlan"], ...] = ("vlan", "vxlan"),
        security_groups: int = 4,
        tunnels: int = 3,
        physical_network: str = "physnet1",
    ) -> SimulatedCloud:
        """A deterministic big topology: ports spread over vlan/vxlan networks, each port in
        one security group shaped like neutron's default group plus ssh/icmp rules."""
        n_networks = networks or max(1, ports // 50)
        nets: dict[str, CloudNetwork] = {}
        for index in range(n_networks):
            kind = network_types[index % len(network_types)]
            nets[_id("net", index)] = CloudNetwork(
                network_type=kind,
                physical_network=physical_network if kind == "vlan" else None,
                segmentation_id=(100 + index) if kind == "vlan" else (1000 + index),
            )
        groups: dict[str, CloudSecurityGroup] = {}
        for index in range(security_groups):
            sg_id = _id("sg", index)
            groups[sg_id] = CloudSecurityGroup(
                rules=(
                    CloudRule(direction="egress", ethertype="IPv4"),
                    CloudRule(direction="egress", ethertype="IPv6"),
                    CloudRule(direction="ingress", ethertype="IPv4", remote_group_id=sg_id),
                    CloudRule(direction="ingress", ethertype="IPv6", remote_group_id=sg_id),
                    CloudRule(
                        direction="ingress",
                        protocol="tcp",
                        port_range_min=22,
                        port_range_max=22,
                        remote_ip_prefix="0.0.0.0/0",
                    ),
                    CloudRule(direction="ingress", protocol="icmp", remote_ip_prefix="10.0.0.0/8"),
                )
            )
        net_ids, sg_ids = list(nets), list(groups)
        port_list = []
        for index in range(ports):
            net_index = index % n_networks
            host_part = index // n_networks + 2
            port_list.append(
                CloudPort(
                    port_id=_id("port", index),
                    network_id=net_ids[net_index],
                    mac_address="fa:16:3e:" + ":".join(f"{b:02x}" for b in index.to_bytes(3)),
                    fixed_ips=(
                        CloudFixedIP(
                            subnet_id=_id("subnet", net_index),
                            ip_address=f"10.{net_index % 256}.{host_part // 256}.{host_part % 256}",
                        ),
                    ),
                    security_groups=(sg_ids[index % len(sg_ids)],) if sg_ids else (),
                )
            )
        tunnel_list = tuple(
            CloudTunnel(ip_address=f"192.0.2.{index + 1}", host=f"compute-{index + 1}")
            for index in range(tunnels)
        )
        return cls(
            networks=nets, security_groups=groups, ports=tuple(port_list), tunnels=tunnel_list
        )

    def to_json(self) -> str:
        return self.model_dump_json(indent=1, exclude_defaults=False)


def _id(kind: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}-{index}"))
