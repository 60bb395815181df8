"""`board bench`: many websocket subscribers on one board, a few posters at a fixed rate.

Every latency is measured in this process with ``time.perf_counter()``: post -> HTTP ack, and
post -> the moment the last subscriber received the matching ``card.posted`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

API = "/api/v1"
BOARD_TITLE = "Bench"
BOARD_COLUMNS = ["Constats", "Enjeux", "Besoins"]
CONNECT_CONCURRENCY = 50  # participants joining / sockets opening at the same time
CLOSE_CONCURRENCY = 100
HTTP_MAX_CONNECTIONS = 100
# A load test is all from 127.0.0.1 and posts faster than any person: the server it starts
# gets limits raised out of the way (against --url, raise them on that server: README).
BENCH_LIMITS = {
    "BOARD_RATE_POSTS_PER_PARTICIPANT": "100000/minute",
    "BOARD_RATE_POSTS_PER_IP": "1000000/minute",
    "BOARD_RATE_JOINS_PER_IP": "1000000/minute",
    "BOARD_MAX_WS_PER_IP": "100000",
}
HTTP_TIMEOUT = 10.0
WS_OPEN_TIMEOUT = 30.0
WS_CLOSE_TIMEOUT = 5.0
WS_MAX_SIZE = 2**20
SETTLE_DELAY = 0.5  # between "all sockets open" and the first post
DRAIN_TIMEOUT = 10.0  # after the last ack, how long a post may take to reach every subscriber
HEALTH_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
PERCENTILES = (50, 95, 99)

T = TypeVar("T")


# --------------------------------------------------------------------------- pure helpers


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be between 0 and 100, got {q!r}")
    if not values:
        return None
    return _percentile_sorted(sorted(values), q)


def _percentile_sorted(ordered: Sequence[float], q: float) -> float:
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Iterable[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """count/min/mean/p50/p95/p99/max of values times scale (1000: seconds -> ms).

    An empty input gives count 0 and None everywhere else.
    """
    ordered = sorted(v * scale for v in values)
    keys = ["min", "mean", *(f"p{q}" for q in PERCENTILES), "max"]
    if not ordered:
        return {"count": 0, **dict.fromkeys(keys)}
    stats: dict[str, float | int | None] = {
        "count": len(ordered),
        "min": ordered[0],
        "mean": sum(ordered) / len(ordered),
    }
    for q in PERCENTILES:
        stats[f"p{q}"] = _percentile_sorted(ordered, q)
    stats["max"] = ordered[-1]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}


def post_offsets(rate: float, duration: float) -> list[float]:
    """Open-loop schedule: when (seconds after the start) each post is sent."""
    if rate <= 0 or duration <= 0:
        return []
    count = max(1, round(rate * duration))
    return [i / rate for i in range(count)]


def error_code(status: int, body: Any) -> str:
    """The server's `{"error": {"code"}}` code, else `http_<status>`."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str) and err["code"]:
            return str(err["code"])
    return f"http_{status}"


def exception_kind(exc: BaseException) -> str:
    """A short, countable name for a failure (timeout, EMFILE, http_403, ReadError...)."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        try:
            body = json.loads(exc.response.body or b"null")
        except ValueError:
            body = None
        return error_code(status, body)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    # httpx wraps the OSError (EMFILE, ECONNREFUSED...) that tells the most.
    cause: BaseException | None = exc
    for _ in range(10):  # a bounded walk: exception chains can loop
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno is not None:
            return errno.errorcode.get(cause.errno, f"errno_{cause.errno}")
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def ws_events_url(base_url: str, join_code: str, since: int | None) -> str:
    """ws(s)://host/api/v1/boards/<code>/events[?since=N] from the server's http(s) base URL."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    else:
        raise ValueError(f"server URL must start with http:// or https://, got {base_url!r}")
    url = f"{base}{API}/boards/{join_code}/events"
    return url if since is None else f"{url}?since={since}"


