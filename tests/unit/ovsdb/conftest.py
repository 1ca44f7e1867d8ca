"""Fixtures for the OVSDB unit tests: an in-process fake ovsdb-server (see ``ovsdb_fake``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ovsdb_fake import FakeOVSDB


@pytest.fixture
async def fake_ovsdb() -> AsyncIterator[FakeOVSDB]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-fk-", dir="/tmp"))
    fake = FakeOVSDB(directory / "db.sock")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
        shutil.rmtree(directory, ignore_errors=True)
