"""Alembic environment: async engine, batch mode on SQLite, metadata from board.tables."""

from __future__ import annotations

import asyncio
import logging

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import board.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
log = logging.getLogger("board.migrate")
target_metadata = SQLModel.metadata


def include_object(obj: object, name: str | None, type_: str, reflected: bool,
                   compare_to: object) -> bool:
    """Autogenerate ignores SQLite's FTS5 index (search_fts and its shadow tables): it is
    created by hand in revision 0003, not described by SQLModel."""
    return not (type_ == "table" and (name or "").startswith("search_fts"))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


# Any constant shared by every worker: several workers starting together on one PostgreSQL
# database queue on this lock, and the later ones find the schema already up to date.
MIGRATION_LOCK = 0x61746C6272  # "atlbr"


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends (migrations are transactional on PostgreSQL);
            # taken before Alembic reads the version table.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
        current = context.get_context().get_current_revision()
        head = context.script.get_current_head()
        if current == head:
            log.info("database schema up to date (%s)", head)
        else:
            log.info("database schema: migrating from %s to %s", current or "empty", head)
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
