"""Past one machine: several `board serve` instances on one PostgreSQL database, passing events
through a real redis-server (or PostgreSQL LISTEN/NOTIFY), as the README's deployment describes.

Each instance is a real process on its own port, so a test knows which worker a client talks
to: "A" takes the posts, "B" holds the subscribers. These tests always use PostgreSQL (the
session's cluster) and Redis, whatever BOARD_TEST_DATABASE says: they run in the SQLite pass of
`make test` only, not a second time in the PostgreSQL pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ON_POSTGRESQL, LiveServer, new_postgres_database, postgres_cluster
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

pytestmark = pytest.mark.skipif(
    ON_POSTGRESQL, reason="already run on PostgreSQL and Redis in the SQLite pass")


@pytest.fixture(scope="module")
def postgres() -> PostgresCluster:
    return postgres_cluster()


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
              workers: int = 1, env: dict[str, str] | None = None) -> Iterator[list[LiveServer]]:
    """`count` instances launched together on one database, each on its own port."""
    args = ["--workers", str(workers), *(["--pubsub", pubsub_url] if pubsub_url else [])]
    started = [LiveServer(tmp_path / "unused.db", tmp_path / f"serve-{i}.log", env=env,
                          log_level="info", database_url=database_url, args=args)
               for i in range(count)]
    try:
        for instance in started:
            instance.launch()
        for instance in started:
            instance.wait_ready(timeout=60)
        yield started
    finally:
        for instance in started:
            instance.stop()


@contextlib.asynccontextmanager
async def client(instance: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=instance.url, timeout=15) as http:
        yield http


async def wait_connected(instance: LiveServer, timeout: float = 30) -> None:
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
        tmp_path: Path, redis_server: RedisServer, engine: str) -> None:
    database = new_postgres_database()
    pubsub = redis_server.url if engine == "redis" else database
    with instances(tmp_path, database, pubsub) as (a, b):
        async with client(a) as http_a:
            health = (await http_a.get("/api/v1/health")).json()
            assert health["pubsub"] == engine and health["pubsub_connected"] is True
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
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Posted on A, replayed from B with ?since=: exactly the missed events, in order."""
    database = new_postgres_database()
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
        tmp_path: Path, redis_server: RedisServer) -> None:
    """redis-server is killed for 10 s while cards keep being posted on A: the subscriber on
    B gets every one of them, in order, once Redis is back (B catches up from the log)."""
    database = new_postgres_database()
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
    database = new_postgres_database()
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
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Three joins a minute per address: two on A and one on B fill the budget, the fourth is
    refused wherever it lands."""
    database = new_postgres_database()
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
    """Three instances launched together on an empty database: one migrates, the others find
    the schema up to date, all of them serve. (Their start-up staggers them: the barrier test
    below is the one that makes the upgrades truly collide.)"""
    database = new_postgres_database()
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


async def test_serve_with_two_workers(tmp_path: Path, redis_server: RedisServer) -> None:
    """`board serve --workers 2`: both workers answer, and a card reaches every subscriber
    whichever worker each socket landed on."""
    database = new_postgres_database()
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

    database = new_postgres_database()
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
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Two phones on A and one on B: both workers' screens say 3, and 2 once one leaves."""
    database = new_postgres_database()
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


def test_bench_measures_two_workers_on_postgresql_and_redis(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """The command behind the README's "PG + Redis" figures, with tiny numbers: `board bench`
    starts `board serve --workers 2` on PostgreSQL with Redis, and every post reaches every
    subscriber whichever worker holds its socket."""
    database = new_postgres_database()
    done = subprocess.run(
        [sys.executable, "-m", "board", "bench", "--subscribers", "6", "--posters", "2",
         "--rate", "5", "--duration", "1", "--database", database,
         "--pubsub", redis_server.url, "--workers", "2", "--json"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["errors"] == {}, result["errors"]
    assert result["posts"]["acknowledged"] == 5
    assert result["delivery"]["deliveries"] == result["delivery"]["expected"] == 5 * 6
    assert result["delivery"]["duplicates"] == 0
    assert result["server_memory"]["connections"] == 6
    assert result["server"]["log_problems"] == 0, result["server"]["log_tail"]


async def test_a_worker_without_sockets_of_the_board_still_counts_its_participants(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Both phones are on B: the board as read from A (dashboard, API) still says 2."""
    database = new_postgres_database()
    with instances(tmp_path, database, redis_server.url) as (a, b):
        async with client(a) as http_a:
            board = await create_board(http_a)
            code = board["join_code"]
            tokens = [await join(http_a, code) for _ in range(2)]
            async with (subscribe(b.ws_url, code, token=tokens[0]),
                        subscribe(b.ws_url, code, token=tokens[1])):
                seen = []
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    state = (await http_a.get(f"/api/v1/boards/{code}")).json()
                    seen.append(state["participants_connected"])
                    if seen[-1] == 2:
                        break
                    await asyncio.sleep(0.2)
                assert seen[-1] == 2, seen
