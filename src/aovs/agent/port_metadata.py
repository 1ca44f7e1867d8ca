"""neutron's Port rows (``tag``, ``other_config`` net_uuid/network_type/...), written lazily.

Nothing on br-int forwards by Port.tag (see aovs.pipelines.br_int), but neutron's own agent
reads these columns when it takes a host back (to keep every VM's local VLAN), and so may
operators' tools. Each write of either column makes ovs-vswitchd reconfigure every port (~170 ms
of its CPU at 1000 ports, measured here; a Port.external_ids write costs nothing), and a bundle
that arrives meanwhile waits behind it: measured in ``make bench-reboot``, 500 VM reboots one
after the other among 1000 ports, batching the writes every 5 s put the new-ofport-to-forwarding
p99 at 444 ms against 59 ms without them. So by default (``delay`` None) the writer only
collects what changed and writes it all in ONE transaction when the agent stops; with a
``delay`` it also writes ``delay`` seconds after the first change, batched, never before the
port's bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aovs.agent.state import PortConfig
from aovs.ovsdb import Command, ConnectionLost, OVSDBClient, OVSDBError, SetPort, UpdateMapKeys

LOG = logging.getLogger(__name__)
RETRY_DELAY = 1.0  # at least this long before retrying after OVSDB went away


def port_commands(name: str, config: PortConfig) -> list[Command]:
    """neutron's writes: Port.tag, and our keys of other_config (others are kept)."""
    commands: list[Command] = [SetPort(name, tag=config.tag)]
    if config.other_config is not None:
        where = (("name", "==", name),)
        commands.append(UpdateMapKeys("Port", where, "other_config", set=dict(config.other_config)))
    return commands


class PortMetadataWriter:
    """Coalesces Port row writes: the latest config per port, written at stop or in batches."""

    def __init__(self, ovsdb: OVSDBClient, delay: float | None) -> None:
        self.ovsdb = ovsdb
        self.delay = delay
        self.transactions = 0  # batches written (for tests and benchmarks)
        self._pending: dict[str, PortConfig] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def changed(self, configs: dict[str, PortConfig]) -> None:
        """Ports whose flows just committed with this config: written within ``delay``, or at
        :meth:`flush` (the agent stops) when there is none."""
        if not configs:
            return
        self._pending.update(configs)
        if self.delay is None:
            return  # written by flush(), when the agent stops
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_later(), name="aovs-port-metadata")

    async def wait_idle(self) -> None:
        """Until everything handed over so far is written (or given up on); with no delay,
        at once (nothing is written before :meth:`flush`)."""
        await self._idle.wait()

    async def flush(self) -> None:
        """Write what is pending now (the agent stops: leave neutron's view complete)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._write(self._take())
        self._idle.set()

    async def _write_later(self) -> None:
        assert self.delay is not None
        wait = delay = self.delay
        while self._pending:
            await asyncio.sleep(wait)
            requeued = not await self._write(self._take())
            wait = max(delay, RETRY_DELAY) if requeued else delay
        self._idle.set()

    def _take(self) -> dict[str, PortConfig]:
        batch, self._pending = self._pending, {}
        return batch

    def _again(self, configs: dict[str, PortConfig], error: Exception) -> None:
        """OVSDB went away or did not answer: keep them (newer configs win) for the next try."""
        LOG.warning("Port rows not written; retrying", extra={"ports": len(configs),
                    "error": str(error) or type(error).__name__})  # fmt: skip
        self._pending = configs | self._pending

    async def _write(self, configs: dict[str, PortConfig]) -> bool:
        """One transaction (one by one if it fails); False when some were kept for later."""
        if not configs:
            return True
        started = time.monotonic()
        commands = [c for name, config in configs.items() for c in port_commands(name, config)]
        try:
            await self.ovsdb.transact(*commands)
        except (ConnectionLost, TimeoutError) as exc:
            self._again(configs, exc)
            return False
        except OVSDBError as exc:
            # a port deleted meanwhile fails the whole transaction: retry one by one
            LOG.info("Port rows: batch failed, writing one by one", extra={"error": exc})
            written = True
            for name, config in configs.items():
                try:
                    await self.ovsdb.transact(*port_commands(name, config))
                except (ConnectionLost, TimeoutError) as lost:
                    self._again({name: config}, lost)
                    written = False
                except OVSDBError as one:
                    LOG.info("Port row not written", extra={"port": name, "error": one})
            if not written:
                return False
        self.transactions += 1
        LOG.debug("Port rows written", extra={"ports": len(configs),
                  "ms": (time.monotonic() - started) * 1e3})  # fmt: skip
        return True
