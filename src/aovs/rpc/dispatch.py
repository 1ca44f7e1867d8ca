"""Serving side dispatch: oslo.messaging's RPCDispatcher rules over plain Python endpoints.

An endpoint is any object. Its ``rpc_version`` (default ``"1.0"``) and ``rpc_namespace``
(default None) play the part of oslo's ``target``; its public methods are RPC methods, called as
``method(context, **args)``. Like oslo: the first endpoint whose namespace matches, whose version
is compatible and that has the method serves it; else ``NoSuchMethod`` when some endpoint speaks
the version, ``UnsupportedVersion`` when none does. Both go back to the caller as oslo failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aovs.rpc.wire import DISPATCHER_MODULE, Request, version_is_compatible

_RESERVED = frozenset({"rpc_version", "rpc_namespace"})


class DispatchError(Exception):
    """A dispatcher failure that serialises exactly as oslo's own exception would."""

    oslo_module = DISPATCHER_MODULE
    oslo_class = "RPCDispatcherError"


class NoSuchMethodFailure(DispatchError):
    oslo_class = "NoSuchMethod"

    def __init__(self, method: str) -> None:
        super().__init__(f"Endpoint does not support RPC method {method}")
        self.method = method


class UnsupportedVersionFailure(DispatchError):
    oslo_class = "UnsupportedVersion"

    def __init__(self, version: str | None, method: str) -> None:
        super().__init__(
            f"Endpoint does not support RPC version {version}. Attempted method: {method}"
        )
        self.version = version
        self.method = method


class Dispatcher:
    """Finds the endpoint method for a request; never calls private attributes."""

    def __init__(self, endpoints: Sequence[object]) -> None:
        self.endpoints = tuple(endpoints)

    def resolve(self, request: Request) -> Any:
        """The bound method to call, or raise the failure oslo would send back."""
        method = request.method
        found_compatible = False
        for endpoint in self.endpoints:
            if getattr(endpoint, "rpc_namespace", None) != request.namespace:
                continue
            compatible = version_is_compatible(
                getattr(endpoint, "rpc_version", "1.0"), request.version
            )
            if compatible and _exposes(endpoint, method):
                return getattr(endpoint, method)
            found_compatible = found_compatible or compatible
        if found_compatible:
            raise NoSuchMethodFailure(method)
        raise UnsupportedVersionFailure(request.version, method)


def _exposes(endpoint: object, method: str) -> bool:
    if method.startswith("_") or method in _RESERVED:
        return False
    return callable(getattr(endpoint, method, None))
