"""Agent configuration: neutron's option names, from neutron's INI files or aovs' TOML file.

Two forms, one model (:class:`AgentConfig`):

- neutron's own files, ``--config-file neutron.conf --config-file openvswitch_agent.ini
  [--config-dir DIR]`` (:class:`IniFiles`), read with oslo.config's rules (``aovs.config_ini``
  says which and how); options aovs does not implement are returned as ``ignored`` and logged
  once by the agent (:func:`log_ignored`), never fatal;
- aovs' TOML file (``--config``), where an unknown option is an error.

Precedence (highest first): ``AOVS_<SECTION>__<OPTION>`` environment variables, the files (for
INI, the later file wins option by option), the defaults below. A bad file or value fails at
start with ONE line that names the file, the section and the option, and never shows a secret
(``transport_url``, any ``*password*``); the ``aovs`` command exits 2 on it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aovs.config_ini import IniError, IniFiles, IniResult, Origin, is_secret, labels_in, read_ini
from aovs.rpc.errors import TransportUrlError
from aovs.rpc.options import RabbitOptions
from aovs.rpc.url import parse_transport
from aovs.rpc.url import redact as redact_url  # every password hidden, for printing

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AgentConfig",
    "AgentSection",
    "ConfigError",
    "ConfigLocation",
    "IniFiles",
    "LoadedConfig",
    "OVSSection",
    "SecurityGroupSection",
    "load_config",
    "log_ignored",
    "read_config",
    "redact_url",
]

LOG = logging.getLogger(__name__)

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
    # neutron's: each one required with an ssl: ovsdb_connection (checked, then unused otherwise)
    ssl_key_file: Path | None = Field(default=None, validate_default=True)
    ssl_cert_file: Path | None = Field(default=None, validate_default=True)
    ssl_ca_cert_file: Path | None = Field(default=None, validate_default=True)
    ovsdb_timeout: float = Field(default=10.0, gt=0)  # seconds per OVSDB request
    ovs_rundir: Path | None = None
    of_connection: str = "mgmt"
    of_request_timeout: float = Field(default=10.0, gt=0)
    of_connect_timeout: float = Field(default=30.0, gt=0)  # the bridges' first handshake
    of_inactivity_probe: float = Field(default=10.0, ge=0)  # 0: no echo probes
    int_peer_patch_port: str = "patch-tun"
    tun_peer_patch_port: str = "patch-int"
    vxlan_udp_port: int = Field(default=4789, ge=1, le=65535)
    vhostuser_socket_dir: Path = Path("/var/run/openvswitch")  # reported to the server for nova
    # aovs: neutron's Port.tag / other_config. Nothing forwards by them, and each write makes
    # ovs-vswitchd reconfigure every port: unset (the default), they are written when the agent
    # stops (for neutron's agent taking the host back); N: also N seconds after a port's flows,
    # batched into one transaction
    port_metadata_delay: float | None = Field(default=None, ge=0)

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
        if value.startswith(("tcp:", "ssl:")):
            _parse_host_port(value[len("tcp:") :])
            return value
        raise ValueError("must be 'unix:PATH', 'tcp:IP:PORT' or 'ssl:IP:PORT'")

    @field_validator("ssl_key_file", "ssl_cert_file", "ssl_ca_cert_file")
    @classmethod
    def _check_ssl_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if not str(info.data.get("ovsdb_connection", "")).startswith("ssl:"):
            return value
        if value is None or str(value) in ("", "."):
            raise ValueError("required with an ssl: ovsdb_connection")
        mark = b"PRIVATE KEY-----" if info.field_name == "ssl_key_file" else b"BEGIN CERTIFICATE-"
        problem = _pem_problem(value, mark)
        if problem is not None:
            raise ValueError(f"{value}: {problem}")
        return value

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

    @property
    def ovsdb_client_options(self) -> dict[str, Any]:
        """``aovs.ovsdb.OVSDBClient``'s keyword arguments besides the connection."""
        return {"request_timeout": self.ovsdb_timeout, "ssl_key_file": self.ssl_key_file,
                "ssl_cert_file": self.ssl_cert_file,
                "ssl_ca_cert_file": self.ssl_ca_cert_file}  # fmt: skip

    @property
    def openflow_channel_options(self) -> dict[str, Any]:
        """``aovs.openflow.channel.OpenFlowChannel``'s timeouts, from the ``of_*`` options."""
        return {"request_timeout": self.of_request_timeout,
                "connect_timeout": self.of_connect_timeout,
                "inactivity_probe": self.of_inactivity_probe}  # fmt: skip


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
    # neutron's agent extensions (built-ins, or ``aovs.agent.extensions`` entry points)
    extensions: tuple[str, ...] = ()

    @field_validator("tunnel_types", "extensions", mode="before")
    @classmethod
    def _split_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("extensions")
    @classmethod
    def _known_extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            return value
        from aovs.extensions.base import available_extensions, unknown_extensions

        unknown = unknown_extensions(value)
        if unknown:
            raise ValueError(
                f"unknown agent extension {unknown[0]!r}; available: "
                f"{', '.join(available_extensions())}"
            )
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

    host: str = Field(default_factory=lambda: os.uname().nodename, min_length=1)  # gethostname()
    transport_url: str = "rabbit://guest:guest@127.0.0.1:5672/"
    ovs: OVSSection = OVSSection()
    agent: AgentSection = AgentSection()
    securitygroup: SecurityGroupSection = SecurityGroupSection()
    # oslo.messaging's RabbitMQ options (TLS, heartbeat, reconnects, queue durability);
    # transport_url's query parameters override them, as in oslo.messaging
    oslo_messaging_rabbit: RabbitOptions = RabbitOptions()

    @field_validator("transport_url")
    @classmethod
    def _check_transport(cls, value: str) -> str:
        if not value.startswith(("rabbit://", "amqp://")):
            raise ValueError("must start with rabbit:// (or amqp://)")
        parse_transport(value)  # TransportUrlError is a ValueError; it never shows the password
        return value

    @model_validator(mode="after")
    def _check_rabbit(self) -> AgentConfig:
        try:  # the query's [oslo_messaging_rabbit] options, applied over the section's
            self.oslo_messaging_rabbit.with_query(parse_transport(self.transport_url).query)
        except TransportUrlError as exc:
            raise ValueError(f"[DEFAULT] {exc}") from None
        return self

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
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, [{host}]:{port}")
    ipaddress.ip_address(host.strip("[]"))
    return host.strip("[]"), int(port)


