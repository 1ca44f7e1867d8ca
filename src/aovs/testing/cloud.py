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
     "tunnels": [{"ip_address": .., "host": ..}],
     "qos_policies": {POLICY_ID: {"rules": [{"type": "bandwidth_limit", "direction": "egress",
                                            "max_kbps": 10000, "max_burst_kbps": 8000},
                                           {"type": "dscp_marking", "dscp_mark": 26}]}},
     "trunks": {TRUNK_ID: {"port_id": PARENT_PORT_ID,
                           "sub_ports": [{"port_id": .., "segmentation_id": 101}]}}}

A port (``qos_policy_id``) or a network (``qos_policy_id``: the port's
``qos_network_policy_id``) may name a QoS policy; a trunk's parent and subports are ports of
the file, each in at most one trunk.

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
    qos_policy_id: str | None = None

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
    qos_policy_id: str | None = None

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


QosRuleType = Literal[
    "bandwidth_limit", "dscp_marking", "minimum_bandwidth", "packet_rate_limit",
    "minimum_packet_rate",
]  # fmt: skip
# rule type -> the fields neutron 29's QosRule subclass has besides id and qos_policy_id
QOS_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "bandwidth_limit": ("max_kbps", "max_burst_kbps", "direction"),
    "dscp_marking": ("dscp_mark",),
    "minimum_bandwidth": ("min_kbps", "direction"),
    "packet_rate_limit": ("max_kpps", "max_burst_kpps", "direction"),
    "minimum_packet_rate": ("min_kpps", "direction"),
}


class CloudQosRule(_Strict):
    """One rule; ``id`` defaults to one derived from its policy and position."""

    type: QosRuleType
    id: str | None = None
    direction: Literal["ingress", "egress", "any"] = "egress"
    max_kbps: int | None = Field(default=None, ge=0)
    max_burst_kbps: int | None = Field(default=None, ge=0)
    dscp_mark: int | None = Field(default=None, ge=0, le=56)
    min_kbps: int | None = Field(default=None, ge=0)
    max_kpps: int | None = Field(default=None, ge=0)
    max_burst_kpps: int | None = Field(default=None, ge=0)
    min_kpps: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_fields(self) -> CloudQosRule:
        if self.type == "dscp_marking" and (self.dscp_mark is None or self.dscp_mark % 2):
            raise ValueError("a dscp_marking rule needs an even dscp_mark 0..56")
        if self.type != "minimum_packet_rate" and self.direction == "any":
            raise ValueError(f"a {self.type} rule cannot have direction any")
        wanted = {"bandwidth_limit": "max_kbps", "minimum_bandwidth": "min_kbps",
                  "packet_rate_limit": "max_kpps", "minimum_packet_rate": "min_kpps"}  # fmt: skip
        needed = wanted.get(self.type)
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"a {self.type} rule needs {needed}")
        return self


class CloudQosPolicy(_Strict):
    rules: tuple[CloudQosRule, ...] = ()
    revision_number: int = Field(default=1, ge=0)


class CloudSubPort(_Strict):
    port_id: str
    segmentation_type: Literal["vlan"] = "vlan"
    segmentation_id: int = Field(ge=1, le=4094)


class CloudTrunk(_Strict):
    port_id: str  # the parent port
    sub_ports: tuple[CloudSubPort, ...] = ()
    status: Literal["DOWN", "BUILD", "ACTIVE", "DEGRADED", "ERROR"] = "DOWN"
    revision_number: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _check_vlans(self) -> CloudTrunk:
        vlans = [s.segmentation_id for s in self.sub_ports]
        if len(set(vlans)) != len(vlans):
            raise ValueError("two subports share a segmentation_id")
        return self


