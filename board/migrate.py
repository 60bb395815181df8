"""Alembic, driven from Python: `board migrate` and the start-up upgrade."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

from board import paths
from board.store import async_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(paths.MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to date (runs its own event loop: call it from a thread).

    Several processes starting together migrate once: on PostgreSQL, migrations/env.py takes an
    advisory lock before reading the schema version; on SQLite, a lock file beside the database
    does the same for the processes of this machine (the only ones that can share the file).
    """
    with _sqlite_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


@contextmanager
def _sqlite_lock(database_url: str) -> Iterator[None]:
    path = database_url.split("///", 1)[1] if database_url.startswith("sqlite") else ""
    if not path or path.startswith(":memory:"):
        yield
        return
    lock = Path(path).with_name(Path(path).name + ".migrate-lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
