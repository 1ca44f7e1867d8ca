"""Typed failures of the OpenFlow adapter: callers catch what they can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aovs.openflow.flows import Flow


class OpenFlowError(Exception):
    """Base class of every failure the openflow package raises."""


class ChannelClosedError(OpenFlowError):
    """The connection went away (or was reset) before the request was answered."""


class RequestTimeoutError(OpenFlowError):
    """The switch did not answer in time; the connection is reset (it may be wedged)."""


class ProtocolError(OpenFlowError):
    """The switch sent something that is not valid OpenFlow 1.3 (bad framing, bad body)."""


class VersionMismatchError(ProtocolError):
    """The peer does not speak OpenFlow 1.3."""


class SwitchError(OpenFlowError):
    """An OFPT_ERROR reply to one of our messages.

    ``failed`` names the message the switch rejected: what we sent (when we know it) or the
    message decoded from the error's data.
    """

    def __init__(
        self,
        err_type: int,
        code: int,
        xid: int,
        failed: str,
        experimenter: int | None = None,
        data: bytes = b"",
    ) -> None:
        self.err_type = err_type
        self.code = code
        self.xid = xid
        self.failed = failed
        self.experimenter = experimenter
        self.data = data  # (the start of) the rejected message, as the switch echoed it
        super().__init__(f"{error_name(err_type, code, experimenter)} (xid {xid}) for {failed}")


class BundleError(OpenFlowError):
    """A bundle was discarded: nothing in it was applied.

    ``flow`` is the offending flow when the switch pointed at one (``None`` when the failure
    is the bundle's own, e.g. a commit timeout), ``cause`` the underlying failure.
    """

    def __init__(self, message: str, flow: Flow | None = None, cause: Exception | None = None):
        self.flow = flow
        self.cause = cause
        super().__init__(message)


def error_name(err_type: int, code: int, experimenter: int | None = None) -> str:
    """``OFPET_BAD_ACTION/OFPBAC_BAD_OUT_PORT``-style name for an error type and code."""
    from os_ken.ofproto import ofproto_v1_3 as ofp

    if experimenter is not None:
        return f"experimenter {experimenter:#x} error {code}"

    type_name = _lookup(ofp, "OFPET_", err_type) or f"type {err_type}"
    code_prefix = _CODE_PREFIXES.get(err_type)
    code_name = (_lookup(ofp, code_prefix, code) if code_prefix else None) or f"code {code}"
    return f"{type_name}/{code_name}"


_CODE_PREFIXES = {
    0: "OFPHFC_",
    1: "OFPBRC_",
    2: "OFPBAC_",
    3: "OFPBIC_",
    4: "OFPBMC_",
    5: "OFPFMFC_",
    6: "OFPGMFC_",
    7: "OFPPMFC_",
    8: "OFPTMFC_",
    9: "OFPQOFC_",
    10: "OFPSCFC_",
    11: "OFPRRFC_",
    12: "OFPMMFC_",
    13: "OFPTFFC_",
}


def _lookup(module: object, prefix: str, value: int) -> str | None:
    for name in dir(module):
        if name.startswith(prefix) and getattr(module, name) == value:
            return name
    return None
