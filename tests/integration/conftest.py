"""Fixtures of the integration tests that drive the commands without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from board.commands import Commands
from board.hub import MemoryHub
from board.migrate import upgrade
from board.settings import Settings
from board.store import Store
from tests.conftest import drop_database, fresh_database_url


@pytest.fixture
async def commands(tmp_path: Path) -> AsyncIterator[Commands]:
    """Commands on a fresh, migrated database (a SQLite file, or a PostgreSQL database when
    BOARD_TEST_DATABASE=postgresql) and the in-process hub."""
    url = fresh_database_url(tmp_path / "commands.db")
    await asyncio.to_thread(upgrade, url)
    store = Store.open(url)
    try:
        yield Commands(store, MemoryHub(), Settings(database_url=url))
    finally:
        await store.close()
        drop_database(url)
