"""TLS to RabbitMQ: ``[oslo_messaging_rabbit] ssl*`` as an ``ssl.SSLContext`` for aio-pika.

The secure choice is the only default: the broker's certificate chain is verified (against
``ssl_ca_file``, else the system's CAs) and its name is checked against the host written in
``transport_url`` (each broker of a cluster against its own name) unless
``ssl_enforce_hostname_verification = false``. Errors are one line naming the option and the file,
never a file's content.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from aovs.rpc.errors import RpcError
from aovs.rpc.options import RabbitOptions

_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
}


class TlsConfigError(RpcError):
    """The ``ssl_*`` files cannot be used (missing, unreadable, not PEM, key not matching)."""


def client_context(options: RabbitOptions) -> ssl.SSLContext | None:
    """The client context for ``options``, or None when ``ssl`` is off."""
    if not options.ssl:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    pinned = _VERSIONS.get(options.ssl_version)
    if pinned is not None:  # oslo's ssl_version = PROTOCOL_TLSv1_2 & co: exactly that version
        context.minimum_version = pinned
        context.maximum_version = pinned
    if options.ssl_ca_file:
        _load(options, "ssl_ca_file", lambda: context.load_verify_locations(options.ssl_ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if options.ssl_cert_file:
        _load(
            options,
            "ssl_cert_file",
            lambda: context.load_cert_chain(options.ssl_cert_file, options.ssl_key_file or None),
        )
    context.check_hostname = options.ssl_enforce_hostname_verification
    return context


def _load(options: RabbitOptions, option: str, load: Callable[[], object]) -> None:
    try:
        load()
    except FileNotFoundError:
        raise TlsConfigError(
            f"[oslo_messaging_rabbit] {option}: {getattr(options, option)}: no such file"
        ) from None
    except PermissionError:
        raise TlsConfigError(
            f"[oslo_messaging_rabbit] {option}: {getattr(options, option)}: permission denied"
        ) from None
    except (ssl.SSLError, ValueError, OSError) as exc:
        files = getattr(options, option)
        if option == "ssl_cert_file" and options.ssl_key_file:
            files += f" (key {options.ssl_key_file})"
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise TlsConfigError(
            f"[oslo_messaging_rabbit] {option}: {files}: cannot be loaded ({reason})"
        ) from None


def describe_tls_error(exc: BaseException) -> str | None:
    """A one-line explanation of a failed TLS handshake, or None if ``exc`` is not one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # causes may form a cycle
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            detail = current.verify_message or current.reason or "certificate verify failed"
            return (
                f"TLS: the broker's certificate was rejected: {detail} "
                "(check [oslo_messaging_rabbit] ssl_ca_file and the host name in transport_url)"
            )
        if isinstance(current, ssl.SSLError):
            reason = current.reason or current.strerror or type(current).__name__
            return f"TLS: {_REASONS.get(reason, reason)}"
        current = current.__cause__ or current.__context__
    return None


def closed_during_handshake(exc: BaseException) -> bool:
    """True when the broker closed the connection before AMQP started (a reset, an EOF): with
    TLS, what a refused client certificate looks like when its alert loses the race."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionResetError | BrokenPipeError | EOFError):
            return True
        if type(current).__name__ == "IncompatibleProtocolError":  # aiormq: EOF at the header
            return True
        current = current.__cause__ or current.__context__
    return False


# OpenSSL's reasons for alerts the broker sends, said for an operator
_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate "
    "([oslo_messaging_rabbit] ssl_cert_file, ssl_key_file)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure (no protocol version or cipher in common; "
    "check [oslo_messaging_rabbit] ssl_version)",
    "TLSV1_ALERT_UNKNOWN_CA": "the broker does not trust the client certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker rejected the client certificate",
}
