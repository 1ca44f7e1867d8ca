"""The errors the rpc package raises: what went wrong, in terms a caller can act on."""

from __future__ import annotations


class RpcError(Exception):
    """Base of every error raised by :mod:`aovs.rpc`."""


class TransportUrlError(RpcError, ValueError):
    """``transport_url`` cannot be parsed."""


class WireError(RpcError):
    """A message is not in oslo.messaging's format (logged and dropped by consumers)."""


class RpcTimeout(RpcError, TimeoutError):
    """No reply within the call's timeout (oslo: MessagingTimeout)."""

    def __init__(self, method: str, timeout: float, topic: str) -> None:
        super().__init__(f"no reply to {method} on {topic} within {timeout:g} s")
        self.method = method
        self.timeout = timeout
        self.topic = topic


class RpcConnectionLost(RpcError, ConnectionError):
    """The broker connection dropped (or was not up) while a request was in flight.

    The request may or may not have reached the server; the caller's retry policy decides.
    """


class RemoteError(RpcError):
    """The server raised: carries the remote exception's class, module and message."""

    def __init__(
        self, exc_type: str, module: str, message: str, traceback: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"remote {module}.{exc_type}: {message}")
        self.exc_type = exc_type
        self.module = module
        self.message = message
        self.traceback = traceback


class NoSuchMethod(RemoteError):
    """oslo_messaging.rpc.dispatcher.NoSuchMethod: no endpoint has the method."""


class UnsupportedVersion(RemoteError):
    """oslo_messaging.rpc.dispatcher.UnsupportedVersion: no endpoint speaks the version."""
