"""The debounced snapshot writer: a change while a write is under way is written after it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aovs.agent import snapshot_writer
from aovs.agent.snapshot import LocalSnapshot
from aovs.agent.snapshot_writer import SnapshotWriter


async def test_a_change_during_a_write_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    vlans = {"net": 1}

    def slow_write(path: Path, text: str) -> None:
        time.sleep(0.2)  # the fsync of a busy disk
        written.append(text)

    monkeypatch.setattr(snapshot_writer, "write_atomically", slow_write)
    writer = SnapshotWriter(tmp_path, lambda: LocalSnapshot(local_vlans=dict(vlans)), 0.05)
    writer.changed()
    await asyncio.sleep(0.1)  # the write is under way, built with VLAN 1
    vlans["net"] = 2
    writer.changed()
    await asyncio.sleep(0.6)
    assert LocalSnapshot.from_json(written[-1]).local_vlans == {"net": 2}
    assert len(written) == 2
    await writer.flush()  # nothing due: nothing written
    assert len(written) == 2