def _pem_problem(path: Path, mark: bytes) -> str | None:
    """Why ``path`` cannot be a PEM file holding ``mark`` (a key or a certificate), or None."""
    try:
        with path.open("rb") as handle:
            data = handle.read(1 << 20)
    except FileNotFoundError:
        return "not found"
    except PermissionError:
        return "permission denied"
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if mark not in data:
        return "does not hold a PEM " + ("private key" if b"KEY" in mark else "certificate")
    return None


ConfigLocation = Path | str | IniFiles | None
"""A TOML file, neutron's INI files, or None: ``$AOVS_CONFIG``, else ``/etc/aovs/aovs.toml`` if it
exists, else the defaults."""


@dataclass(frozen=True)
class LoadedConfig:
    """The configuration and what reading it found: the files read, the options ignored."""

    config: AgentConfig
    files: tuple[Path, ...] = ()
    ignored: tuple[str, ...] = ()  # "[section] option", a hint appended to likely mistakes
    hinted: bool = False  # some ignored option looks like a typo or a misplaced aovs option

    @property
    def ignored_line(self) -> str | None:
        """``ignored options: [DEFAULT] debug, [oslo_concurrency] lock_path`` (names only)."""
        return "ignored options: " + ", ".join(self.ignored) if self.ignored else None


def load_config(path: ConfigLocation = None, **overrides: Any) -> AgentConfig:
    """Load and validate; raise :class:`ConfigError` with one clear line on any problem.

    ``overrides`` (nested dicts, e.g. ``ovs={"datapath_type": "dummy"}``) are merged over the
    files' values; the environment still wins over both.
    """
    return read_config(path, **overrides).config


