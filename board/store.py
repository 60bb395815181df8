"""Storage: the engine (SQLite with durable settings, or PostgreSQL through asyncpg), and the
transactions the commands run."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from board.errors import RuleViolation
from board.events import Event
from board.tables import Board, BoardColumn, BoardEvent, Card, Participant

WRITE = "board_write"
T = TypeVar("T")
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
    _sqlite_settings(engine.sync_engine, busy_timeout)
    return engine


def make_sqlite_threads_engine(url: str, *, busy_timeout: float = 5.0) -> sa.Engine:
    """The same SQLite file through the plain sqlite3 driver, for the store's own threads
    (see Store.query and Store.transact)."""
    engine = sa.create_engine(
        "sqlite+pysqlite:" + async_url(url).removeprefix("sqlite+aiosqlite:"),
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        pool_size=4, max_overflow=4)
    _sqlite_settings(engine, busy_timeout)
    return engine


def _sqlite_settings(engine: sa.Engine, busy_timeout: float) -> None:
    @sa_event.listens_for(engine, "connect")
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

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # BEGIN IMMEDIATE for writes: no read-to-write lock upgrade, so no SQLITE_BUSY deadlock.
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


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
    except Exception as exc:
        refusal = unavailable(exc)
        if refusal is None:
            raise
        raise refusal from exc


def unavailable(exc: BaseException) -> RuleViolation | None:
    """The retryable ``unavailable`` refusal a storage failure becomes, or None for an error
    that says "wrong" rather than "not now" (it stays as it is)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if not _retryable(exc):
            return None
        log.warning("storage unavailable: %s", str(exc.orig or exc).splitlines()[0][:200])
    elif isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        # asyncpg's connect: connection refused, unreachable, timed out (not DBAPI errors);
        # or no pooled connection free in time.
        log.warning("storage unavailable: %s", str(exc)[:200])
    else:
        return None
    refusal = RuleViolation("unavailable")
    refusal.__cause__ = exc
    return refusal


def _as_sqlmodel(job: Callable[[Session], T]) -> Callable[[Any], T]:
    """run_sync hands sqlmodel's AsyncSession's sync_session, a sqlmodel Session; typing only
    knows SQLAlchemy's."""
    return job


async def in_session(session: AsyncSession, job: Callable[[Session], T]) -> T:
    """Run a function written for a plain Session inside an AsyncSession's transaction."""
    return await session.run_sync(_as_sqlmodel(job))


