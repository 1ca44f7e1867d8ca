"""``[oslo_messaging_rabbit]``: aovs' RabbitMQ options, with oslo.messaging's names and defaults.

The section of neutron's files (and of aovs' TOML) that oslo.messaging's rabbit driver reads;
``aovs.config`` reads it into this model, and :class:`aovs.rpc.amqp.RpcTransport` takes it.
As in oslo.messaging (``ConfigOptsProxy``), a ``transport_url`` query parameter named after one
of these options overrides it: ``rabbit://u:p@h1:5671,u:p@h2:5671/?ssl=1`` turns TLS on whatever
the section says (:meth:`RabbitOptions.with_query`). A query parameter that is not an option of
oslo.messaging's rabbit driver is an error, as in oslo.messaging; one that is, but that aovs does
not implement, is reported by :func:`ignored_query` (the transport logs it once).

What each option does in aovs (oslo.messaging 18's behaviour unless said otherwise):

- ``ssl`` and ``ssl_*``: TLS with the ``ssl`` module's client context. The broker's certificate
  is always verified: against ``ssl_ca_file`` if set, else the system's CAs; its name is
  checked against each broker's host of ``transport_url`` unless
  ``ssl_enforce_hostname_verification = false`` (oslo.messaging checks it only with
  ``ssl_ca_file`` and a single host). ``ssl_cert_file`` / ``ssl_key_file``: the client
  certificate. ``ssl_version`` pins one protocol version (``tlsv1_2``, ...; ``sslv23`` or empty:
  negotiate the best both sides support).
- ``heartbeat_timeout_threshold`` (0: off): AMQP heartbeats negotiated with the broker, and a
  liveness probe every ``heartbeat_timeout_threshold / heartbeat_rate`` seconds that declares
  the broker lost when it has not answered within ``heartbeat_timeout_threshold``.
- ``kombu_reconnect_delay``: the pause after losing a connection (or a consumer cancelled by the
  broker) before connecting again, plus a random part up to ``kombu_reconnect_splay``;
  ``rabbit_retry_interval``, ``rabbit_retry_backoff``, ``rabbit_interval_max``: after every
  broker of ``transport_url`` failed once, wait 1, 3, 5, ... seconds (interval + n * backoff,
  at most interval_max) before the next round;
  ``kombu_failover_strategy``: the next broker after a loss (``round-robin``: the next in the
  list; ``shuffle``: a random other one). As oslo.messaging does, the list is shuffled once at
  start, so a fleet of agents spreads over a cluster.
- ``amqp_durable_queues``, ``amqp_auto_delete``, ``rabbit_quorum_queue`` (+ its
  ``rabbit_quorum_*`` limits), ``rabbit_transient_quorum_queue``, ``rabbit_transient_queues_ttl``,
  ``rabbit_ha_queues``: the queues and exchanges are declared exactly as oslo.messaging declares
  them with the same options (:func:`topic_queue`, ...), so neutron-server and neutron's agents
  sharing them see equivalent declarations.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from aovs.rpc.errors import TransportUrlError

# oslo.messaging 18's [oslo_messaging_rabbit] options (rabbit_opts + amqp_opts): the names a
# transport_url query may carry. Those not in RabbitOptions are accepted and ignored.
OSLO_RABBIT_OPTIONS = frozenset(
    {
        "rpc_conn_pool_size",
        "conn_pool_min_size",
        "conn_pool_ttl",
        "ssl",
        "ssl_version",
        "ssl_key_file",
        "ssl_cert_file",
        "ssl_ca_file",
        "ssl_enforce_hostname_verification",
        "ssl_enforce_fips_mode",
        "kombu_reconnect_delay",
        "kombu_reconnect_splay",
        "kombu_compression",
        "kombu_missing_consumer_retry_timeout",
        "kombu_reconnect_timeout",
        "kombu_failover_strategy",
        "rabbit_login_method",
        "rabbit_retry_interval",
        "rabbit_retry_backoff",
        "rabbit_interval_max",
        "rabbit_ha_queues",
        "rabbit_quorum_queue",
        "rabbit_transient_quorum_queue",
        "rabbit_quorum_delivery_limit",
        "rabbit_quorum_max_memory_length",
        "rabbit_quorum_max_memory_bytes",
        "rabbit_transient_queues_ttl",
        "rabbit_qos_prefetch_count",
        "heartbeat_timeout_threshold",
        "heartbeat_rate",
        "direct_mandatory_flag",
        "enable_cancel_on_failover",
        "use_queue_manager",
        "hostname",
        "processname",
        "rabbit_stream_fanout",
        "amqp_durable_queues",
        "amqp_auto_delete",
    }
)

# other clients' URL parameters (kombu, aio-pika) -> the oslo option meaning the same
_ALIASES = {
    "heartbeat": "heartbeat_timeout_threshold",
    "ca_certs": "ssl_ca_file",
    "cafile": "ssl_ca_file",
    "certfile": "ssl_cert_file",
    "keyfile": "ssl_key_file",
}
SSL_VERSIONS = ("tlsv1", "tlsv1_1", "tlsv1_2", "tlsv1_3", "sslv23")
_BOOL_TRUE = frozenset({"true", "yes", "on", "1"})
_BOOL_FALSE = frozenset({"false", "no", "off", "0"})


class RabbitOptions(BaseModel):
    """oslo.messaging's ``[oslo_messaging_rabbit]`` options that aovs implements."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    ssl: bool = False
    ssl_version: str = ""
    ssl_key_file: str = ""
    ssl_cert_file: str = ""
    ssl_ca_file: str = ""
    ssl_enforce_hostname_verification: bool = True
    heartbeat_timeout_threshold: int = Field(default=60, ge=0)
    heartbeat_rate: int = Field(default=3, ge=1)
    kombu_reconnect_delay: float = Field(default=1.0, ge=0, le=4.5)
    kombu_reconnect_splay: float = Field(default=0.0, ge=0)
    kombu_failover_strategy: Literal["round-robin", "shuffle"] = "round-robin"
    rabbit_retry_interval: int = Field(default=1, ge=1)
    rabbit_retry_backoff: int = Field(default=2, ge=0)
    rabbit_interval_max: int = Field(default=30, ge=1)
    rabbit_ha_queues: bool = False
    rabbit_quorum_queue: bool = False
    rabbit_transient_quorum_queue: bool = False
    rabbit_quorum_delivery_limit: int = Field(default=0, ge=0)
    rabbit_quorum_max_memory_length: int = Field(default=0, ge=0)
    rabbit_quorum_max_memory_bytes: int = Field(default=0, ge=0)
    rabbit_transient_queues_ttl: int = Field(default=1800, ge=0)
    amqp_durable_queues: bool = False
    amqp_auto_delete: bool = False

    @field_validator("ssl_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        version = value.strip().lower()
        if version in ("sslv2", "sslv3"):
            raise ValueError(f"{value!r} is not supported (insecure; use tlsv1_2 or sslv23)")
        if version and version not in SSL_VERSIONS:
            raise ValueError(f"{value!r} is not one of {', '.join(SSL_VERSIONS)}")
        return version

    @field_validator("ssl_key_file", "ssl_cert_file", "ssl_ca_file")
    @classmethod
    def _check_file(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("ssl"):
            return value  # the files matter only with TLS on
        if value and not os.access(value, os.R_OK):
            raise ValueError(
                f"{value}: {'not readable' if os.path.exists(value) else 'no such file'}"
            )
        if info.field_name == "ssl_cert_file" and not value and info.data.get("ssl_key_file"):
            raise ValueError("must be set when ssl_key_file is (the key's certificate)")
        return value

    @field_validator("rabbit_quorum_queue", "rabbit_transient_quorum_queue")
    @classmethod
    def _check_quorum(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("rabbit_ha_queues"):
            raise ValueError(
                "cannot be combined with rabbit_ha_queues (a queue is quorum or mirrored, not both)"
            )
        return value

    # -- derived ---------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """oslo.messaging: quorum queues are durable, whatever amqp_durable_queues says."""
        return self.amqp_durable_queues or self.rabbit_quorum_queue

    @property
    def heartbeat_check_interval(self) -> float | None:
        """Seconds between two liveness probes; None when heartbeats are off."""
        if self.heartbeat_timeout_threshold == 0:
            return None
        return self.heartbeat_timeout_threshold / self.heartbeat_rate

    def with_query(self, query: Mapping[str, str]) -> RabbitOptions:
        """These options with ``transport_url``'s query parameters applied over them.

        Raises :class:`TransportUrlError` (one line, no value of a ``*file`` option's content)
        for a name that is not an oslo.messaging rabbit option or a value of the wrong type.
        """
        updates: dict[str, Any] = {}
        for name, text in query.items():
            if name not in OSLO_RABBIT_OPTIONS:
                close = _ALIASES.get(name) or next(
                    iter(difflib.get_close_matches(name, sorted(OSLO_RABBIT_OPTIONS), 1, 0.6)), None
                )
                hint = f" (did you mean {close}?)" if close else ""
                raise TransportUrlError(
                    f"transport_url: query parameter {name!r} is not an "
                    f"[oslo_messaging_rabbit] option{hint}"
                )
            field = RabbitOptions.model_fields.get(name)
            if field is None:
                continue  # an oslo option aovs does not implement: see ignored_query()
            updates[name] = _convert(name, text, field.annotation)
        if not updates:
            return self
        try:
            return RabbitOptions.model_validate({**self.model_dump(), **updates})
        except ValidationError as exc:
            raise TransportUrlError(
                "transport_url (its query over [oslo_messaging_rabbit]): "
                + "; ".join(_problems(exc))
            ) from None


def ignored_query(query: Mapping[str, str]) -> tuple[str, ...]:
    """The query parameters that are oslo.messaging rabbit options aovs does not implement."""
    return tuple(
        sorted(n for n in query if n in OSLO_RABBIT_OPTIONS and n not in RabbitOptions.model_fields)
    )


def _convert(name: str, text: str, annotation: Any) -> Any:
    """A query value as oslo.config's types read it (booleans: true/yes/on/1, any case)."""
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        raise TransportUrlError(
            f"transport_url: query parameter {name}={text!r} is not a boolean "
            "(true/false, yes/no, on/off, 1/0)"
        )
    return text  # pydantic checks numbers, ranges and choices


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if name and error["type"] not in ("value_error", "assertion_error"):
            message += f" (got {error.get('input')!r})"
        out.append(f"[oslo_messaging_rabbit] {name}: {message}" if name else message)
    return out


# -- the declarations, as oslo.messaging's rabbit driver makes them ----------------------------


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    durable: bool
    auto_delete: bool


@dataclass(frozen=True, slots=True)
class QueueSpec:
    durable: bool
    auto_delete: bool
    arguments: Mapping[str, Any]


def _queue_arguments(options: RabbitOptions, ttl: int, quorum: bool) -> dict[str, Any]:
    """oslo.messaging's ``_get_queue_arguments`` (without streams)."""
    args: dict[str, Any] = {}
    if options.rabbit_ha_queues:
        args["x-ha-policy"] = "all"
    if quorum:
        args["x-queue-type"] = "quorum"
        if options.rabbit_quorum_delivery_limit:
            args["x-delivery-limit"] = options.rabbit_quorum_delivery_limit
        if options.rabbit_quorum_max_memory_length:
            args["x-max-in-memory-length"] = options.rabbit_quorum_max_memory_length
        if options.rabbit_quorum_max_memory_bytes:
            args["x-max-in-memory-bytes"] = options.rabbit_quorum_max_memory_bytes
    if ttl > 0:
        args["x-expires"] = ttl * 1000
    return args


def control_exchange(options: RabbitOptions) -> ExchangeSpec:
    """The topic exchange (``neutron``): oslo's topic_send / declare_topic_consumer."""
    return ExchangeSpec(durable=options.durable, auto_delete=options.amqp_auto_delete)


def topic_queue(options: RabbitOptions) -> QueueSpec:
    """``<topic>`` and ``<topic>.<server>``: shared with every consumer of the topic."""
    return QueueSpec(
        durable=options.durable,
        auto_delete=options.amqp_auto_delete,
        arguments=_queue_arguments(options, 0, options.rabbit_quorum_queue),
    )


def fanout_exchange(options: RabbitOptions) -> ExchangeSpec:
    """``<topic>_fanout``: oslo's fanout_send / declare_fanout_consumer."""
    return ExchangeSpec(durable=options.rabbit_transient_quorum_queue, auto_delete=True)


def transient_queue(options: RabbitOptions) -> QueueSpec:
    """A fanout queue (``<topic>_fanout_<id>``) or the reply queue (``reply_<id>``)."""
    return QueueSpec(
        durable=options.rabbit_transient_quorum_queue,
        auto_delete=False,
        arguments=_queue_arguments(
            options, options.rabbit_transient_queues_ttl, options.rabbit_transient_quorum_queue
        ),
    )
