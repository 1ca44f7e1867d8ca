"""``transport_url`` parsing, as oslo.messaging's ``TransportURL.parse`` reads it.

``rabbit://user:pass@host:port[,user:pass@host:port]/vhost?query``: several brokers (a cluster)
share the virtual host; the query's parameters are ``[oslo_messaging_rabbit]`` options that
override the section's (``?ssl=1&heartbeat_timeout_threshold=30``; a repeated parameter's values
are joined with commas, as oslo does). Percent-escapes in the user, password and vhost are
decoded. Nothing here ever puts a password into a message: :class:`BrokerAddress` prints without
it and :func:`redact` hides every password of a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qs, unquote, urlsplit

from aovs.rpc.errors import TransportUrlError

DEFAULT_PORT = 5672


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """One broker of a (possibly clustered) transport_url; all share the vhost."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    virtual_host: str

    def __str__(self) -> str:
        # never the password: this ends up in logs
        vhost = "" if self.virtual_host == "/" else self.virtual_host
        return f"{self.username}@{self.host}:{self.port}/{vhost}"


@dataclass(frozen=True, slots=True)
class TransportUrl:
    """A parsed ``transport_url``: its brokers in the order given, and its query parameters."""

    brokers: tuple[BrokerAddress, ...]
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def virtual_host(self) -> str:
        return self.brokers[0].virtual_host

    def __str__(self) -> str:
        return ",".join(map(str, self.brokers))


def parse_transport(url: str) -> TransportUrl:
    """Every broker of ``url`` (in the order written) and its query parameters.

    As in oslo, a host without credentials uses RabbitMQ's default guest/guest; an empty vhost
    path means ``/``. Raises :class:`TransportUrlError`, whose message never holds a password.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ("rabbit", "amqp"):
        raise TransportUrlError(f"transport_url {redact(url)!r}: must start with rabbit://")
    try:
        split = urlsplit(url)
    except ValueError as exc:
        raise TransportUrlError(f"transport_url {redact(url)!r}: {exc}") from None
    path = split.path[1:] if split.path.startswith("/") else split.path
    vhost = unquote(path) if path else "/"
    if not split.netloc:
        raise TransportUrlError(f"transport_url {redact(url)!r}: no host")
    brokers = []
    for part in split.netloc.split(","):
        if not part:
            continue  # oslo skips empty entries ("h1,,h2")
        creds, at, hostport = part.rpartition("@")
        username, colon, password = creds.partition(":") if at else ("", "", "")
        try:
            host_split = urlsplit(f"//{hostport}")
            port = host_split.port or DEFAULT_PORT
        except ValueError as exc:
            raise TransportUrlError(f"transport_url {redact(url)!r}: {exc}") from None
        if not host_split.hostname:
            raise TransportUrlError(
                f"transport_url {redact(url)!r}: empty host in {redact_netloc(part)!r}"
            )
        brokers.append(
            BrokerAddress(
                host=host_split.hostname,
                port=port,
                username=unquote(username) if at and username else "guest",
                password=unquote(password) if at and colon else "guest",
                virtual_host=vhost,
            )
        )
    if not brokers:
        raise TransportUrlError(f"transport_url {redact(url)!r}: no host")
    query = {name: ",".join(values) for name, values in parse_qs(split.query).items()}
    return TransportUrl(tuple(brokers), MappingProxyType(query))


def parse_transport_url(url: str) -> tuple[BrokerAddress, ...]:
    """Every broker of ``url``, in the order written (see :func:`parse_transport`)."""
    return parse_transport(url).brokers


def redact_netloc(netloc: str) -> str:
    """``user:***@host:port`` for each comma-separated host: no password left."""
    hosts = []
    for part in netloc.split(","):
        creds, at, hostport = part.rpartition("@")
        if at and ":" in creds:
            part = f"{creds.split(':', 1)[0]}:***@{hostport}"
        hosts.append(part)
    return ",".join(hosts)


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***`` (the path and query are kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    # the netloc ends at the first '/', '?' or '#' after the last '@' (a password may hold any)
    at = rest.rfind("@")
    ends = [i for i in (rest.find(c, at + 1) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(rest)
    return f"{scheme}://{redact_netloc(rest[:end])}{rest[end:]}"
