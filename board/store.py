"""Storage: the engine (SQLite with durable settings, or PostgreSQL through asyncpg), and the
transactions the commands run."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from board.errors import RuleViolation
from board.events import Event
from board.tables import Board, BoardColumn, BoardEvent, Card, Participant

WRITE = "board_write"
log = logging.getLogger("board.store")


def async_url(url: str) -> str:
    """Accept plain URLs (sqlite:///x.db, postgresql://…) and pick the async driver."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str, *, busy_timeout: float = 5.0) -> AsyncEngine:
    url = async_url(url)
    if not url.startswith("sqlite"):
        # PostgreSQL: a write that waits longer than busy_timeout for a row or table lock
        # fails (lock_timeout, SQLSTATE 55P03) with the same retryable `unavailable` error as
        # a locked SQLite file, instead of waiting without end.
        return create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True,
            connect_args={"timeout": max(10.0, busy_timeout), "server_settings": {
                "lock_timeout": str(max(1, int(busy_timeout * 1000))),
                "application_name": "atelier-board"}})
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout})

    @sa_event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below), so that writers take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",  # an acknowledged card survives a power cut
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={int(busy_timeout * 1000)}",
        ):
            cursor.execute(pragma)
        cursor.close()

    @sa_event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # BEGIN IMMEDIATE for writes: no read-to-write lock upgrade, so no SQLITE_BUSY deadlock.
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# PostgreSQL errors that say "not now" rather than "wrong": the database is gone, restarting,
# out of connections, memory or disk, read-only, a lock wait timed out, or the transaction lost
# a deadlock or serialisation race. Classes (two characters) or full SQLSTATEs.
RETRYABLE_SQLSTATES = ("08", "53", "57", "58", "55P03", "25006", "40001", "40P01")


def _retryable(exc: sa_exc.DBAPIError) -> bool:
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.ProgrammingError | sa_exc.DataError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(RETRYABLE_SQLSTATES)


