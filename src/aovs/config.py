"""Agent configuration: neutron's openvswitch_agent.ini option names, as TOML plus env overrides.

Precedence (highest first): ``AOVS_<SECTION>__<OPTION>`` environment variables, the TOML file,
the defaults below. A bad file or value fails at start with ONE line that names the option.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("/etc/aovs/aovs.toml")


class ConfigError(Exception):
    """A configuration file or value is unusable; the message is one operator-readable line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OVSSection(_Section):
    """``[ovs]``: bridges and how to reach Open vSwitch."""

    integration_bridge: str = "br-int"
    tunnel_bridge: str = "br-tun"
    bridge_mappings: tuple[str, ...] = ()
    local_ip: str | None = None
    datapath_type: Literal["system", "netdev", "dummy"] = "system"
    ovsdb_connection: str = "unix:/var/run/openvswitch/db.sock"
    ovs_rundir: Path | None = None
    of_connection: str = "mgmt"
    of_request_timeout: float = Field(default=10.0, gt=0)
    int_peer_patch_port: str = "patch-tun"
    tun_peer_patch_port: str = "patch-int"
    vxlan_udp_port: int = Field(default=4789, ge=1, le=65535)
    vhostuser_socket_dir: Path = Path("/var/run/openvswitch")  # reported to the server for nova
    # aovs: Port.tag / other_config are written this long after a port's flows, batched (each
    # write makes ovs-vswitchd reconfigure every port; nothing forwards by them)
    port_metadata_delay: float = Field(default=5.0, ge=0)

    @field_validator("bridge_mappings", mode="before")
    @classmethod
    def _split_mappings(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("bridge_mappings")
    @classmethod
    def _check_mappings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen_physnets: set[str] = set()
        seen_bridges: set[str] = set()
        for item in value:
            physnet, sep, bridge = item.partition(":")
            if not sep or not physnet or not bridge:
                raise ValueError(f"{item!r} is not 'physnet:bridge'")
            if physnet in seen_physnets:
                raise ValueError(f"physical network {physnet!r} is mapped twice")
            if bridge in seen_bridges:
                raise ValueError(f"bridge {bridge!r} is mapped twice")
            seen_physnets.add(physnet)
            seen_bridges.add(bridge)
        return value

    @field_validator("local_ip")
    @classmethod
    def _check_local_ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("ovsdb_connection")
    @classmethod
    def _check_ovsdb(cls, value: str) -> str:
        if value.startswith("unix:") and len(value) > len("unix:"):
            return value
        if value.startswith("tcp:"):
            _parse_host_port(value[len("tcp:") :])
            return value
        raise ValueError("must be 'unix:PATH' or 'tcp:IP:PORT'")

    @field_validator("of_connection")
    @classmethod
    def _check_of(cls, value: str) -> str:
        if value == "mgmt":
            return value
        if value.startswith("tcp:"):
            _parse_host_port(value[len("tcp:") :])
            return value
        raise ValueError("must be 'mgmt' or 'tcp:IP:PORT'")

    @property
    def physical_bridges(self) -> dict[str, str]:
        """physnet -> bridge name, from ``bridge_mappings``."""
        return dict(item.split(":", 1) for item in self.bridge_mappings)

    @property
    def rundir(self) -> Path:
        """Where the bridges' ``.mgmt`` sockets are: ``ovs_rundir`` or the db socket's directory."""
        if self.ovs_rundir is not None:
            return self.ovs_rundir
        if self.ovsdb_connection.startswith("unix:"):
            return Path(self.ovsdb_connection[len("unix:") :]).parent
        return Path("/var/run/openvswitch")

    def mgmt_socket(self, bridge: str) -> Path:
        return self.rundir / f"{bridge}.mgmt"


class AgentSection(_Section):
    """``[agent]``: tunnelling, l2population, reporting and local state."""

    tunnel_types: tuple[Literal["vxlan", "gre"], ...] = ()
    l2_population: bool = False
    arp_responder: bool = False
    report_interval: float = Field(default=30.0, ge=0)
    state_path: Path = Path("/var/lib/aovs")
    rpc_response_timeout: float = Field(default=60.0, gt=0)
    rpc_response_max_timeout: float = Field(default=600.0, gt=0)
    rpc_resources_processing_step: int = Field(default=100, ge=1)
    metrics_bind: str | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("tunnel_types", mode="before")
    @classmethod
    def _split_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class SecurityGroupSection(_Section):
    """``[securitygroup]``: which firewall driver filters VM ports."""

    firewall_driver: str = "openvswitch"
    enable_security_group: bool = True


class AgentConfig(BaseSettings):
    """The whole agent configuration."""

    model_config = SettingsConfigDict(
        env_prefix="AOVS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    host: str = Field(default_factory=lambda: os.uname().nodename)  # socket.gethostname()
    transport_url: str = "rabbit://guest:guest@127.0.0.1:5672/"
    ovs: OVSSection = OVSSection()
    agent: AgentSection = AgentSection()
    securitygroup: SecurityGroupSection = SecurityGroupSection()

    @field_validator("transport_url")
    @classmethod
    def _check_transport(cls, value: str) -> str:
        if not value.startswith(("rabbit://", "amqp://")):
            raise ValueError("must start with rabbit:// (or amqp://)")
        return value

    @model_validator(mode="after")
    def _check_tunnels(self) -> AgentConfig:
        if self.agent.tunnel_types and self.ovs.local_ip is None:
            raise ValueError("[agent] tunnel_types is set, so [ovs] local_ip is required")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [env_settings, init_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def _parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not IP:PORT")
    ipaddress.ip_address(host.strip("[]"))
    return host.strip("[]"), int(port)


def load_config(path: Path | str | None = None, **overrides: Any) -> AgentConfig:
    """Load and validate; raise :class:`ConfigError` with one clear line on any problem.

    ``path`` None means ``$AOVS_CONFIG`` or ``/etc/aovs/aovs.toml`` when it exists, else defaults.
    """
    if path is None:
        env_path = os.environ.get("AOVS_CONFIG")
        if env_path:
            path = Path(env_path)
        elif DEFAULT_CONFIG_FILE.exists():
            path = DEFAULT_CONFIG_FILE
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path}: not found")
        try:
            with path.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    settings_cls = type(
        "_FileAgentConfig",
        (AgentConfig,),
        {"model_config": SettingsConfigDict(**{**AgentConfig.model_config, "toml_file": path})},
    )
    try:
        loaded = settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None
    return AgentConfig.model_validate(loaded.model_dump())


def _one_line(exc: ValidationError, path: Path | None) -> str:
    """All problems on one line, each naming the option and where its value came from."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        option = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else (loc[0] if loc else "?")
        env_name = "AOVS_" + "__".join(loc).upper()
        source = f" (from {env_name})" if env_name in os.environ else ""
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown option"
        parts.append(f"{option}{source}: {message}")
    where = f"config file {path}" if path else "configuration"
    return f"{where}: " + "; ".join(parts)