def _fmt_ms(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def _fmt_latency(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "n/a (no samples)"
    return (
        f"p50 {_fmt_ms(stats['p50'])}   p95 {_fmt_ms(stats['p95'])}   "
        f"p99 {_fmt_ms(stats['p99'])}   (max {_fmt_ms(stats['max'])}, n={stats['count']})"
    )


def _fmt_rate(value: float | None, unit: str) -> str:
    return f"n/a {unit}" if value is None else f"{value:,.1f} {unit}"


def format_report(result: dict[str, Any]) -> str:
    """The human report for a result dict as built by the bench (see --json for the keys)."""
    cfg = result["config"]
    srv = result["server"]
    subs = result["subscribers"]
    posts = result["posts"]
    dlv = result["delivery"]
    origin = "started by bench" if srv.get("started") else "already running"
    lines = [
        f"Atelier board bench: {srv['url']} ({origin})",
        f"  load          {subs['requested']} subscribers, {cfg['posters']} posters, "
        f"{cfg['rate']:g} posts/s for {cfg['duration']:g} s "
        f"(client: {cfg['event_loop']}, RLIMIT_NOFILE {cfg['nofile_limit']})",
        f"  subscribers   {subs['connected']}/{subs['requested']} connected in "
        f"{subs['connect_s']:.2f} s (participants joined in {subs['join_s']:.2f} s; "
        f"per socket p50 {_fmt_ms(subs['connect_ms']['p50'])}, "
        f"p99 {_fmt_ms(subs['connect_ms']['p99'])}); dropped during run: {subs['dropped']}",
        f"  posts         {posts['attempted']} attempted, {posts['acknowledged']} acknowledged, "
        f"{posts['errors']} errors; {_fmt_rate(posts['ack_per_s'], 'acknowledged posts/s')}",
        f"  post -> ack             {_fmt_latency(result['post_ack_ms'])}",
        f"  post -> last subscriber {_fmt_latency(result['post_last_subscriber_ms'])}",
        f"  deliveries    {dlv['deliveries']:,} card.posted frames over {dlv['span_s']:.2f} s = "
        f"{_fmt_rate(dlv['deliveries_per_s'], 'deliveries/s')} "
        f"(expected {dlv['expected']:,}); undelivered posts: {dlv['undelivered_posts']}"
        + (f" {dlv['undelivered_sample']}" if dlv["undelivered_posts"] else "")
        + f"; duplicates: {dlv['duplicates']}",
        f"  send lag      p99 {_fmt_ms(posts['send_lag_ms']['p99'])}, "
        f"max {_fmt_ms(posts['send_lag_ms']['max'])} behind the open-loop schedule",
    ]
    cpu = result.get("cpu") or {}
    if cpu:
        parts = [f"bench {cpu['bench_pct']:.0f}%"]
        if cpu.get("server_pct") is not None:
            parts.append(f"server {cpu['server_pct']:.0f}%")
        text = f"{', '.join(parts)} of one core"
        if cpu.get("machine_busy_pct") is not None:
            text += f"; whole machine {cpu['machine_busy_pct']:.0f}% busy ({cpu['cores']} cores)"
        lines.append(f"  cpu           {text}, during the posting phase")
    errors = result["errors"]
    if errors:
        listed = ", ".join(f"{kind} x{count}" for kind, count in errors.items())
        lines.append(f"  errors        {listed}")
    else:
        lines.append("  errors        none")
    if srv.get("stop"):
        lines.append(f"  server stop   {srv['stop']}")
    if srv.get("log_problems"):
        lines.append(f"  server log    {srv['log_problems']} error/traceback lines; last ones:")
        lines.extend(f"    | {line}" for line in srv.get("log_tail", []))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Post:
    index: int
    text: str
    client_id: str
    offset: float
    seen: bytearray
    t_send: float | None = None
    t_ack: float | None = None
    lag: float = 0.0
    card_id: int | None = None
    error: str | None = None
    received: int = 0
    t_last: float | None = None


@dataclass(slots=True)
class Config:
    url: str
    subscribers: int
    posters: int
    rate: float
    duration: float
    server_pid: int | None = None
    started_server: bool = False
    nofile_limit: int = 0
    event_loop: str = "asyncio"


@dataclass
class Bench:
    cfg: Config
    errors: Counter[str] = field(default_factory=Counter)
    by_id: dict[int, Post] = field(default_factory=dict)
    by_text: dict[str, Post] = field(default_factory=dict)
    sockets: dict[int, ClientConnection] = field(default_factory=dict)
    listeners: list[asyncio.Task[None]] = field(default_factory=list)
    target: int = 0  # subscribers that must see each post
    deliveries: int = 0
    duplicates: int = 0
    foreign: int = 0
    dropped: int = 0
    first_send: float | None = None
    last_delivery: float | None = None
    closing: bool = False
    all_delivered: asyncio.Event = field(default_factory=asyncio.Event)
    pending: set[int] = field(default_factory=set)  # acked posts not yet seen by everyone

    def url(self, path: str) -> str:
        return f"{self.cfg.url.rstrip('/')}{API}{path}"

    async def _json(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        what: str,
        token: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Any:
        """One setup request; raises click.ClickException with what went wrong."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            resp = await client.request(method, self.url(path), json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"{what}: {method} {self.url(path)} failed: {exception_kind(exc)} ({exc!r})"
            ) from exc
        if not resp.is_success:
            raise click.ClickException(
                f"{what}: {method} {self.url(path)} answered {resp.status_code} "
                f"({error_code(resp.status_code, _json_or_none(resp))}): {resp.text[:300]}"
            )
        try:
            return resp.json()
        except ValueError as exc:
            raise click.ClickException(
                f"{what}: {method} {self.url(path)} answered non-JSON: {resp.text[:300]!r}"
            ) from exc

    async def _join(self, client: httpx.AsyncClient, code: str, name: str) -> str | None:
        try:
            resp = await client.post(self.url(f"/boards/{code}/participants"), json={"name": name})
        except httpx.HTTPError as exc:
            self.errors[f"join:{exception_kind(exc)}"] += 1
            return None
        if not resp.is_success:
            self.errors[f"join:{error_code(resp.status_code, _json_or_none(resp))}"] += 1
            return None
        try:
            token = resp.json()["token"]
        except (ValueError, KeyError, TypeError):
            self.errors["join:bad_response"] += 1
            return None
        return str(token)

    async def _open(self, idx: int, uri: str, token: str, latencies: list[float]) -> None:
        t0 = time.perf_counter()
        try:
            ws = await connect(
                uri,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
                max_size=WS_MAX_SIZE,
                open_timeout=WS_OPEN_TIMEOUT,
                close_timeout=WS_CLOSE_TIMEOUT,
                ping_interval=None,
                proxy=None,
            )
        except Exception as exc:  # every failure is counted by kind
            self.errors[f"connect:{exception_kind(exc)}"] += 1
            return
        latencies.append(time.perf_counter() - t0)
        self.sockets[idx] = ws
        self.listeners.append(asyncio.create_task(self._listen(idx, ws)))

    async def _listen(self, idx: int, ws: ClientConnection) -> None:
        # Hot loop: 1,000 of these run at once; keep the per-frame work small.
        by_id, by_text, loads, clock = self.by_id, self.by_text, json.loads, time.perf_counter
        try:
            async for raw in ws:
                if not isinstance(raw, str) or "card.posted" not in raw:
                    continue  # presence, snapshot and other events
                now = clock()
                try:
                    frame = loads(raw)
                except ValueError:
                    self.errors["ws:bad_json"] += 1
                    continue
                if not isinstance(frame, dict) or frame.get("type") != "card.posted":
                    continue
                data = frame.get("data")
                if not isinstance(data, dict):
                    self.errors["ws:bad_frame"] += 1
                    continue
                post = by_id.get(data.get("id", -1)) or by_text.get(data.get("text", ""))
                if post is None:
                    self.foreign += 1
                    continue
                if post.seen[idx]:
                    self.duplicates += 1
                    continue
                post.seen[idx] = 1
                post.received += 1
                self.deliveries += 1
                self.last_delivery = now
                if post.received == self.target:
                    post.t_last = now
                    self._delivered(post)
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.errors[f"ws:{exception_kind(exc)}"] += 1
        if not self.closing:
            self.dropped += 1
            code = ws.close_code
            self.errors[f"ws_closed:{'abnormal' if code is None else code}"] += 1
            self.sockets.pop(idx, None)

    def _delivered(self, post: Post) -> None:
        self.pending.discard(post.index)
        if not self.pending:
            self.all_delivered.set()

    async def _post(
        self, client: httpx.AsyncClient, code: str, post: Post, token: str, column_id: int
    ) -> None:
        payload = {"column_id": column_id, "text": post.text, "client_id": post.client_id}
        headers = {"Authorization": f"Bearer {token}"}
        url = self.url(f"/boards/{code}/cards")
        post.t_send = time.perf_counter()
        try:
            resp = await client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            post.error = f"post:{exception_kind(exc)}"
            return
        t_ack = time.perf_counter()
        if not resp.is_success:
            post.error = f"post:{error_code(resp.status_code, _json_or_none(resp))}"
            return
        try:
            card_id = resp.json()["id"]
        except (ValueError, KeyError, TypeError):
            post.error = "post:bad_response"
            return
        post.t_ack = t_ack
        post.card_id = card_id
        self.by_id[card_id] = post
        if post.t_last is None and self.target > 0:
            self.pending.add(post.index)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        limits = httpx.Limits(max_connections=HTTP_MAX_CONNECTIONS)
        async with httpx.AsyncClient(
            limits=limits, timeout=HTTP_TIMEOUT, trust_env=False
        ) as client:
            health = await self._json(client, "GET", "/health", "health check")
            if not isinstance(health, dict) or health.get("status") != "ok":
                raise click.ClickException(f"health check: unexpected answer {health!r}")
            board = await self._json(
                client,
                "POST",
                "/boards",
                "creating the bench board",
                payload={"title": BOARD_TITLE, "columns": BOARD_COLUMNS},
            )
            try:
                code = str(board["join_code"])
                column_ids = [int(c["id"]) for c in board["columns"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise click.ClickException(
                    f"creating the bench board: odd answer {board!r}"
                ) from exc
            if not column_ids:
                raise click.ClickException("creating the bench board: it has no columns")

            _progress(f"board {code}: {cfg.subscribers} subscribers + {cfg.posters} posters join")
            t0 = time.perf_counter()
            names = [f"sub-{i}" for i in range(cfg.subscribers)]
            names += [f"poster-{i}" for i in range(cfg.posters)]
            tokens = await _bounded(
                CONNECT_CONCURRENCY, [self._join(client, code, name) for name in names]
            )
            join_s = time.perf_counter() - t0
            sub_tokens = tokens[: cfg.subscribers]
            poster_tokens = [t for t in tokens[cfg.subscribers :] if t]
            if not poster_tokens:
                raise click.ClickException(
                    f"no poster could join the board (errors: {dict(self.errors)})"
                )

            since: int | None = None
            with contextlib.suppress(click.ClickException):
                state = await self._json(client, "GET", f"/boards/{code}", "reading board seq")
                if isinstance(state, dict) and isinstance(state.get("seq"), int):
                    since = state["seq"]
            if since is None:
                _progress("could not read the board's seq; subscribing without ?since=")
            uri = ws_events_url(cfg.url, code, since)

            n_open = sum(1 for t in sub_tokens if t)
            _progress(f"opening {n_open} websockets ({CONNECT_CONCURRENCY} at a time)")
            connect_latencies: list[float] = []
            t0 = time.perf_counter()
            await _bounded(
                CONNECT_CONCURRENCY,
                [
                    self._open(i, uri, token, connect_latencies)
                    for i, token in enumerate(sub_tokens)
                    if token
                ],
            )
            connect_s = time.perf_counter() - t0
            try:
                await asyncio.sleep(SETTLE_DELAY)
                self.target = len(self.sockets)
                target_at_start = self.target
                _progress(
                    f"{self.target}/{cfg.subscribers} subscribers connected in {connect_s:.2f} s;"
                    f" posting {cfg.rate:g}/s for {cfg.duration:g} s"
                )
                # Setup garbage (1,000 sockets) out of the collector's way: a full collection
                # here would show up as latency that the server never caused.
                gc.collect()
                gc.freeze()
                posts, post_s, cpu = await self._post_phase(client, code, poster_tokens, column_ids)
                _progress("draining")
                await self._drain()
            finally:
                gc.unfreeze()
                await self._close_all()

        return self._result(
            posts=posts,
            post_s=post_s,
            join_s=join_s,
            connect_s=connect_s,
            connect_latencies=connect_latencies,
            target=target_at_start,
            cpu=cpu,
        )

    async def _post_phase(
        self,
        client: httpx.AsyncClient,
        code: str,
        poster_tokens: list[str],
        column_ids: list[int],
    ) -> tuple[list[Post], float, dict[str, Any]]:
        cfg = self.cfg
        run_id = uuid.uuid4().hex[:8]
        posts = [
            Post(
                index=i,
                text=f"bench {run_id} {i} {uuid.uuid4()}",
                client_id=str(uuid.uuid4()),
                offset=offset,
                seen=bytearray(cfg.subscribers),
            )
            for i, offset in enumerate(post_offsets(cfg.rate, cfg.duration))
        ]
        for post in posts:
            self.by_text[post.text] = post
        tasks: list[asyncio.Task[None]] = []
        cpu0 = _cpu_sample(cfg.server_pid)
        start = time.perf_counter()
        self.first_send = start
        for post in posts:
            due = start + post.offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            post.lag = max(0.0, time.perf_counter() - due)
            token = poster_tokens[post.index % len(poster_tokens)]
            column_id = column_ids[post.index % len(column_ids)]
            tasks.append(asyncio.create_task(self._post(client, code, post, token, column_id)))
        if tasks:
            _done, not_done = await asyncio.wait(tasks, timeout=HTTP_TIMEOUT * 3)
            for task in not_done:
                task.cancel()
            for post, task in zip(posts, tasks, strict=True):
                if task in not_done:
                    post.error = "post:client_timeout"
        post_s = time.perf_counter() - start
        cpu = cpu_usage(cpu0, _cpu_sample(cfg.server_pid), post_s)
        return posts, post_s, cpu

    async def _drain(self) -> None:
        self.all_delivered.clear()
        if self.target == 0 or not self.pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_delivered.wait(), DRAIN_TIMEOUT)

    async def _close_all(self) -> None:
        self.closing = True
        sockets = list(self.sockets.values())
        if sockets:
            _progress(f"closing {len(sockets)} websockets")

        async def close(ws: ClientConnection) -> None:
            try:
                await asyncio.wait_for(ws.close(), WS_CLOSE_TIMEOUT + 1)
            except Exception as exc:
                self.errors[f"close:{exception_kind(exc)}"] += 1

        await _bounded(CLOSE_CONCURRENCY, [close(ws) for ws in sockets])
        for task in self.listeners:
            task.cancel()
        if self.listeners:
            await asyncio.wait(self.listeners, timeout=WS_CLOSE_TIMEOUT)

    def _result(
        self,
        *,
        posts: list[Post],
        post_s: float,
        join_s: float,
        connect_s: float,
        connect_latencies: list[float],
        target: int,
        cpu: dict[str, Any],
    ) -> dict[str, Any]:
        cfg = self.cfg
        acked = [p for p in posts if p.t_ack is not None]
        for p in posts:
            if p.error:
                self.errors[p.error] += 1
        first = self.first_send
        last_ack = max((p.t_ack for p in acked if p.t_ack is not None), default=None)
        # Rates are over at least the scheduled duration: N posts at R/s span (N-1)/R seconds.
        ack_span = (
            max(last_ack - first, cfg.duration)
            if first is not None and last_ack is not None
            else None
        )
        undelivered = [p for p in acked if p.t_last is None] if target else []
        span = (
            max(self.last_delivery - first, cfg.duration)
            if first is not None and self.last_delivery is not None
            else 0.0
        )
        return {
            "config": {
                "subscribers": cfg.subscribers,
                "posters": cfg.posters,
                "rate": cfg.rate,
                "duration": cfg.duration,
                "event_loop": cfg.event_loop,
                "nofile_limit": cfg.nofile_limit,
            },
            "server": {"url": cfg.url, "started": cfg.started_server},
            "subscribers": {
                "requested": cfg.subscribers,
                "connected": target,
                "join_s": round(join_s, 3),
                "connect_s": round(connect_s, 3),
                "connect_ms": summarize(connect_latencies, 1000),
                "dropped": self.dropped,
            },
            "posts": {
                "attempted": len(posts),
                "acknowledged": len(acked),
                "errors": sum(1 for p in posts if p.error),
                "ack_per_s": round(len(acked) / ack_span, 2) if ack_span else None,
                "phase_s": round(post_s, 3),
                "send_lag_ms": summarize((p.lag for p in posts), 1000),
            },
            "post_ack_ms": summarize(
                (p.t_ack - p.t_send for p in acked if p.t_ack is not None and p.t_send is not None),
                1000,
            ),
            "post_last_subscriber_ms": summarize(
                (
                    p.t_last - p.t_send
                    for p in acked
                    if p.t_last is not None and p.t_send is not None
                ),
                1000,
            ),
            "delivery": {
                "expected": len(acked) * target,
                "deliveries": self.deliveries,
                "span_s": round(span, 3),
                "deliveries_per_s": round(self.deliveries / span, 1) if span > 0 else None,
                "undelivered_posts": len(undelivered),
                "undelivered_sample": [
                    f"card {p.card_id}: {p.received}/{target}" for p in undelivered[:5]
                ],
                "duplicates": self.duplicates,
                "foreign_frames": self.foreign,
                "drain_timeout_s": DRAIN_TIMEOUT,
            },
            "cpu": cpu,
            "errors": dict(sorted(self.errors.items())),
        }


async def _bounded(limit: int, coros: Sequence[Awaitable[T]]) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with sem:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _progress(message: str) -> None:
    click.echo(f"[bench] {message}", err=True)


@dataclass(frozen=True, slots=True)
class CpuSample:
    bench: float  # CPU seconds of this process
    server: float | None  # of the server we started (from /proc)
    machine_busy: int | None  # jiffies of all cores (from /proc/stat): others' load skews us
    machine_total: int | None


def _cpu_sample(server_pid: int | None) -> CpuSample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    server: float | None = None
    if server_pid is not None:
        try:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            server = None
    busy: int | None = None
    total: int | None = None
    try:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        total = sum(jiffies)
        busy = total - jiffies[3] - jiffies[4]  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        busy = total = None
    return CpuSample(usage.ru_utime + usage.ru_stime, server, busy, total)


def cpu_usage(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, Any]:
    """Percent of one core for the bench and the server; percent of the whole machine busy."""
    if seconds <= 0:
        return {}
    server = None
    if before.server is not None and after.server is not None:
        server = round(100 * (after.server - before.server) / seconds, 1)
    machine = None
    if (
        before.machine_busy is not None
        and before.machine_total is not None
        and after.machine_busy is not None
        and after.machine_total is not None
        and after.machine_total > before.machine_total
    ):
        machine = round(
            100
            * (after.machine_busy - before.machine_busy)
            / (after.machine_total - before.machine_total),
            1,
        )
    return {
        "bench_pct": round(100 * (after.bench - before.bench) / seconds, 1),
        "server_pct": server,
        "machine_busy_pct": machine,
        "cores": os.cpu_count(),
    }


# --------------------------------------------------------------------------- process plumbing


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (a server we start inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            _progress(f"could not raise RLIMIT_NOFILE from {soft} to {wanted}: {exc}")
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    @classmethod
    def start(cls, workdir: Path) -> Server:
        port = free_port()
        cmd = [
            sys.executable, "-m", "board", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--database", f"sqlite:///{workdir / 'bench.db'}",
        ]  # fmt: skip
        stdout, stderr = workdir / "server.out", workdir / "server.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **BENCH_LIMITS}
        _progress(f"starting server: {' '.join(cmd)}")
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=Path(__file__).resolve().parent.parent,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops the server
            )
        return cls(proc=proc, url=f"http://127.0.0.1:{port}", stdout=stdout, stderr=stderr)

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    raise click.ClickException(
                        f"the server exited with code {code} before answering {API}/health.\n"
                        + self.stderr_tail()
                    )
                try:
                    resp = client.get(f"{self.url}{API}/health")
                    if resp.status_code == 200 and _json_or_none(resp) == {"status": "ok"}:
                        return
                    last = f"{resp.status_code} {resp.text[:200]!r}"
                except httpx.HTTPError as exc:
                    last = exception_kind(exc)
                time.sleep(0.2)
        raise click.ClickException(
            f"the server did not answer {self.url}{API}/health within {timeout:g} s "
            f"(last: {last}).\n" + self.stderr_tail()
        )

    def stderr_tail(self) -> str:
        lines = _tail(self.stderr) or _tail(self.stdout)
        if not lines:
            return "(the server printed nothing)"
        return "server stderr (last lines):\n" + "\n".join(f"  | {line}" for line in lines)

    def stop(self) -> str:
        if self.proc.poll() is not None:
            return f"server had already exited with code {self.proc.returncode}"
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = self.proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return f"did not exit within {SERVER_STOP_TIMEOUT:g} s of SIGTERM; killed"
        how = f"code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        return f"exited ({how}) {time.monotonic() - t0:.1f} s after SIGTERM"

    def log_problems(self) -> tuple[int, list[str]]:
        lines = _tail(self.stderr, 100_000) + _tail(self.stdout, 100_000)
        bad = [ln for ln in lines if "Traceback" in ln or "ERROR" in ln or "Exception" in ln]
        return len(bad), bad[-10:]


def _runner() -> tuple[asyncio.Runner, str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner(), "asyncio"
    return asyncio.Runner(loop_factory=uvloop.new_event_loop), "uvloop"


def run_bench(cfg: Config) -> dict[str, Any]:
    runner, cfg.event_loop = _runner()
    with runner:
        return runner.run(Bench(cfg).run())


@click.command("bench")
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Base URL of a running server, e.g. http://127.0.0.1:8000 "
    "(default: start one on a free port with a throw-away SQLite database).",
)
@click.option(
    "--subscribers",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Websocket subscribers on the board.",
)
@click.option(
    "--posters",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Participants that post.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Posts per second, all posters together (open loop).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of posting.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def bench(
    url: str | None, subscribers: int, posters: int, rate: float, duration: float, as_json: bool
) -> None:
    """Load-test a board: N websocket subscribers, M posters at a fixed rate."""
    nofile = raise_nofile_limit()
    needed = subscribers + posters + HTTP_MAX_CONNECTIONS + 64
    if url is None:
        needed += subscribers + posters + HTTP_MAX_CONNECTIONS  # the server's side, same limit
    if nofile < needed:
        _progress(f"warning: RLIMIT_NOFILE is {nofile}, about {needed} sockets may be needed")
    if url is not None and not url.startswith(("http://", "https://")):
        raise click.BadParameter("must start with http:// or https://", param_hint="--url")
    cfg = Config(
        url=url or "",
        subscribers=subscribers,
        posters=posters,
        rate=rate,
        duration=duration,
        nofile_limit=nofile,
    )
    if url is not None:
        result = run_bench(cfg)
    else:
        with tempfile.TemporaryDirectory(prefix="board-bench-") as tmp:
            server = Server.start(Path(tmp))
            stop = ""
            try:
                server.wait_healthy()
                cfg.url, cfg.server_pid, cfg.started_server = server.url, server.proc.pid, True
                result = run_bench(cfg)
            finally:
                stop = server.stop()
            problems, tail = server.log_problems()
            result["server"].update(stop=stop, log_problems=problems, log_tail=tail)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_report(result))
