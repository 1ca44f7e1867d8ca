"""The agent extensions' Interface columns (e.g. QoS ``ingress_policing_rate``), written.

The shell's side of :attr:`aovs.agent.core.Plan.interface_columns`: after a plan's bundles
commit, every Interface named there gets its columns in ONE transaction. Each command reads the
row first and writes only the columns that differ, so resetting a port that never had a limit
(its row's first sight, an agent restart) costs no write and no reconfiguration of
ovs-vswitchd; a row gone meanwhile (a VM deleted) is skipped, not an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aovs.ovsdb import ConnectionLost, OVSDBClient, OVSDBError
from aovs.ovsdb.transaction import Clause, Select, SelectedRows, TransactionBuilder

LOG = logging.getLogger(__name__)
ATTEMPTS = 3  # OVSDB away: tried again (it usually comes back within seconds)
RETRY_DELAY = 1.0


@dataclass(frozen=True)
class SetInterfaceColumns:
    """Set some columns of the Interface called ``name`` to ``columns``, where they differ."""

    name: str
    columns: Mapping[str, int]

    @property
    def _where(self) -> tuple[Clause, ...]:
        return (("name", "==", self.name),)

    def _select(self) -> Select:
        return Select("Interface", self._where, ("_uuid", *sorted(self.columns)))

    def reads(self) -> Sequence[Select]:
        return [self._select()]

    def build(self, snapshot: SelectedRows, txn: TransactionBuilder) -> None:
        rows = snapshot.rows(self._select())
        if not rows:
            return  # the port went meanwhile: nothing to set
        row: Mapping[str, Any] = rows[0]
        differing = {k: v for k, v in self.columns.items() if row.get(k) != v}
        if differing:
            txn.update("Interface", self._where, differing)


async def write_interface_columns(
    ovsdb: OVSDBClient, columns: Mapping[str, Mapping[str, int]]
) -> None:
    """One transaction for every Interface in ``columns`` (by name); one by one when it fails
    as a whole, so one bad row cannot keep the others from their limits."""
    if not columns:
        return
    started = time.monotonic()
    commands = [SetInterfaceColumns(name, dict(cols)) for name, cols in columns.items()]
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await ovsdb.transact(*commands)
                break
            except (ConnectionLost, TimeoutError) as exc:
                if attempt == ATTEMPTS:
                    LOG.warning("Interface columns not written (OVSDB unreachable)",
                                extra={"interfaces": len(commands), "error": str(exc)})  # fmt: skip
                    return
                await asyncio.sleep(RETRY_DELAY)
    except OVSDBError as exc:
        LOG.info("Interface columns: batch failed, writing one by one", extra={"error": exc})
        for command in commands:
            try:
                await ovsdb.transact(command)
            except (OVSDBError, TimeoutError) as one:
                LOG.warning("Interface columns not written",
                            extra={"interface": command.name, "error": str(one)})  # fmt: skip
        return
    LOG.debug("Interface columns written", extra={"interfaces": len(commands),
              "ms": (time.monotonic() - started) * 1e3})  # fmt: skip
