"""An in-process fake ovsdb-server on a unix socket: enough RFC 7047 to monitor one table, plus a
way to push arbitrary bytes (garbage, split messages) at the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA: dict[str, Any] = {
    "name": "Open_vSwitch",
    "version": "8.3.1",
    "tables": {
        "Interface": {
            "columns": {
                "name": {"type": "string"},
                "type": {"type": "string"},
                "ofport": {"type": {"key": "integer", "min": 0, "max": 1}},
                "external_ids": {
                    "type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}
                },
            }
        }
    },
}


class FakeOVSDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}  # Interface rows by uuid, in JSON form
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.answer_echo = True
        self._writer: asyncio.StreamWriter | None = None
        self._monitor_id: Any = None
        self._server: asyncio.Server | None = None
        self.sessions = 0  # monitors established (one per client session)
        self._progress = asyncio.Event()  # set whenever a message arrives

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        self.connections += 1
        decoder = json.JSONDecoder()
        buffer = ""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                buffer += data.decode()
                while buffer.strip():
                    try:
                        message, end = decoder.raw_decode(buffer.lstrip())
                    except json.JSONDecodeError:
                        break
                    buffer = buffer.lstrip()[end:]
                    self._handle(writer, message)

    def _handle(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        self.requests.append(message)
        self._progress.set()
        method, params, request_id = message.get("method"), message.get("params"), message["id"]
        if method == "get_schema":
            self._reply(writer, request_id, SCHEMA)
        elif method == "monitor_cond":
            assert params is not None
            self._monitor_id = params[1]
            rows = {uuid: {"initial": row} for uuid, row in self.rows.items()}
            self._reply(writer, request_id, {"Interface": rows} if rows else {})
            self.sessions += 1
        elif method == "echo":
            if self.answer_echo:
                self._reply(writer, request_id, params)
        elif method is None:
            pass  # a reply to our own echo
        else:
            writer.write(
                json.dumps({"id": request_id, "result": None, "error": "unknown"}).encode()
            )

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, request_id: Any, result: Any) -> None:
        writer.write(json.dumps({"id": request_id, "result": result, "error": None}).encode())

    # -- what tests drive -------------------------------------------------------------------------
    async def wait_session(self, count: int, within: float = 5.0) -> None:
        """Until the client's ``count``-th session has asked for its monitor."""
        await self.wait_until(lambda: self.sessions >= count, within)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._progress.clear()
                await self._progress.wait()

    def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def insert(self, uuid: str, row: dict[str, Any]) -> None:
        self.rows[uuid] = row
        self.update({uuid: {"insert": row}})

    def update(self, rows: dict[str, Any]) -> None:
        message = {
            "id": None,
            "method": "update2",
            "params": [self._monitor_id, {"Interface": rows}],
        }
        self.send_raw(json.dumps(message).encode())

    def drop(self) -> None:
        """Close the client's connection (the listener stays)."""
        if self._writer is not None:
            self._writer.close()
