"""Past one machine: several `board serve` instances on one PostgreSQL database, passing events
through a real redis-server (or PostgreSQL LISTEN/NOTIFY), as the README's deployment describes.

Each instance is a real process on its own port, so a test knows which worker a client talks
to: "A" takes the posts, "B" holds the subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TEST_LIMITS, free_port
from tests.engines import PostgresCluster, RedisServer
from tests.integration.helpers import (
    create_board,
    events_until,
    join,
    next_event,
    post,
    quiet,
    subscribe,
)

_names = itertools.count(1)


class Instance:
    """One `board serve` process (one or several workers) on its own port."""

    def __init__(self, folder: Path, database_url: str, pubsub_url: str | None, *,
                 workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = folder / f"serve-{self.port}.log"
        argv = [sys.executable, "-m", "board", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--database", database_url,
                "--log-level", "info", "--workers", str(workers)]
        if pubsub_url:
            argv += ["--pubsub", pubsub_url]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **TEST_LIMITS, **(env or {})})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()[-3000:]}")
            try:
                response = httpx.get(f"{self.url}/api/v1/health", timeout=2)
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer in {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(tmp_path_factory.mktemp("pg-scale"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def instances(tmp_path: Path, database_url: str, pubsub_url: str | None, count: int = 2,
              **kwargs: Any) -> Iterator[list[Instance]]:
    started = [Instance(tmp_path, database_url, pubsub_url, **kwargs) for _ in range(count)]
    try:
        for instance in started:
            instance.wait_healthy()
        yield started
    finally:
        for instance in started:
            instance.stop()


def fresh_database(postgres: PostgresCluster) -> str:
    return postgres.create_database(f"scale_{os.getpid()}_{next(_names)}")


@contextlib.asynccontextmanager
async def client(instance: Instance) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=instance.url, timeout=15) as http:
        yield http


async def wait_connected(instance: Instance, timeout: float = 30) -> None:
    """Until the instance's pub/sub connection is up again (its health says so)."""
    deadline = time.monotonic() + timeout
    async with client(instance) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/api/v1/health")).json()["pubsub_connected"]:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"pub/sub did not reconnect:\n{instance.log()[-2000:]}")


@pytest.mark.parametrize("engine", ["redis", "postgresql"])
async def test_a_card_posted_on_one_worker_reaches_a_subscriber_on_another(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer,
        engine: str) -> None:
    database = fresh_database(postgres)
    pubsub = redis_server.url if engine == "redis" else database
    with instances(tmp_path, database, pubsub) as (a, b):
        health = a.wait_healthy()
        assert health["pubsub"] == engine and health["pubsub_connected"] is True
        async with client(a) as http_a:
            board = await create_board(http_a)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http_a, code, "Awa")
            async with (subscribe(b.ws_url, code, token=token) as ws_b,
                        subscribe(b.ws_url, code, query="view=projector&lang=fr") as screen_b):
                response = await post(http_a, code, token, column, "Un seul bus par jour", "x1")
                assert response.status_code == 201
                card = response.json()
                event = await next_event(ws_b)
                assert event == {"seq": card["seq"], "type": "card.posted", "data": card}
                shown = await next_event(screen_b)
                assert shown["seq"] == card["seq"] and "Un seul bus par jour" in shown["content"]
                assert await quiet(ws_b) == []


async def test_replay_by_seq_works_across_workers(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer) -> None:
    """Posted on A, replayed from B with ?since=: exactly the missed events, in order."""
    database = fresh_database(postgres)
    with instances(tmp_path, database, redis_server.url) as (a, b):
        async with client(a) as http_a, client(b) as http_b:
            board = await create_board(http_a)
            code, column = board["join_code"], board["columns"][1]["id"]
            token = await join(http_b, code)
            seqs = []
            for i in range(6):
                http = http_a if i % 2 == 0 else http_b  # both workers write
                response = await post(http, code, token, column, f"idée {i}", f"r{i}")
                assert response.status_code == 201
                seqs.append(response.json()["seq"])
            assert seqs == sorted(seqs) and len(set(seqs)) == 6
            async with subscribe(b.ws_url, code, since=seqs[2], token=token) as ws:
                replayed = await events_until(ws, 3)
                assert [e["seq"] for e in replayed] == seqs[3:]
                assert [e["data"]["text"] for e in replayed] == ["idée 3", "idée 4", "idée 5"]
                live = await post(http_a, code, token, column, "après", "r-live")
                assert (await next_event(ws))["seq"] == live.json()["seq"] == seqs[-1] + 1
                assert await quiet(ws) == []


