"""A locked database: a clear, retryable error to the poster; the board stays readable."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ON_POSTGRESQL, LiveServer
from tests.engines import PostgresCluster
from tests.integration.helpers import create_board, join, post


@contextlib.asynccontextmanager
async def another_writer(server: LiveServer) -> AsyncIterator[None]:
    """Another process holds the write lock until the block ends: SQLite's file lock
    (BEGIN IMMEDIATE), or on PostgreSQL an EXCLUSIVE lock on the card and event tables
    (plain reads go on; any write to them waits)."""
    if server.dialect == "sqlite":
        locker = sqlite3.connect(server.db_path, isolation_level=None, timeout=1)
        locker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        return
    import asyncpg

    connection = await asyncpg.connect(server.database_url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE card, board_event IN EXCLUSIVE MODE")
            yield
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await connection.close()


class _Rollback(Exception):
    """Leaves the locker's transaction without committing anything."""


async def test_locked_database_gives_a_retryable_error_and_loses_nothing(
        tmp_path: Path) -> None:
    """While another process holds the write lock, posts get 503 + Retry-After; after, the
    same client_id goes through once, and nothing half-written is left."""
    server = LiveServer(tmp_path / "board.db", tmp_path / "server.log",
                        env={"BOARD_DB_BUSY_TIMEOUT": "0.5"})
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            board = await create_board(http)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http, code)
            first = await post(http, code, token, column, "avant le verrou", "k0")
            assert first.status_code == 201

            async with another_writer(server):
                refused = await post(http, code, token, column, "pendant le verrou", "k1")
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "2"
                error = refused.json()["error"]
                assert error["code"] == "unavailable" and "réessayez" in error["fr"]
                # Reading still works: WAL (or MVCC) readers are not blocked by a writer.
                state = (await http.get(f"/api/v1/boards/{code}")).json()
                assert [c["text"] for c in state["columns"][0]["cards"]] == ["avant le verrou"]
                page = await http.get(f"/b/{code}/projector")
                assert page.status_code == 200 and "avant le verrou" in page.text

            retried = await post(http, code, token, column, "pendant le verrou", "k1")
            assert retried.status_code == 201
            again = await post(http, code, token, column, "pendant le verrou", "k1")
            assert again.status_code == 200 and again.json()["id"] == retried.json()["id"]
        assert server.query("select count(*) from card") == [(2,)]
        assert server.query("select count(*) from board_event") == [(2,)]
        assert server.integrity() == ["ok"]
    finally:
        server.dispose()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL only: a server that goes away and "
                    "comes back (a SQLite file has no server; its locks are tested above)")
async def test_database_server_restart_gives_a_retryable_error_then_recovers(
        tmp_path: Path) -> None:
    """PostgreSQL stopped under a running board: posts get 503 + Retry-After, not a 500 nor a
    hang; once it is back (same port), the same client_id goes through once."""
    cluster = PostgresCluster(tmp_path / "own-cluster")  # its own: the session's stays up
    server: LiveServer | None = None
    try:
        await asyncio.to_thread(cluster.start)
        server = LiveServer(tmp_path / "board.db", tmp_path / "server.log",
                            database_url=cluster.create_database("restarted"))
        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            board = await create_board(http)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http, code)
            assert (await post(http, code, token, column, "avant", "k0")).status_code == 201

            def shutdown() -> None:
                cluster.stop(remove=False)

            for outage, stop in (("crash", cluster.kill), ("shutdown", shutdown)):
                await asyncio.to_thread(stop)
                refused = await post(http, code, token, column, "pendant", outage)
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "2"
                assert refused.json()["error"]["code"] == "unavailable"
                await asyncio.to_thread(cluster.start)
                retried = await post(http, code, token, column, "pendant", outage)
                assert retried.status_code == 201, retried.text
                again = await post(http, code, token, column, "pendant", outage)
                assert again.status_code == 200 and again.json()["id"] == retried.json()["id"]
            state = (await http.get(f"/api/v1/boards/{code}")).json()
            assert [c["text"] for c in state["columns"][0]["cards"]] == [
                "avant", "pendant", "pendant"]
        assert server.query("select count(*) from card") == [(3,)]
        assert server.integrity() == ["ok"]
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        await asyncio.to_thread(cluster.stop)
