"""os-ken's OpenFlow 1.3 message classes without os-ken's controller.

os-ken builds and parses messages through a ``datapath`` object that normally is a live
connection run by its app manager (eventlet). aovs only needs the two attributes the message
classes read, so a frozen stand-in is enough; the channel owns the socket.
"""

from __future__ import annotations

import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from aovs.openflow.errors import ProtocolError

OFP_VERSION = ofp.OFP_VERSION  # 4
HEADER = struct.Struct("!BBHI")  # version, type, length, xid
HEADER_SIZE = HEADER.size
MAX_MESSAGE = 0xFFFF


class MessageDatapath:
    """What os-ken's message classes need from a datapath: the protocol modules, nothing live."""

    ofproto = ofp
    ofproto_parser = ofpp
    id: int | None = None

    def __repr__(self) -> str:
        return "MessageDatapath(OpenFlow 1.3)"


DATAPATH = MessageDatapath()


def serialize(msg: Any, xid: int) -> bytes:
    """Serialize an os-ken message with ``xid`` (os-ken refuses to set an xid twice)."""
    msg.xid = None
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def parse(data: bytes) -> Any:
    """One complete message (header included) -> os-ken object; ProtocolError if malformed."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"message shorter than a header ({len(data)} bytes)")
    version, msg_type, length, xid = HEADER.unpack_from(data)
    if version != OFP_VERSION:
        raise ProtocolError(f"version {version} message on an OpenFlow 1.3 channel")
    if length != len(data):
        raise ProtocolError(f"header says {length} bytes, message has {len(data)}")
    try:
        msg = ofpp.msg_parser(DATAPATH, version, msg_type, length, xid, data)
    except Exception as exc:  # os-ken raises anything from struct.error to KeyError
        raise ProtocolError(
            f"cannot parse message type {msg_type} (xid {xid}, {length} bytes): {exc!r}"
        ) from exc
    if msg is None:
        raise ProtocolError(f"cannot parse message type {msg_type} (xid {xid})")
    return msg


def describe(data: bytes) -> str:
    """A short name for a (possibly truncated) message we sent, e.g. from an error's data."""
    if len(data) < HEADER_SIZE:
        return f"<{len(data)} bytes>"
    _version, msg_type, _length, xid = HEADER.unpack_from(data)
    name = _TYPE_NAMES.get(msg_type, f"type {msg_type}")
    if msg_type == ofp.OFPT_FLOW_MOD and len(data) >= 28:
        table, command = data[24], data[25]
        (priority,) = struct.unpack_from("!H", data, 30)
        cmd = _FLOW_MOD_COMMANDS.get(command, str(command))
        return f"{name}({cmd}, table={table}, priority={priority}, xid={xid})"
    if msg_type == ofp.OFPT_EXPERIMENTER and len(data) >= 16:
        experimenter, exp_type = struct.unpack_from("!II", data, 8)
        if exp_type == ofp.ONF_ET_BUNDLE_ADD_MESSAGE and len(data) >= 24:
            return f"BUNDLE_ADD[{describe(data[24:])}]"
        if exp_type == ofp.ONF_ET_BUNDLE_CONTROL:
            return f"BUNDLE_CONTROL(xid={xid})"
        return f"EXPERIMENTER({experimenter:#x}/{exp_type}, xid={xid})"
    return f"{name}(xid={xid})"


_TYPE_NAMES = {
    getattr(ofp, n): n[5:] for n in dir(ofp) if n.startswith("OFPT_") and n != "OFPT_HELLO_ELEM"
}
_FLOW_MOD_COMMANDS = {
    ofp.OFPFC_ADD: "ADD",
    ofp.OFPFC_MODIFY: "MODIFY",
    ofp.OFPFC_MODIFY_STRICT: "MODIFY_STRICT",
    ofp.OFPFC_DELETE: "DELETE",
    ofp.OFPFC_DELETE_STRICT: "DELETE_STRICT",
}