async def test_a_redis_outage_of_ten_seconds_loses_no_event(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer) -> None:
    """redis-server is killed for 10 s while cards keep being posted on A: the subscriber on
    B gets every one of them, in order, once Redis is back (B catches up from the log)."""
    database = fresh_database(postgres)
    with instances(tmp_path, database, redis_server.url) as (a, b):
        async with client(a) as http_a:
            board = await create_board(http_a)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http_a, code)
            async with subscribe(b.ws_url, code, token=token) as ws:
                first = await post(http_a, code, token, column, "avant la coupure", "o0")
                assert (await next_event(ws))["seq"] == first.json()["seq"]
                redis_server.kill()
                posted = []
                outage_end = time.monotonic() + 10
                i = 0
                while time.monotonic() < outage_end:
                    i += 1
                    response = await post(http_a, code, token, column, f"pendant {i}", f"o{i}")
                    assert response.status_code == 201, response.text  # posting goes on
                    posted.append(response.json()["seq"])
                    await asyncio.sleep(0.5)
                redis_server.start()
                await wait_connected(b)
                after = await post(http_a, code, token, column, "après la coupure", "o-after")
                posted.append(after.json()["seq"])
                got = await events_until(ws, len(posted), timeout=30)
                assert [e["seq"] for e in got] == posted
                assert [e["data"]["text"] for e in got][-1] == "après la coupure"
                assert await quiet(ws) == []
    assert "reconnected; catching up from the event log" in b.log()


async def test_postgresql_hub_reconnects_and_catches_up(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    """B's LISTEN connection is terminated by the server; what A posts meanwhile still
    reaches B's subscriber, once B has listened again."""
    database = fresh_database(postgres)
    dbname = database.rsplit("/", 1)[1]
    with instances(tmp_path, database, database) as (a, b):
        async with client(a) as http_a:
            board = await create_board(http_a)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http_a, code)
            async with subscribe(b.ws_url, code, token=token) as ws:
                killed = postgres.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE application_name = 'atelier_board_hub' AND datname = '{dbname}'",
                    dbname="postgres")
                assert int(killed.strip()) >= 2  # A's and B's listeners at least
                posted = []
                for i in range(5):
                    response = await post(http_a, code, token, column, f"carte {i}", f"p{i}")
                    assert response.status_code == 201
                    posted.append(response.json()["seq"])
                await wait_connected(b)
                got = await events_until(ws, len(posted), timeout=30)
                assert [e["seq"] for e in got] == posted
                assert await quiet(ws) == []


async def test_rate_limits_are_shared_through_redis(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer) -> None:
    """Three joins a minute per address: two on A and one on B fill the budget, the fourth is
    refused wherever it lands."""
    database = fresh_database(postgres)
    limits = {"BOARD_RATE_JOINS_PER_IP": "3/minute"}
    with instances(tmp_path, database, redis_server.url, env=limits) as (a, b):
        async with client(a) as http_a, client(b) as http_b:
            board = await create_board(http_a)
            code = board["join_code"]
            for http in (http_a, http_a, http_b):
                response = await http.post(f"/api/v1/boards/{code}/participants", json={})
                assert response.status_code == 201, response.text
            refused = await http_b.post(f"/api/v1/boards/{code}/participants", json={})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many"


