"""A locked database: a clear, retryable error to the poster; the board stays readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.conftest import LiveServer
from tests.integration.helpers import create_board, join, post


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

            locker = sqlite3.connect(server.db_path, isolation_level=None, timeout=1)
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            try:
                refused = await post(http, code, token, column, "pendant le verrou", "k1")
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "2"
                error = refused.json()["error"]
                assert error["code"] == "unavailable" and "réessayez" in error["fr"]
                # Reading still works: WAL readers are not blocked by a writer.
                state = (await http.get(f"/api/v1/boards/{code}")).json()
                assert [c["text"] for c in state["columns"][0]["cards"]] == ["avant le verrou"]
                page = await http.get(f"/b/{code}/projector")
                assert page.status_code == 200 and "avant le verrou" in page.text
            finally:
                locker.execute("ROLLBACK")
                locker.close()

            retried = await post(http, code, token, column, "pendant le verrou", "k1")
            assert retried.status_code == 201
            again = await post(http, code, token, column, "pendant le verrou", "k1")
            assert again.status_code == 200 and again.json()["id"] == retried.json()["id"]
        with sqlite3.connect(server.db_path) as db:
            assert db.execute("select count(*) from card").fetchone() == (2,)
            assert db.execute("select count(*) from board_event").fetchone() == (2,)
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        server.stop()
