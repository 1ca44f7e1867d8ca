"""``transport_url`` parsing: oslo's ``rabbit://user:pass@host:port[,user:pass@host:port]/vhost``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aovs.rpc.errors import TransportUrlError

DEFAULT_PORT = 5672


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """One broker of a (possibly clustered) transport_url; all share the vhost."""

    host: str
    port: int
    username: str
    password: str
    virtual_host: str

    def __str__(self) -> str:
        # never the password: this ends up in logs
        return f"{self.username}@{self.host}:{self.port}/{self.virtual_host}"


def parse_transport_url(url: str) -> tuple[BrokerAddress, ...]:
    """Every broker of ``url``, in the order they are to be tried.

    As in oslo, a host without credentials inherits none (guest/guest is RabbitMQ's default);
    an empty vhost path means ``/``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("rabbit", "amqp"):
        raise TransportUrlError(f"transport_url {_redact(url)!r}: must start with rabbit://")
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    vhost = unquote(path) if path else "/"
    if not netloc:
        raise TransportUrlError(f"transport_url {_redact(url)!r}: no host")
    brokers = []
    for part in netloc.split(","):
        try:
            split = urlsplit(f"//{part}")
            port = split.port or DEFAULT_PORT
        except ValueError as exc:
            raise TransportUrlError(f"transport_url {_redact(url)!r}: {exc}") from None
        if not split.hostname:
            raise TransportUrlError(f"transport_url {_redact(url)!r}: empty host in {part!r}")
        brokers.append(
            BrokerAddress(
                host=split.hostname,
                port=port,
                username=unquote(split.username or "guest"),
                password=unquote(split.password or "guest"),
                virtual_host=vhost,
            )
        )
    return tuple(brokers)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    hosts = ",".join(
        (h.rpartition("@")[0].partition(":")[0] + ":***@" + h.rpartition("@")[2]) if "@" in h else h
        for h in netloc.split(",")
    )
    return f"{scheme}{sep}{hosts}{slash}{path}"