class Store:
    """Sessions and transactions on the engine.

    Two ways in. ``read()`` and ``write()`` give an AsyncSession, each statement a trip to the
    driver. ``query(job)`` and ``transact(job)`` run a plain function on a synchronous
    Session in one go: on SQLite, in the store's own threads through the sqlite3 driver (one
    thread hop per transaction instead of several per statement, which made a post cost ten
    milliseconds), with the writes of the moment grouped into one transaction and one fsync;
    on PostgreSQL, through the AsyncSession (``run_sync``), one transaction per job.
    """

    def __init__(self, engine: AsyncEngine, threads_engine: sa.Engine | None = None) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE: True})
        # A read is one snapshot on PostgreSQL too: under READ COMMITTED each statement reads
        # at its own moment, so a view read the board, then cards committed after its seq
        # (that also came as events). Read-only, REPEATABLE READ never fails to serialise.
        self._reader = (engine.execution_options(isolation_level="REPEATABLE READ")
                        if engine.dialect.name == "postgresql" else engine)
        # SQLite has one writer at a time. Writers of this process queue here, first come first
        # served, instead of each polling the file lock (which let some starve for seconds);
        # other processes still meet the busy timeout.
        self._write_turn: asyncio.Lock | None = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else None)
        self._threads_engine = threads_engine
        self._thread_writer = (threads_engine.execution_options(**{WRITE: True})
                               if threads_engine is not None else None)
        self._read_threads = ThreadPoolExecutor(2, thread_name_prefix="board-db-read")
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="board-db-write")
        # Jobs waiting for the next grouped transaction (SQLite), and the task that runs them.
        self._jobs: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self._job_runner: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, url: str, *, busy_timeout: float = 5.0) -> Store:
        engine = make_engine(url, busy_timeout=busy_timeout)
        threads = (make_sqlite_threads_engine(url, busy_timeout=busy_timeout)
                   if engine.dialect.name == "sqlite" else None)
        return cls(engine, threads)

    async def close(self) -> None:
        if self._job_runner is not None:
            await asyncio.shield(self._job_runner)
        self._read_threads.shutdown(wait=True)
        self._write_thread.shutdown(wait=True)
        if self._threads_engine is not None:
            self._threads_engine.dispose()
        await self.engine.dispose()

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
            async with AsyncSession(self._reader, expire_on_commit=False) as session:
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

    async def query(self, job: Callable[[Session], T]) -> T:
        """``job(session)``'s result, read in one go (see the class)."""
        if self._threads_engine is None:
            async with self.read() as session:
                return await session.run_sync(_as_sqlmodel(job))
        threads_engine = self._threads_engine

        def run() -> T:
            with Session(threads_engine, expire_on_commit=False) as session:
                return job(session)

        with storage_errors():
            return await asyncio.get_running_loop().run_in_executor(self._read_threads, run)

    async def transact(self, job: Callable[[Session], T]) -> T:
        """Run ``job(session)`` in a write transaction and return its result once committed.

        On SQLite the jobs that arrive while a transaction is under way share the next one
        (group commit), each in its own savepoint: a job that raises (a rule violation) is
        rolled back alone, and the others commit. Raises what ``write()`` raises.
        """
        if self._thread_writer is None:
            async with self.write() as session:
                return await session.run_sync(_as_sqlmodel(job))
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append((job, done))
        if self._job_runner is None:
            self._job_runner = asyncio.create_task(self._run_jobs())
        return await done

    async def _run_jobs(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._jobs:
                batch, self._jobs = self._jobs, []
                try:
                    async with self._turn():
                        with storage_errors():
                            outcomes = await loop.run_in_executor(
                                self._write_thread, self._run_batch, [job for job, _ in batch])
                except Exception as exc:  # the transaction failed: every job of it alike
                    outcomes = [(False, exc)] * len(batch)
                for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if ok:
                        done.set_result(value)
                    else:
                        done.set_exception(unavailable(value) or value)
        finally:
            self._job_runner = None

    def _run_batch(self, jobs: list[Callable[[Session], Any]]) -> list[tuple[bool, Any]]:
        """In the write thread: one transaction, one savepoint per job."""
        assert self._thread_writer is not None
        outcomes: list[tuple[bool, Any]] = []
        with Session(self._thread_writer, expire_on_commit=False) as session:
            with session.begin():
                # Savepoints said to sqlite3 itself, not SQLAlchemy's nested transactions (ORM
                # or Core): those cost more Python than a join's own two statements. So the
                # ORM must be told: a job's objects are flushed inside its savepoint, and
                # after a refusal the session forgets every object (some may hold what the
                # savepoint just undid).
                raw = session.connection().connection.driver_connection
                assert raw is not None
                for job in jobs:
                    raw.execute("SAVEPOINT job")
                    try:
                        value = job(session)
                        session.flush()
                    except Exception as exc:
                        raw.execute("ROLLBACK TO job")
                        raw.execute("RELEASE job")
                        session.expunge_all()
                        outcomes.append((False, exc))
                    else:
                        raw.execute("RELEASE job")
                        outcomes.append((True, value))
        return outcomes

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._write_turn is None:
            yield
            return
        async with self._write_turn:
            yield

    # --- reads -------------------------------------------------------------------------

    @staticmethod
    def board_by_code(session: Session, join_code: str) -> Board | None:
        return session.exec(_BOARD_BY_CODE, params={"join_code": join_code}).first()

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
    def participant_by_token(session: Session, *, board_id: int,
                             token_hash: str) -> Participant | None:
        return session.exec(_PARTICIPANT_BY_TOKEN, params={
            "token_hash": token_hash, "board_id": board_id}).first()

    @staticmethod
    def events_since(
        session: Session, *, board_id: int, since: int, until: int | None = None
    ) -> list[Event]:
        query = select(BoardEvent).where(BoardEvent.board_id == board_id, BoardEvent.seq > since)
        if until is not None:
            query = query.where(BoardEvent.seq <= until)
        result = session.exec(query.order_by(col(BoardEvent.seq)))
        return [
            Event(board_id=board_id, seq=row.seq, type=row.type, data=json.loads(row.data))
            for row in result.all()
        ]

    @staticmethod
    def invisible_card_ids(session: Session, board: Board,
                                 participant_id: int | None) -> frozenset[int]:
        """Cards a non-animator cannot see now: hidden, deleted, merged, or another's while
        silent writing is on."""
        hidden = sa.or_(col(Card.hidden).is_(True), col(Card.deleted).is_(True),
                        col(Card.merged_into).is_not(None))
        if board.silent:
            hidden = sa.or_(hidden, sa.or_(col(Card.participant_id).is_(None),
                                           col(Card.participant_id) != (participant_id or -1)))
        result = session.exec(select(Card.id).where(Card.board_id == board.id, hidden))
        return frozenset(i for i in result.all() if i is not None)

    # --- writes (call inside `write()`) ------------------------------------------------

    @staticmethod
    def take_seq(session: Session, board_id: int) -> int:
        """The board's next seq; the row lock it takes orders concurrent writers."""
        # Core: no ORM bookkeeping for one value.
        return int(session.connection().execute(_TAKE_SEQ, {"board_id": board_id}).scalar_one())

    @staticmethod
    def log_event(session: Session | AsyncSession, event: Event) -> None:
        """Append the event to the log in the caller's transaction."""
        session.add(BoardEvent(**_event_row(event)))

    @staticmethod
    def append_event(session: Session, event: Event) -> None:
        """log_event as one plain INSERT, written at once (the post path: no unit of work)."""
        session.connection().execute(sa.insert(BoardEvent), _event_row(event))


# Statements of the hottest paths, built once (building one costs as much as running it).
_BOARD_BY_CODE = select(Board).where(col(Board.join_code) == sa.bindparam("join_code"))
_PARTICIPANT_BY_TOKEN = select(Participant).where(
    col(Participant.token_hash) == sa.bindparam("token_hash"),
    col(Participant.board_id) == sa.bindparam("board_id"))
_TAKE_SEQ = (sa.update(Board).where(col(Board.id) == sa.bindparam("board_id"))
             .values(seq=col(Board.seq) + 1).returning(col(Board.seq)))


def _event_row(event: Event) -> dict[str, Any]:
    return {"board_id": event.board_id, "seq": event.seq or 0, "type": event.type,
            "data": json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))}
