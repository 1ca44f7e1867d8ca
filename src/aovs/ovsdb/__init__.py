"""A native asyncio OVSDB (RFC 7047) client: monitors with typed events, and transactions.

No ovs-vsctl, no ovsdbapp IDL thread: asyncio tasks speak JSON-RPC on ovsdb-server's socket.

Connect (``unix:PATH``, ``tcp:IP:PORT`` or ``ssl:IP:PORT``, neutron's ``ovsdb_connection``);
the client reconnects by itself, with capped exponential backoff and jitter, answers the server's
``echo`` and probes an idle line with its own::

    client = OVSDBClient("unix:/var/run/openvswitch/db.sock")
    await client.start()

``ssl:`` is mutual TLS with neutron's three files (:mod:`.tls`: the server verified against the
CA, as Open vSwitch does; a bad file is one :class:`TLSConfigError` line naming the option)::

    OVSDBClient("ssl:192.0.2.1:6640", ssl_key_file=..., ssl_cert_file=..., ssl_ca_cert_file=...)

Monitor (``monitor_cond``/``update2``). The initial rows arrive as insert events, later changes as
insert/modify/delete; after a reconnect the new state is diffed against the old and only the
difference is emitted, as ordinary events (no separate resync path)::

    monitor = await client.monitor(AGENT_TABLES, where=AGENT_WHERE)
    for row in monitor.rows("Interface").values(): ...        # the cache, decoded
    async for event in monitor:                                 # RowEvent
        if event.table == "Interface":
            iface = Interface.from_row(event.row)              # name, ofport, iface_id, ...
            if event.kind is EventKind.MODIFY and "ofport" in event.changed: ...

Values are decoded once (:mod:`.datum`): optional columns are ``None`` or the value (``ofport``
is ``None`` until ovs-vswitchd assigns one, ``-1`` if it failed), sets are ``frozenset``, maps
``dict``, UUIDs :class:`Uuid`. Conditions (:mod:`.conditions`) filter on the server where RFC 7047
can express it and always on the client too: ``HasKey("external_ids", "iface-id")`` asks the
server for rows with non-empty ``external_ids`` and keeps those with the key.

Transactions: commands (:mod:`.commands`) compose into ONE transaction, with ovs-vsctl's
``--may-exist``/``--if-exists`` semantics, optimistic concurrency (guards + retry) and typed
errors carrying the server's message (:mod:`.errors`)::

    await client.transact(
        EnsureBridge("br-int", datapath_type="system", other_config={"datapath-id": dpid}),
        patch_port("br-int", "patch-tun", peer="patch-int"),
        SetPort("tap1", tag=5),
        flow_restore_wait(False),
        wait_applied=True,   # until ovs-vswitchd's cur_cfg reaches our next_cfg
    )

A garbled stream, an unknown method or a reply to an id we never used is logged once and the
connection is reset; monitors come back on the next session. Every request has a timeout.
"""

from aovs.backoff import Backoff
from aovs.ovsdb.client import OVSDBClient
from aovs.ovsdb.commands import (
    KEEP,
    AddPort,
    DeleteBridge,
    DeletePort,
    DeletePorts,
    EnsureBridge,
    SetPort,
    UpdateMapKeys,
    flow_restore_wait,
    patch_port,
    tunnel_port,
)
from aovs.ovsdb.conditions import AllOf, Condition, Equals, HasKey, Includes
from aovs.ovsdb.datum import NamedUuid, Uuid
from aovs.ovsdb.errors import (
    ConnectionLost,
    ConstraintViolation,
    DuplicateRow,
    JsonRpcError,
    OVSDBError,
    ProtocolError,
    ReferentialIntegrityViolation,
    RowNotFound,
    SchemaError,
    TransactionConflict,
    TransactionError,
)
from aovs.ovsdb.monitor import Monitor
from aovs.ovsdb.rows import EventKind, Row, RowEvent
from aovs.ovsdb.tls import TLSConfigError
from aovs.ovsdb.transaction import Command, TransactionResult
from aovs.ovsdb.views import AGENT_TABLES, AGENT_WHERE, Bridge, Interface, Port

__all__ = [
    "AGENT_TABLES",
    "AGENT_WHERE",
    "KEEP",
    "AddPort",
    "AllOf",
    "Backoff",
    "Bridge",
    "Command",
    "Condition",
    "ConnectionLost",
    "ConstraintViolation",
    "DeleteBridge",
    "DeletePort",
    "DeletePorts",
    "DuplicateRow",
    "EnsureBridge",
    "Equals",
    "EventKind",
    "HasKey",
    "Includes",
    "Interface",
    "JsonRpcError",
    "Monitor",
    "NamedUuid",
    "OVSDBClient",
    "OVSDBError",
    "Port",
    "ProtocolError",
    "ReferentialIntegrityViolation",
    "Row",
    "RowEvent",
    "RowNotFound",
    "SchemaError",
    "SetPort",
    "TLSConfigError",
    "TransactionConflict",
    "TransactionError",
    "TransactionResult",
    "UpdateMapKeys",
    "Uuid",
    "flow_restore_wait",
    "patch_port",
    "tunnel_port",
]