class SimulatedCloud(_Strict):
    networks: dict[str, CloudNetwork] = {}
    security_groups: dict[str, CloudSecurityGroup] = {}
    ports: tuple[CloudPort, ...] = ()
    tunnels: tuple[CloudTunnel, ...] = ()
    qos_policies: dict[str, CloudQosPolicy] = {}
    trunks: dict[str, CloudTrunk] = {}

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
        self._check_qos_and_trunks(seen)
        return self

    def _check_qos_and_trunks(self, port_ids: set[str]) -> None:
        named = [(f"port {p.port_id}", p.qos_policy_id) for p in self.ports]
        named += [(f"network {n}", net.qos_policy_id) for n, net in self.networks.items()]
        for who, policy_id in named:
            if policy_id is not None and policy_id not in self.qos_policies:
                raise ValueError(f"{who}: unknown QoS policy {policy_id}")
        in_trunk: dict[str, str] = {}
        for trunk_id, trunk in self.trunks.items():
            for port_id in (trunk.port_id, *(s.port_id for s in trunk.sub_ports)):
                if port_id not in port_ids:
                    raise ValueError(f"trunk {trunk_id}: unknown port {port_id}")
                if port_id in in_trunk:
                    raise ValueError(
                        f"trunk {trunk_id}: port {port_id} is in trunk {in_trunk[port_id]} too"
                    )
                in_trunk[port_id] = trunk_id

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

    def with_qos_policy(
        self, rules: tuple[CloudQosRule, ...], ports: int | None = None
    ) -> tuple[SimulatedCloud, str]:
        """A copy with one more QoS policy (a generated id), named by the first ``ports``
        ports (all by default); and the policy's id."""
        policy_id = _id("qos-policy", len(self.qos_policies))
        count = len(self.ports) if ports is None else ports
        named = tuple(
            p.model_copy(update={"qos_policy_id": policy_id}) if index < count else p
            for index, p in enumerate(self.ports)
        )
        policies = {**self.qos_policies, policy_id: CloudQosPolicy(rules=rules)}
        return self._changed(ports=named, qos_policies=policies), policy_id

    def with_trunks(self, trunks: int, subports: int) -> SimulatedCloud:
        """A copy with ``trunks`` more trunks, each a new parent port and ``subports`` new
        subports (VLAN 101, 102, ... inside the VM), spread over the networks and security
        groups like the ports."""
        net_ids, sg_ids = list(self.networks), list(self.security_groups)
        if not net_ids:
            raise ValueError("trunks need at least one network")
        new_ports, new_trunks = list(self.ports), dict(self.trunks)
        first = len(self.trunks)
        for number in range(first, first + trunks):
            members = []
            for position in range(subports + 1):
                index = number * (subports + 1) + position
                net_index = index % len(net_ids)
                host_part = 250 - position  # 10.<net>.<250-position>.<n>: apart from VM ports
                new_ports.append(
                    CloudPort(
                        port_id=_id("trunk-port", index),
                        network_id=net_ids[net_index],
                        mac_address="fa:16:3f:" + ":".join(f"{b:02x}" for b in index.to_bytes(3)),
                        fixed_ips=(
                            CloudFixedIP(
                                subnet_id=_id("subnet", net_index),
                                ip_address=f"10.{net_index % 256}.{host_part}.{number % 250 + 2}",
                            ),
                        ),
                        security_groups=(sg_ids[index % len(sg_ids)],) if sg_ids else (),
                        device_owner="compute:nova" if position == 0 else "",
                    )
                )
                members.append(new_ports[-1].port_id)
            new_trunks[_id("trunk", number)] = CloudTrunk(
                port_id=members[0],
                sub_ports=tuple(
                    CloudSubPort(port_id=port_id, segmentation_id=100 + position)
                    for position, port_id in enumerate(members[1:], start=1)
                ),
            )
        return self._changed(ports=tuple(new_ports), trunks=new_trunks)

    def _changed(self, **fields: object) -> SimulatedCloud:
        """A copy with ``fields`` replaced, checked again (model_copy would not check)."""
        return SimulatedCloud.model_validate({**dict(self), **fields})

    def to_json(self) -> str:
        return self.model_dump_json(indent=1, exclude_defaults=False)


def _id(kind: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}-{index}"))
