"""Alembic, driven from Python: `board migrate` and the start-up upgrade."""

from __future__ import annotations

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
    """Bring the schema up to date (runs its own event loop: call it from a thread)."""
    command.upgrade(alembic_config(database_url), revision)
