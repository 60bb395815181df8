"""PostgreSQL LISTEN/NOTIFY backend: the database doubles as the pub/sub engine.

Each worker keeps one asyncpg connection that LISTENs on the channel and a second one that
sends ``pg_notify``. A NOTIFY payload must stay under 8000 bytes: an event whose JSON is larger
is announced as a resync of its board instead, and the receiving feeds read it from the log.
A lost connection (server restart, network) is noticed by asyncpg's termination callback or by
a periodic ``SELECT 1``, and re-established with back-off (see ``RemoteHub``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from board.events import Event
from board.hub import RESYNC, RemoteHub

NOTIFY_LIMIT = 7900  # bytes; PostgreSQL refuses payloads of 8000 bytes or more
PING_EVERY = 5.0  # seconds between liveness checks of the listening connection
APP_NAME = {"application_name": "atelier_board_hub"}  # how the hub shows in pg_stat_activity


def plain_dsn(url: str) -> str:
    """asyncpg wants postgresql://…, not SQLAlchemy's postgresql+asyncpg://…"""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


class PostgresHub(RemoteHub):
    kind = "postgresql"

    def __init__(self, url: str, *, channel: str = "atelier_board") -> None:
        super().__init__()
        self.dsn = plain_dsn(url)
        self.channel = channel
        self._listener: Any = None
        self._sender: Any = None
        self._send_lock = asyncio.Lock()

    def encode(self, event: Event) -> str:
        message = super().encode(event)
        if len(message.encode()) < NOTIFY_LIMIT:
            return message
        return super().encode(Event(event.board_id, None, RESYNC))

    async def _send(self, board_id: int, message: str) -> None:
        async with self._send_lock:  # one query at a time on an asyncpg connection
            if self._sender is None or self._sender.is_closed():
                self._sender = await asyncpg.connect(
                    self.dsn, timeout=2, server_settings=APP_NAME)
            await asyncio.wait_for(
                self._sender.execute("SELECT pg_notify($1, $2)", self.channel, message), 5)

    async def _listen(self, on_ready: Callable[[], None]) -> None:
        lost = asyncio.Event()
        conn = self._listener = await asyncpg.connect(
            self.dsn, timeout=2, server_settings=APP_NAME)
        conn.add_termination_listener(lambda _conn: lost.set())

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            self.received(payload)

        await conn.add_listener(self.channel, on_notify)
        on_ready()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), PING_EVERY)
            except TimeoutError:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), PING_EVERY)
        raise ConnectionError("listening connection closed")

    async def _disconnect(self) -> None:
        for name in ("_listener", "_sender"):
            conn = getattr(self, name)
            setattr(self, name, None)
            if conn is not None and not conn.is_closed():
                conn.terminate()
