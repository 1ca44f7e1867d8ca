"""The Open_vSwitch commands the agent needs, composable into one transaction.

Each command is a frozen value; ``client.transact(cmd1, cmd2, ...)`` runs them all atomically
(see :mod:`aovs.ovsdb.transaction`). Ensure-style commands have ovs-vsctl's ``--may-exist``
semantics, delete-style ones ``--if-exists`` (both switchable), so the agent can state what it
wants on every start without checking first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aovs.ovsdb.errors import DuplicateRow, RowNotFound
from aovs.ovsdb.transaction import Clause, Select, SelectedRows, TransactionBuilder


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""Leave this column as it is (as opposed to None, which clears an optional column)."""


def _by_name(name: str) -> tuple[Clause, ...]:
    return (("name", "==", name),)


_BRIDGE_COLUMNS = (
    "_uuid",
    "datapath_type",
    "fail_mode",
    "protocols",
    "other_config",
    "external_ids",
)


@dataclass(frozen=True)
class EnsureBridge:
    """``--may-exist add-br`` plus the bridge's settings; on an existing bridge, only what differs
    is written (``other_config``/``external_ids`` keys are set, other keys kept)."""

    name: str
    datapath_type: str = "system"
    fail_mode: str | None = "secure"
    protocols: tuple[str, ...] = ("OpenFlow13",)
    other_config: Mapping[str, str] = field(default_factory=dict)
    external_ids: Mapping[str, str] = field(default_factory=dict)

    def _select(self) -> Select:
        return Select("Bridge", _by_name(self.name), _BRIDGE_COLUMNS)

    def reads(self) -> Sequence[Select]:
        return [self._select()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        rows = snapshot.rows(self._select())
        wanted: dict[str, Any] = {
            "datapath_type": self.datapath_type,
            "fail_mode": self.fail_mode,
            "protocols": frozenset(self.protocols),
        }
        if not rows:
            iface = txn.insert("Interface", {"name": self.name, "type": "internal"})
            port = txn.insert("Port", {"name": self.name, "interfaces": {iface}})
            bridge = txn.insert(
                "Bridge",
                {
                    "name": self.name,
                    "ports": {port},
                    "other_config": dict(self.other_config),
                    "external_ids": dict(self.external_ids),
                    **wanted,
                },
            )
            txn.mutate("Open_vSwitch", (), [("bridges", "insert", {bridge})])
            return
        row = rows[0]
        by_name = _by_name(self.name)
        txn.update("Bridge", by_name, {c: v for c, v in wanted.items() if row[c] != v})
        for column in ("other_config", "external_ids"):
            pairs: Mapping[str, str] = getattr(self, column)
            txn.set_keys("Bridge", by_name, column, _differing(row[column], pairs))


@dataclass(frozen=True)
class DeleteBridge:
    name: str
    if_exists: bool = True

    def _select(self) -> Select:
        return Select("Bridge", _by_name(self.name))

    def reads(self) -> Sequence[Select]:
        return [self._select()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        uuids = snapshot.uuids(self._select())
        if not uuids and not self.if_exists:
            raise RowNotFound(f"bridge {self.name}")
        if uuids:
            txn.mutate("Open_vSwitch", (), [("bridges", "delete", set(uuids))])


@dataclass(frozen=True)
class AddPort:
    """A port with one interface of the same name on ``bridge``.

    With ``may_exist`` (the default) an existing port on the same bridge is updated to the given
    settings instead (``None``/``KEEP`` leave a column alone); a port of that name on another
    bridge raises :class:`DuplicateRow`. Without it, the server's duplicate-name error is raised.
    The bridge may be created earlier in the same transaction.
    """

    bridge: str
    name: str
    type: str = ""
    options: Mapping[str, str] | None = None
    external_ids: Mapping[str, str] | None = None
    tag: int | _Keep | None = KEEP
    other_config: Mapping[str, str] | None = None
    may_exist: bool = True

    def _port(self) -> Select:
        return Select("Port", _by_name(self.name), ("_uuid", "tag", "other_config"))

    def _interface(self) -> Select:
        return Select("Interface", _by_name(self.name), ("type", "options", "external_ids"))

    def _bridge(self) -> Select:
        return Select("Bridge", _by_name(self.bridge), ("_uuid", "ports"))

    def reads(self) -> Sequence[Select]:
        return [self._port(), self._interface(), self._bridge()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        ports = snapshot.rows(self._port())
        bridges = snapshot.rows(self._bridge())
        if not bridges:  # perhaps created earlier in this transaction: checked when it runs
            txn.require("Bridge", _by_name(self.bridge), f"bridge {self.bridge}")
        if ports and self.may_exist:
            if not bridges or ports[0]["_uuid"] not in bridges[0]["ports"]:
                raise DuplicateRow(
                    "duplicate port",
                    f"port {self.name} exists on a bridge other than {self.bridge}",
                )
            wanted = {"type": self.type, "options": self.options, "external_ids": self.external_ids}
            ifaces = snapshot.rows(self._interface())
            have = ifaces[0] if ifaces else {}
            txn.update(
                "Interface",
                _by_name(self.name),
                {c: v for c, v in wanted.items() if v is not None and have.get(c) != v},
            )
            port_changes = {c: v for c, v in self._port_columns().items() if ports[0][c] != v}
            txn.update("Port", _by_name(self.name), port_changes)
            return
        iface = txn.insert(
            "Interface",
            {
                "name": self.name,
                "type": self.type,
                "options": dict(self.options or {}),
                "external_ids": dict(self.external_ids or {}),
            },
        )
        port = txn.insert(
            "Port", {"name": self.name, "interfaces": {iface}, **self._port_columns()}
        )
        txn.mutate("Bridge", _by_name(self.bridge), [("ports", "insert", {port})])

    def _port_columns(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        if not isinstance(self.tag, _Keep):
            columns["tag"] = self.tag
        if self.other_config is not None:
            columns["other_config"] = dict(self.other_config)
        return columns


def patch_port(bridge: str, name: str, peer: str, **kwargs: Any) -> AddPort:
    return AddPort(bridge, name, type="patch", options={"peer": peer}, **kwargs)


def tunnel_port(
    bridge: str,
    name: str,
    kind: str,
    remote_ip: str,
    local_ip: str,
    options: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AddPort:
    """A vxlan/gre/geneve port keyed by flow, as neutron creates them."""
    merged = {"remote_ip": remote_ip, "local_ip": local_ip, "in_key": "flow", "out_key": "flow"}
    merged.update(options or {})
    return AddPort(bridge, name, type=kind, options=merged, **kwargs)


@dataclass(frozen=True)
class DeletePort:
    """``del-port [bridge] name``; with ``bridge``, the port must be on it."""

    name: str
    bridge: str | None = None
    if_exists: bool = True

    def _select(self) -> Select:
        return Select("Port", _by_name(self.name))

    def reads(self) -> Sequence[Select]:
        return [self._select()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        uuids = snapshot.uuids(self._select())
        if not uuids:
            if not self.if_exists:
                raise RowNotFound(f"port {self.name}")
            return
        _detach(txn, uuids[0], self.bridge, self.name)


@dataclass(frozen=True)
class DeletePorts:
    """Delete every port matching ``where`` (e.g. ``("external_ids", "includes", {..})``),
    optionally only those on ``bridge``."""

    where: tuple[Clause, ...]
    bridge: str | None = None

    def _ports(self) -> Select:
        return Select("Port", self.where, ("_uuid", "name"))

    def _bridge(self) -> Select:
        return Select("Bridge", _by_name(self.bridge or ""), ("_uuid", "ports"))

    def reads(self) -> Sequence[Select]:
        return [self._ports(), self._bridge()] if self.bridge else [self._ports()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        ports = snapshot.rows(self._ports())
        if self.bridge is not None:
            bridges = snapshot.rows(self._bridge())
            on_bridge = bridges[0]["ports"] if bridges else frozenset()
            ports = [p for p in ports if p["_uuid"] in on_bridge]
        for port in ports:
            _detach(txn, port["_uuid"], None, port["name"])


def _detach(txn: TransactionBuilder, port: Any, bridge: str | None, name: str) -> None:
    """Remove the port from its bridge; OVSDB garbage-collects the Port and its Interfaces."""
    where: list[Clause] = [("ports", "includes", {port})]
    if bridge is not None:
        where.append(("name", "==", bridge))
        txn.require("Bridge", where, f"port {name} on bridge {bridge}")
    txn.mutate("Bridge", where, [("ports", "delete", {port})])


@dataclass(frozen=True)
class SetPort:
    """Set a Port's ``tag`` (None clears it) and/or replace its whole ``other_config``."""

    name: str
    tag: int | _Keep | None = KEEP
    other_config: Mapping[str, str] | None = None

    def reads(self) -> Sequence[Select]:
        return []

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        columns: dict[str, Any] = {}
        if not isinstance(self.tag, _Keep):
            columns["tag"] = self.tag
        if self.other_config is not None:
            columns["other_config"] = dict(self.other_config)
        txn.require("Port", _by_name(self.name), f"port {self.name}")
        txn.update("Port", _by_name(self.name), columns)


@dataclass(frozen=True)
class UpdateMapKeys:
    """Set some keys of a map column and remove others, on every row matching ``where``."""

    table: str
    where: tuple[Clause, ...]
    column: str
    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    def reads(self) -> Sequence[Select]:
        return []

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        txn.require(self.table, self.where, f"{self.table} row where {list(self.where)}")
        txn.remove_keys(
            self.table, self.where, self.column, [k for k in self.remove if k not in self.set]
        )
        txn.set_keys(self.table, self.where, self.column, self.set)


def flow_restore_wait(enabled: bool) -> UpdateMapKeys:
    """Set (True) or clear (False) Open_vSwitch ``other_config:flow-restore-wait``."""
    key = "flow-restore-wait"
    if enabled:
        return UpdateMapKeys("Open_vSwitch", (), "other_config", set={key: "true"})
    return UpdateMapKeys("Open_vSwitch", (), "other_config", remove=(key,))


def _differing(have: Mapping[str, str], want: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in want.items() if have.get(k) != v}
