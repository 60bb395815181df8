"""Shared fixtures: a real `board serve` process on 127.0.0.1 with a real database.

The database is a SQLite file, or, with ``BOARD_TEST_DATABASE=postgresql``, a fresh database
of its own in a PostgreSQL cluster the test session starts once (tests/engines.py).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.engines import PostgresCluster, free_port, postgres_bindir, stop_process

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# --- which database the servers use --------------------------------------------------------

TEST_DATABASE = os.environ.get("BOARD_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
if TEST_DATABASE in ("postgres", "pg"):
    TEST_DATABASE = "postgresql"
if TEST_DATABASE not in ("sqlite", "postgresql"):
    raise RuntimeError(f"BOARD_TEST_DATABASE={TEST_DATABASE!r}: 'sqlite' or 'postgresql'")
ON_POSTGRESQL = TEST_DATABASE == "postgresql"

_cluster: PostgresCluster | None = None
_cluster_lock = threading.Lock()
_database_numbers = itertools.count(1)


def postgres_cluster() -> PostgresCluster:
    """The session's PostgreSQL cluster, started on first use, stopped at exit."""
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="board-test-pg-")))
            atexit.register(_remove_cluster, cluster)
            cluster.start()
            _cluster = cluster
        return _cluster


def _remove_cluster(cluster: PostgresCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.workdir, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _cluster
    with _cluster_lock:
        if _cluster is not None:
            _remove_cluster(_cluster)
            _cluster = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"board test database: {TEST_DATABASE} (BOARD_TEST_DATABASE)"


def fresh_database_url(sqlite_path: Path) -> str:
    """The URL of a new, empty database: the SQLite file at `sqlite_path`, or a fresh
    PostgreSQL database in the session's cluster."""
    if not ON_POSTGRESQL:
        return f"sqlite:///{sqlite_path}"
    return new_postgres_database()


def new_postgres_database() -> str:
    """The URL of a new, empty database in the session's PostgreSQL cluster."""
    return postgres_cluster().create_database(f"board_{os.getpid()}_{next(_database_numbers)}")


def drop_database(url: str) -> None:
    if ON_POSTGRESQL and _cluster is not None:
        _cluster.drop_database(url.rsplit("/", 1)[1])


_pg_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-query")


def query_database(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) in its own transaction on the database at
    `url`, beside the running server; the rows as tuples (none for a write)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"),
                                                timeout=60)) as db, db:
            return [tuple(row) for row in db.execute(sql, params).fetchall()]
    numbers = itertools.count(1)
    pg_sql = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=30)
        try:
            return [tuple(row) for row in await connection.fetch(pg_sql, *params)]
        finally:
            await connection.close()

    # Tests call this from inside their own event loop: run asyncpg in a loop of its own.
    return _pg_worker.submit(asyncio.run, run()).result(timeout=120)


TEST_LIMITS = {
    "BOARD_RATE_POSTS_PER_PARTICIPANT": "100000/minute",
    "BOARD_RATE_POSTS_PER_IP": "1000000/minute",
    "BOARD_RATE_JOINS_PER_IP": "1000000/minute",
}


class LiveServer:
    """A real server process; restartable on the same port and database.

    ``db_path`` is the SQLite file; with BOARD_TEST_DATABASE=postgresql the server gets a
    fresh PostgreSQL database instead (``database_url``), and ``db_path`` is unused. A given
    ``database_url`` overrides both."""

    def __init__(self, db_path: Path, log_path: Path, env: dict[str, str] | None = None,
                 log_level: str = "warning", database_url: str | None = None,
                 args: Sequence[str] = ()):
        self.log_level = log_level
        self.args = list(args)  # more `board serve` options (--workers, --pubsub…)
        self.db_path = db_path
        self.database_url = database_url or fresh_database_url(db_path)
        self.log_path = log_path
        self.port = free_port()
        # Tests post from one address faster than people do: generous limits unless a test
        # sets its own (tests/resilience and the rate-limit tests do).
        self.env = {**os.environ, **TEST_LIMITS, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (several servers starting together)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "board", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--database", self.database_url,
                 "--log-level", self.log_level, *self.args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer in {timeout:g} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def dispose(self) -> None:
        """Stop for good: a PostgreSQL database is dropped (a SQLite file stays for reading)."""
        self.stop()
        drop_database(self.database_url)

    @property
    def dialect(self) -> str:
        return TEST_DATABASE

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read (or write) the server's database directly, as the tests' own check."""
        return query_database(self.database_url, sql, *params)

    def integrity(self) -> list[str]:
        """["ok"] when the storage is sound: SQLite's integrity_check, or, on PostgreSQL,
        pg_amcheck over every table and index of the server's database."""
        if not ON_POSTGRESQL:
            return [row[0] for row in self.query("PRAGMA integrity_check")]
        where = urlsplit(self.database_url)
        result = subprocess.run(
            [str(postgres_bindir() / "pg_amcheck"), "--install-missing", "--heapallindexed",
             "-h", where.hostname or "127.0.0.1", "-p", str(where.port or 5432),
             "-U", where.username or PostgresCluster.USER, "-d", where.path.lstrip("/")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
        # Corruption is reported on stdout, with a non-zero exit status.
        if result.returncode == 0 and not result.stdout.strip():
            return ["ok"]
        return (result.stdout + result.stderr).strip().splitlines() or [
            f"pg_amcheck exit status {result.returncode}"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "board.db", tmp_path / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.dispose()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for a whole test module (tests there make their own boards)."""
    folder = tmp_path_factory.mktemp("module-server")
    live = LiveServer(folder / "board.db", folder / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.dispose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
