"""A man in the middle on the agent's OVS sockets: forwards bytes, and lies on demand.

The agent is configured with ``ovsdb_connection = unix:<proxy dir>/db.sock``, so it also looks
for the bridges' ``.mgmt`` sockets in the proxy's directory (``OVSSection.rundir``). Every
connection it opens is forwarded to the same socket name in the sandbox's directory, so the
agent programs the real ovs-vswitchd and reads the real ovsdb-server; ``inject`` writes bytes of
our choosing into what the agent reads (garbage, a truncated message), as a broken
ovsdb-server or switch would, optionally hanging up right after. When the real daemon is down
the agent's connection is refused or closed, exactly as without the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 65536

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class _Pair:
    downstream: asyncio.StreamWriter  # to the agent
    upstream: asyncio.StreamWriter  # to the real daemon
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.downstream, self.upstream):
            with contextlib.suppress(Exception):
                writer.close()


class SocketProxy:
    """Unix-socket forwarding for ``names`` from ``directory`` to ``upstream_directory``."""

    def __init__(self, directory: Path, upstream_directory: Path, names: list[str]) -> None:
        self.directory = directory
        self.upstream_directory = upstream_directory
        self.names = names
        self.accepted: dict[str, int] = dict.fromkeys(names, 0)
        self._servers: list[asyncio.Server] = []
        self._pairs: dict[str, list[_Pair]] = {name: [] for name in names}

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            path = self.directory / name
            path.unlink(missing_ok=True)
            handler = self._handler(name)
            self._servers.append(await asyncio.start_unix_server(handler, path=str(path)))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for pairs in self._pairs.values():
            for pair in pairs:
                pair.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    def connections(self, name: str) -> int:
        return len(self._pairs[name])

    async def wait_connected(self, name: str, within: float = 10.0) -> bool:
        """Until the agent has a connection on ``name`` (it may be reconnecting)."""
        deadline = asyncio.get_running_loop().time() + within
        while not self._pairs[name]:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def inject(self, name: str, data: bytes, hang_up: bool = False) -> int:
        """Write ``data`` to every agent connection on ``name``; how many got it."""
        pairs = list(self._pairs[name])
        for pair in pairs:
            pair.downstream.write(data)
            if hang_up:
                pair.close()
        return len(pairs)

    def _handler(self, name: str) -> Handler:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted[name] += 1
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(self.upstream_directory / name)), 5.0
                )
            except (OSError, TimeoutError):
                writer.close()  # the daemon is down: the agent sees a hang-up, as it would
                return
            pair = _Pair(writer, up_writer)
            self._pairs[name].append(pair)
            pair.tasks = [
                asyncio.create_task(_pump(reader, up_writer)),
                asyncio.create_task(_pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pair.tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                pair.close()
                for task in pair.tasks:
                    task.cancel()
                self._pairs[name].remove(pair)

        return serve


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