async def test_migrations_run_once_when_workers_start_together(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer) -> None:
    """Three instances on an empty database at the same moment: one migrates, the others wait
    for it and find the schema up to date; all of them serve."""
    database = fresh_database(postgres)
    dbname = database.rsplit("/", 1)[1]
    with instances(tmp_path, database, redis_server.url, count=3) as started:
        versions = postgres.execute("SELECT version_num FROM alembic_version", dbname=dbname)
        assert len(versions.split()) == 1
        logs = "\n".join(instance.log() for instance in started)
        assert "Traceback" not in logs and "already exists" not in logs
        ran = [instance for instance in started
               if "database schema: migrating from empty" in instance.log()]
        assert len(ran) == 1, logs[-3000:]
        async with client(started[2]) as http:
            board = await create_board(http)
            assert board["join_code"]


async def test_serve_with_two_workers(tmp_path: Path, postgres: PostgresCluster,
                                      redis_server: RedisServer) -> None:
    """`board serve --workers 2`: both workers answer, and a card reaches every subscriber
    whichever worker each socket landed on."""
    database = fresh_database(postgres)
    with instances(tmp_path, database, redis_server.url, count=1, workers=2) as (server,):
        async with client(server) as http:
            pids: set[int] = set()
            deadline = time.monotonic() + 30
            while len(pids) < 2 and time.monotonic() < deadline:
                # A new connection each time, so the kernel may hand it to either worker.
                async with client(server) as fresh:
                    pids.add((await fresh.get("/api/v1/health")).json()["worker"])
            assert len(pids) == 2, "only one worker ever answered"
            board = await create_board(http)
            code, column = board["join_code"], board["columns"][0]["id"]
            token = await join(http, code)
            async with contextlib.AsyncExitStack() as stack:
                sockets = [await stack.enter_async_context(subscribe(server.ws_url, code,
                                                                     token=token))
                           for _ in range(8)]
                response = await post(http, code, token, column, "Deux workers", "w1")
                seq = response.json()["seq"]
                for ws in sockets:
                    assert (await next_event(ws))["seq"] == seq
    assert server.log().count("database schema: migrating from empty") == 1


def _migrate_at_once(database_url: str, barrier: Any) -> str:
    """In a child process: everything imported, then wait for the others, then upgrade."""
    from board.migrate import upgrade

    barrier.wait(timeout=60)
    upgrade(database_url)
    return "ok"


def test_concurrent_upgrades_queue_on_the_lock(postgres: PostgresCluster) -> None:
    """Four processes released by one barrier call the same upgrade on an empty database:
    without the lock, concurrent CREATE TABLEs collide; with it, all four succeed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    database = fresh_database(postgres)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with ProcessPoolExecutor(4, mp_context=context) as pool:
            results = list(pool.map(_migrate_at_once, [database] * 4, [barrier] * 4))
    assert results == ["ok"] * 4
    dbname = database.rsplit("/", 1)[1]
    assert len(postgres.execute("SELECT version_num FROM alembic_version",
                                dbname=dbname).split()) == 1


async def presence_reaches(ws: Any, expected: int, timeout: float = 15) -> list[int]:
    """Presence counts received until one equals `expected` (raises if it never does)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        except TimeoutError:
            break
        if frame["type"] == "presence":
            seen.append(frame["data"]["participants"])
            if seen[-1] == expected:
                return seen
    raise AssertionError(f"presence never reached {expected}: {seen}")


async def test_presence_counts_participants_on_every_worker(
        tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer) -> None:
    """Two phones on A and one on B: both workers' screens say 3, and 2 once one leaves."""
    database = fresh_database(postgres)
    with instances(tmp_path, database, redis_server.url) as (a, b):
        async with client(a) as http_a:
            board = await create_board(http_a)
            code = board["join_code"]
            tokens = [await join(http_a, code) for _ in range(3)]
            async with (subscribe(a.ws_url, code, token=tokens[0]) as on_a,
                        subscribe(b.ws_url, code, token=tokens[2]) as on_b):
                async with subscribe(a.ws_url, code, token=tokens[1]):
                    await presence_reaches(on_b, 3)
                    await presence_reaches(on_a, 3)
                await presence_reaches(on_b, 2)