def read_config(path: ConfigLocation = None, **overrides: Any) -> LoadedConfig:
    """:func:`load_config`, with the files read and the ignored options (INI form)."""
    if isinstance(path, IniFiles):
        return _read_ini(path, overrides)
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
            hint = " (neutron's INI files are read with --config-file)"
            raise ConfigError(f"config file {path}: not valid TOML: {exc}{hint}") from None
    settings_cls = type(
        "_FileAgentConfig",
        (AgentConfig,),
        {"model_config": SettingsConfigDict(**{**AgentConfig.model_config, "toml_file": path})},
    )
    try:
        loaded = settings_cls(**overrides)
    except ValidationError as exc:
        where = f"config file {path}" if path else "configuration"
        raise ConfigError(f"{where}: " + "; ".join(_problems(exc, lambda _: None))) from None
    config = AgentConfig.model_validate(loaded.model_dump())
    return LoadedConfig(config, (path,) if path is not None else ())


def _read_ini(files: IniFiles, overrides: dict[str, Any]) -> LoadedConfig:
    try:
        result = read_ini(files, AgentConfig)
    except IniError as exc:
        raise ConfigError(str(exc)) from None
    try:  # AgentConfig(...) adds the environment (highest) to the files' values
        loaded = AgentConfig(**_merge(result.values, overrides))
    except ValidationError as exc:
        raise ConfigError(_ini_problems(exc, result)) from None
    config = AgentConfig.model_validate(loaded.model_dump())
    return LoadedConfig(config, result.files, result.ignored, result.hinted)


def log_ignored(loaded: LoadedConfig, logger: logging.Logger | None = None) -> None:
    """Log the ignored options as ONE line (names only, never a value); the agent calls this
    once at start. WARNING when one looks like a mistake (a typo, a misplaced option)."""
    line = loaded.ignored_line
    if line is not None:
        (logger or LOG).log(logging.WARNING if loaded.hinted else logging.INFO, line)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _problems(
    exc: ValidationError, origin_of: Callable[[tuple[str, ...]], Origin | None]
) -> list[str]:
    """Each problem as ``[section] option: message``, naming its environment variable when the
    value came from one; the value itself only for a builtin check of a non-secret option."""
    parts = []
    for error in exc.errors():
        field, item = _split_loc(error["loc"])
        origin = origin_of(field) if field else None
        if origin is not None:
            option = origin.label
        else:
            option = f"[{field[0]}] {field[1]}" if len(field) == 2 else "".join(field)
        if item:
            option += f" (item {int(item[0]) + 1})" if item[0].isdigit() else f" {'.'.join(item)}"
        env_name = "AOVS_" + "__".join(field).upper()
        source = f" (from {env_name})" if field and env_name in os.environ else ""
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown option"
        elif error["type"] not in ("value_error", "assertion_error", "missing"):
            shown = error.get("input")
            if isinstance(shown, str | int | float) and not (field and is_secret(field[-1])):
                message += f" (got {shown!r})"
        parts.append(f"{option}{source}: {message}" if option else message)
    return parts


def _split_loc(loc: tuple[int | str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A pydantic error location as (the field, the part inside its value)."""
    parts = tuple(str(p) for p in loc)
    if parts and parts[0] in _SECTIONS:
        return parts[:2], parts[2:]
    return parts[:1], parts[1:]


_SECTIONS = frozenset(
    name
    for name, info in AgentConfig.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
)


def _ini_problems(exc: ValidationError, result: IniResult) -> str:
    """One line; each problem prefixed with the file its value came from (``configuration`` for
    the environment and the defaults)."""

    def origin_of(field: tuple[str, ...]) -> Origin | None:
        env_name = "AOVS_" + "__".join(field).upper()
        return None if env_name in os.environ else result.origins.get(field)

    lines = []
    for problem, error in zip(_problems(exc, origin_of), exc.errors(), strict=True):
        field, _ = _split_loc(error["loc"])
        origin = origin_of(field) if field else None
        if origin is None and not field:  # a check across options: the first named one's file
            named = [(o,) if s == "DEFAULT" else (s, o) for s, o in labels_in(problem)]
            origin = next((result.origins[f] for f in named if f in result.origins), None)
        where = f"config file {origin.file}" if origin is not None else "configuration"
        lines.append(f"{where}: {problem}")
    return "; ".join(lines)