@contextmanager
def storage_errors() -> Iterator[None]:
    try:
        yield
    except sa_exc.DBAPIError as exc:
        if not _retryable(exc):
            raise
        log.warning("storage unavailable: %s", str(exc.orig or exc).splitlines()[0][:200])
        raise RuleViolation("unavailable") from exc
    except (OSError, TimeoutError, sa_exc.TimeoutError) as exc:
        # asyncpg's connect: connection refused, unreachable, timed out (not DBAPI errors);
        # or no pooled connection free in time.
        log.warning("storage unavailable: %s", str(exc)[:200])
        raise RuleViolation("unavailable") from exc


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE: True})
        # SQLite has one writer at a time. Writers of this process queue here, first come first
        # served, instead of each polling the file lock (which let some starve for seconds);
        # other processes still meet the busy timeout.
        self._write_turn: asyncio.Lock | None = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else None)
        # Rows waiting for the next group commit (add_durably), and the task that writes them.
        self._rows: list[tuple[Any, asyncio.Future[None]]] = []
        self._row_writer: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def read(self, within: AsyncSession | None = None) -> AsyncIterator[AsyncSession]:
        """A session to read with; ``within`` (a write's session) is used as it is. A read
        inside a write must use the write's session: a second pooled connection, taken while
        holding the board's lock, could wait for one held by a writer queued on that lock
        (PostgreSQL), and would not see the write's own changes."""
        if within is not None:
            yield within
            return
        with storage_errors():
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction; committed when the block ends without error.

        A database that is locked too long, full, read-only or gone raises the retryable
        ``unavailable`` error: the transaction is rolled back, so nothing half-written stays,
        and the client keeps its text and retries with the same idempotency key.
        """
        async with self._turn():
            with storage_errors():
                async with AsyncSession(self._writer, expire_on_commit=False) as session:
                    async with session.begin():
                        yield session

    async def add_durably(self, row: Any) -> None:
        """Insert one row and return once it is committed. Rows added while a commit is under
        way share the next transaction (group commit): a wave of 1,000 joins costs a few
        commits and fsyncs, not one each. Raises what ``write()`` raises."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rows.append((row, done))
        if self._row_writer is None:
            self._row_writer = asyncio.create_task(self._write_rows())
        await done

    async def _write_rows(self) -> None:
        try:
            while self._rows:
                batch: list[tuple[Any, asyncio.Future[None]]] = []
                try:
                    async with self.write() as session:
                        batch, self._rows = self._rows, []
                        session.add_all([row for row, _ in batch])
                except Exception as exc:  # every row of the batch failed alike
                    for _, done in batch or self._rows:
                        if not done.done():
                            done.set_exception(exc)
                    if not batch:
                        self._rows = []
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._row_writer = None

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._write_turn is None:
            yield
            return
        async with self._write_turn:
            yield

    # --- reads -------------------------------------------------------------------------

    @staticmethod
    async def board_by_code(session: AsyncSession, join_code: str) -> Board | None:
        result = await session.exec(select(Board).where(Board.join_code == join_code))
        return result.first()

    @staticmethod
    async def columns(session: AsyncSession, board_id: int) -> list[BoardColumn]:
        result = await session.exec(
            select(BoardColumn)
            .where(BoardColumn.board_id == board_id)
            .order_by(col(BoardColumn.position))
        )
        return list(result.all())

    @staticmethod
    async def cards(session: AsyncSession, board_id: int) -> list[Card]:
        result = await session.exec(
            select(Card).where(Card.board_id == board_id).order_by(col(Card.id))
        )
        return list(result.all())

    @staticmethod
    async def participant_by_token(
        session: AsyncSession, *, board_id: int, token_hash: str
    ) -> Participant | None:
        result = await session.exec(
            select(Participant).where(
                Participant.token_hash == token_hash, Participant.board_id == board_id
            )
        )
        return result.first()

    @staticmethod
    async def events_since(
        session: AsyncSession, *, board_id: int, since: int, until: int | None = None
    ) -> list[Event]:
        query = select(BoardEvent).where(BoardEvent.board_id == board_id, BoardEvent.seq > since)
        if until is not None:
            query = query.where(BoardEvent.seq <= until)
        result = await session.exec(query.order_by(col(BoardEvent.seq)))
        return [
            Event(board_id=board_id, seq=row.seq, type=row.type, data=json.loads(row.data))
            for row in result.all()
        ]

    @staticmethod
    async def invisible_card_ids(session: AsyncSession, board: Board,
                                 participant_id: int | None) -> frozenset[int]:
        """Cards a non-animator cannot see now: hidden, deleted, merged, or another's while
        silent writing is on."""
        hidden = sa.or_(col(Card.hidden).is_(True), col(Card.deleted).is_(True),
                        col(Card.merged_into).is_not(None))
        if board.silent:
            hidden = sa.or_(hidden, sa.or_(col(Card.participant_id).is_(None),
                                           col(Card.participant_id) != (participant_id or -1)))
        result = await session.exec(select(Card.id).where(Card.board_id == board.id, hidden))
        return frozenset(i for i in result.all() if i is not None)

    # --- writes (call inside `write()`) ------------------------------------------------

    @staticmethod
    async def take_seq(session: AsyncSession, board_id: int) -> int:
        """The board's next seq; the row lock it takes orders concurrent writers."""
        result = await session.execute(
            sa.update(Board)
            .where(col(Board.id) == board_id)
            .values(seq=col(Board.seq) + 1)
            .returning(col(Board.seq))
        )
        return int(result.scalar_one())

    @staticmethod
    def log_event(session: AsyncSession, event: Event) -> None:
        """Append the event to the log in the caller's transaction."""
        session.add(
            BoardEvent(
                board_id=event.board_id,
                seq=event.seq or 0,
                type=event.type,
                data=json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
            )
        )
