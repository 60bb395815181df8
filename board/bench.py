"""`board bench`: many websocket subscribers on one board, a few posters at a fixed rate.

Every latency is measured in this process with ``time.perf_counter()``: post -> HTTP ack, and
post -> the moment the last subscriber received the matching ``card.posted`` frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import functools
import gc
import json
import math
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import click
import httpx

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
    if isinstance(exc, HandshakeRefused):
        try:
            refusal = json.loads(exc.body or b"null")
        except ValueError:
            refusal = None
        return error_code(exc.status, refusal)
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
    boards = cfg.get("boards", 1)
    per_board = f" on each of {boards} boards" if boards > 1 else ""
    extras = "".join([
        f", {subs.get('stalled', 0)} of them stalled" if cfg.get("stalled") else "",
        ", batched frames" if cfg.get("batch") else "",
    ])
    lines = [
        f"Atelier board bench: {srv['url']} ({origin})",
        f"  load          {cfg['subscribers']} subscribers, {cfg['posters']} posters, "
        f"{cfg['rate']:g} posts/s{per_board} for {cfg['duration']:g} s{extras} "
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
    ramp = result.get("ramp")
    if ramp:
        lines.insert(3, (
            f"  ramp          {ramp['participants']}/{ramp['requested']} participants arrived "
            f"(join + websocket + snapshot, {ramp['concurrency']} at a time) in {ramp['s']:.2f} s;"
            f" each {_fmt_latency(ramp['per_participant_ms'])}"))
    mem = result.get("server_memory")
    if mem and mem.get("per_connection_kb") is not None:
        lines.append(
            f"  server memory RSS {mem['rss_before_kb'] / 1024:.1f} MiB before the sockets, "
            f"{mem['rss_connected_kb'] / 1024:.1f} MiB with {mem['connections']:,} idle "
            f"= {mem['per_connection_kb']:.1f} KiB per connection; "
            f"{(mem['rss_end_kb'] or 0) / 1024:.1f} MiB after posting")
    if ramp and ramp.get("cpu"):
        lines.append(f"  cpu           {_fmt_cpu(ramp['cpu'])}, during the arrivals")
    cpu = result.get("cpu") or {}
    if cpu:
        lines.append(f"  cpu           {_fmt_cpu(cpu)}, during the posting phase")
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


# --------------------------------------------------------------------------- subscribers' client


class HandshakeRefused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class RawSocket(asyncio.Protocol):
    """A minimal websocket client: only what a subscriber needs (text frames, pings, the
    close handshake). A full client library costs tens of microseconds a frame; with thousands
    of subscribers on the same two cores, the bench would be measuring itself."""

    def __init__(self, request: bytes, on_text: Callable[[str], None] | None = None) -> None:
        self.request = request
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.upgraded = False
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.first: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.on_lost: Callable[[RawSocket], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            try:
                status = int(head.split(" ", 2)[1])
            except (IndexError, ValueError):
                status = 0
            if status != 101:
                if not self.opened.done():
                    self.opened.set_exception(HandshakeRefused(status, bytes(buf[end + 4:])))
                if self.transport is not None:
                    self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:  # a server never masks; be lenient anyway
                start += 4
            end = start + length
            if end > size:
                break
            self._frame(b0 & 0x80, b0 & 0x0F, bytes(buf[start:end]))
            pos = end
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (0x0, 0x1):  # continuation, text
            if not fin:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload = b"".join([*self.fragments, payload])
                self.fragments.clear()
            text = payload.decode()
            if not self.first.done():
                self.first.set_result(text)
            if self.on_text is not None:
                self.on_text(text)
        elif opcode == 0x8:  # close: answer it, then the server closes the TCP connection
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._send(0x8, payload[:2])
        elif opcode == 0x9:  # ping
            self._send(0xA, payload)

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or len(payload) > 125:
            return
        # Masked, as a client must; a zero key leaves the payload as it is.
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def pause(self) -> None:
        """Stop reading, as a phone whose page froze: what the server sends piles up."""
        if self.transport is not None:
            self.transport.pause_reading()

    async def close(self, within: float) -> None:
        if self.transport is None:
            return
        if not self.closed.done():
            self._send(0x8, (1000).to_bytes(2, "big"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), within)
        self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during the handshake"))
        if not self.first.done():
            self.first.set_exception(exc or ConnectionResetError("closed before a frame"))
            self.first.exception()  # nobody may be waiting for it: no "never retrieved" noise
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)


def json_post(netloc: str, path: str, payload: Any, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 POST of a JSON body, as bytes to write."""
    body = json.dumps(payload).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def read_answer(reader: asyncio.StreamReader, head: bytes) -> tuple[int, Any, bool]:
    """The status, JSON body (None if it is not JSON) and whether the server keeps the
    connection open, of the answer whose head (up to the blank line) was read."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {k.strip().lower(): v.strip()
              for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = fields.get("content-length")
    data = await (reader.readexactly(int(length)) if length is not None else reader.read())
    try:
        answer = json.loads(data or b"null")
    except ValueError:
        answer = None
    return status, answer, length is not None and fields.get("connection") != "close"


async def raw_post_json(url: str, payload: Any, within: float) -> tuple[int, Any]:
    """POST a JSON body on a connection of its own (as each phone has), for the join wave:
    httpx's pool costs more CPU per request than the server's join does, with hundreds at once."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    request = json_post(parts.netloc, parts.path, payload, {"Connection": "close"})
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port or (443 if secure else 80),
            ssl=ssl.create_default_context() if secure else None)
        try:
            writer.write(request)
            status, answer, _ = await read_answer(reader, await reader.readuntil(b"\r\n\r\n"))
        finally:
            writer.close()
    return status, answer


class KeepAlivePool:
    """POSTs of JSON on a few keep-alive HTTP/1.1 connections, one request at a time on each:
    the posting load, at a fraction of httpx's CPU (which, at hundreds of posts a second,
    took a core of the two this machine shares with the server)."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.slots = asyncio.Semaphore(size)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, payload: Any, headers: dict[str, str],
                        within: float) -> tuple[int, Any]:
        request = json_post(self.netloc, self.prefix + path, payload, headers)
        async with self.slots, asyncio.timeout(within):
            while True:
                reused = bool(self.idle)
                reader, writer = self.idle.pop() if reused else await asyncio.open_connection(
                    self.host, self.port,
                    ssl=ssl.create_default_context() if self.secure else None)
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                except (OSError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused:  # the server closed it while idle (keep-alive timeout): again
                        continue
                    raise
                except BaseException:
                    writer.close()
                    raise
                break
            try:
                status, answer, keep = await read_answer(reader, head)
            except BaseException:
                writer.close()
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
        return status, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def raw_connect(uri: str, token: str, within: float,
                      on_text: Callable[[str], None] | None = None) -> RawSocket:
    parts = urlsplit(uri)
    secure = parts.scheme == "wss"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        _transport, protocol = await loop.create_connection(
            lambda: RawSocket(request, on_text), host, port,
            ssl=ssl.create_default_context() if secure else None)
        try:
            await protocol.opened
        except BaseException:
            protocol.abort()
            raise
    return protocol


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Post:
    index: int
    text: str
    client_id: str
    offset: float
    seen: bytearray
    board: int = 0  # which of the bench boards it goes to
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
    subscribers: int  # per board
    posters: int  # per board
    rate: float  # per board
    duration: float
    server_pid: int | None = None
    started_server: bool = False
    nofile_limit: int = 0
    event_loop: str = "asyncio"
    boards: int = 1
    stalled: float = 0.0  # fraction of each board's subscribers that stop reading
    ramp: bool = False  # subscribers join one by one: HTTP join + socket + first snapshot
    batch: bool = False  # subscribe with ?batch=1 (frames may be JSON arrays of frames)
    concurrency: int = 50  # participants joining / sockets opening at the same time


@dataclass(slots=True)
class BenchBoard:
    index: int
    code: str
    column_ids: list[int]
    poster_tokens: list[str] = field(default_factory=list)
    since: int | None = None
    target: int = 0  # reading subscribers connected when posting started


@dataclass
class Bench:
    cfg: Config
    errors: Counter[str] = field(default_factory=Counter)
    by_id: dict[int, Post] = field(default_factory=dict)
    by_text: dict[str, Post] = field(default_factory=dict)
    sockets: dict[int, RawSocket] = field(default_factory=dict)
    stalled_sockets: dict[int, RawSocket] = field(default_factory=dict)
    targets: list[int] = field(default_factory=list)  # per board: who must see each post
    deliveries: int = 0
    duplicates: int = 0
    foreign: int = 0
    dropped: int = 0
    first_send: float | None = None
    last_delivery: float | None = None
    closing: bool = False
    all_delivered: asyncio.Event = field(default_factory=asyncio.Event)
    pending: set[int] = field(default_factory=set)  # acked posts not yet seen by everyone

    @property
    def target(self) -> int:
        return sum(self.targets)

    def url(self, path: str) -> str:
        return f"{self.cfg.url.rstrip('/')}{API}{path}"

    def ws_url(self, code: str, since: int | None) -> str:
        uri = ws_events_url(self.cfg.url, code, since)
        if self.cfg.batch:
            uri += ("&" if "?" in uri else "?") + "batch=1"
        return uri

    def board_of(self, idx: int) -> int:
        """Subscribers are numbered board after board."""
        return idx // max(1, self.cfg.subscribers)

    def is_stalled(self, idx: int) -> bool:
        """The last round(subscribers × stalled) subscribers of each board stop reading."""
        per_board = self.cfg.subscribers
        stalled = round(per_board * self.cfg.stalled)
        return stalled > 0 and idx % per_board >= per_board - stalled

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

    async def _join(self, code: str, name: str) -> str | None:
        """One participant joins, on a connection of its own as each phone has."""
        try:
            status, body = await raw_post_json(
                self.url(f"/boards/{code}/participants"), {"name": name}, HTTP_TIMEOUT)
        except Exception as exc:  # every failure is counted by kind
            self.errors[f"join:{exception_kind(exc)}"] += 1
            return None
        if not 200 <= status < 300:
            self.errors[f"join:{error_code(status, body)}"] += 1
            return None
        try:
            token = body["token"]
        except (KeyError, TypeError):
            self.errors["join:bad_response"] += 1
            return None
        return str(token)

    async def _connect(self, idx: int, uri: str, token: str) -> RawSocket | None:
        frame = functools.partial(self._frame, idx)
        try:
            return await raw_connect(uri, token, WS_OPEN_TIMEOUT,
                                     None if self.is_stalled(idx) else frame)
        except Exception as exc:  # every failure is counted by kind
            self.errors[f"connect:{exception_kind(exc)}"] += 1
            return None

    def _keep(self, idx: int, ws: RawSocket) -> None:
        if self.is_stalled(idx):
            # It stops reading: the server's frames pile up in the kernel, then in the server.
            ws.pause()
            self.stalled_sockets[idx] = ws
            return
        self.sockets[idx] = ws
        ws.on_lost = functools.partial(self._lost, idx)
        if ws.closed.done():
            self._lost(idx, ws)

    async def _open(self, idx: int, uri: str, token: str, latencies: list[float]) -> None:
        t0 = time.perf_counter()
        ws = await self._connect(idx, uri, token)
        if ws is None:
            return
        latencies.append(time.perf_counter() - t0)
        self._keep(idx, ws)

    async def _arrive(self, client: httpx.AsyncClient, idx: int, board: BenchBoard,
                      latencies: list[float]) -> None:
        """One participant arriving: HTTP join, socket, and the first frame (the snapshot)."""
        t0 = time.perf_counter()
        token = await self._join(board.code, f"sub-{idx}")
        if token is None:
            return
        ws = await self._connect(idx, self.ws_url(board.code, None), token)
        if ws is None:
            return
        try:
            first = await asyncio.wait_for(asyncio.shield(ws.first), WS_OPEN_TIMEOUT)
        except Exception as exc:
            self.errors[f"snapshot:{exception_kind(exc)}"] += 1
            ws.abort()
            return
        if '"snapshot"' not in first[:200]:
            self.errors["snapshot:not_first"] += 1
        latencies.append(time.perf_counter() - t0)
        self._keep(idx, ws)

    def _frame(self, idx: int, raw: str) -> None:
        # Hot path: called for every frame of every subscriber; keep the work small.
        if "card.posted" not in raw:
            return  # presence, snapshot and other events
        now = time.perf_counter()
        try:
            parsed = json.loads(raw)
        except ValueError:
            self.errors["ws:bad_json"] += 1
            return
        # ?batch=1: a JSON array of frames when several were waiting.
        frames = parsed if isinstance(parsed, list) else (parsed,)
        by_id, by_text, targets = self.by_id, self.by_text, self.targets
        for frame in frames:
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
            if post.received == targets[post.board]:
                post.t_last = now
                self._delivered(post)

    def _lost(self, idx: int, ws: RawSocket) -> None:
        if self.closing:
            return
        self.dropped += 1
        code = ws.close_code
        self.errors[f"ws_closed:{'abnormal' if code is None else code}"] += 1
        self.sockets.pop(idx, None)

    def _delivered(self, post: Post) -> None:
        self.pending.discard(post.index)
        if not self.pending:
            self.all_delivered.set()

    async def _post(
        self, pool: KeepAlivePool, code: str, post: Post, token: str, column_id: int,
    ) -> None:
        payload = {"column_id": column_id, "text": post.text, "client_id": post.client_id}
        headers = {"Authorization": f"Bearer {token}"}
        post.t_send = time.perf_counter()  # latency counts the wait for a free connection
        try:
            status, answer = await pool.post_json(
                f"{API}/boards/{code}/cards", payload, headers, HTTP_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            post.error = f"post:{exception_kind(exc)}"
            return
        t_ack = time.perf_counter()
        if not 200 <= status < 300:
            post.error = f"post:{error_code(status, answer)}"
            return
        try:
            card_id = answer["id"]
        except (KeyError, TypeError):
            post.error = "post:bad_response"
            return
        post.t_ack = t_ack
        post.card_id = card_id
        self.by_id[card_id] = post
        if post.t_last is None and self.targets[post.board] > 0:
            self.pending.add(post.index)

    async def _create_board(self, client: httpx.AsyncClient, index: int) -> BenchBoard:
        board = await self._json(
            client,
            "POST",
            "/boards",
            "creating the bench board",
            payload={"title": f"{BOARD_TITLE} {index + 1}" if index else BOARD_TITLE,
                     "columns": BOARD_COLUMNS},
        )
        try:
            code = str(board["join_code"])
            column_ids = [int(c["id"]) for c in board["columns"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise click.ClickException(f"creating the bench board: odd answer {board!r}") from exc
        if not column_ids:
            raise click.ClickException("creating the bench board: it has no columns")
        return BenchBoard(index=index, code=code, column_ids=column_ids)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        limits = httpx.Limits(max_connections=max(HTTP_MAX_CONNECTIONS, cfg.concurrency))
        async with httpx.AsyncClient(
            limits=limits, timeout=HTTP_TIMEOUT, trust_env=False
        ) as client:
            health = await self._json(client, "GET", "/health", "health check")
            if not isinstance(health, dict) or health.get("status") != "ok":
                raise click.ClickException(f"health check: unexpected answer {health!r}")
            boards = [await self._create_board(client, i) for i in range(cfg.boards)]
            self.targets = [0] * len(boards)
            total = cfg.subscribers * len(boards)
            codes = " ".join(b.code for b in boards)
            who = f"{cfg.posters} posters" if cfg.ramp else (
                f"{cfg.subscribers} subscribers + {cfg.posters} posters")
            _progress(f"board(s) {codes}: {who} join (each board)")
            t0 = time.perf_counter()
            sub_names = [] if cfg.ramp else [
                (b, f"sub-{i}") for b in boards for i in range(cfg.subscribers)]
            poster_names = [(b, f"poster-{i}") for b in boards for i in range(cfg.posters)]
            tokens = await _bounded(
                cfg.concurrency,
                [self._join(b.code, name) for b, name in sub_names + poster_names],
            )
            join_s = time.perf_counter() - t0
            sub_tokens = tokens[: len(sub_names)]
            for (b, _name), token in zip(poster_names, tokens[len(sub_names):], strict=True):
                if token:
                    b.poster_tokens.append(token)
            if not all(b.poster_tokens for b in boards):
                raise click.ClickException(
                    f"no poster could join a board (errors: {dict(self.errors)})"
                )

            for b in boards:
                with contextlib.suppress(click.ClickException):
                    state = await self._json(client, "GET", f"/boards/{b.code}",
                                             "reading board seq")
                    if isinstance(state, dict) and isinstance(state.get("seq"), int):
                        b.since = state["seq"]
                if b.since is None and not cfg.ramp:
                    _progress("could not read the board's seq; subscribing without ?since=")

            rss_before = _rss_kb(cfg.server_pid)
            connect_latencies: list[float] = []
            ramp_latencies: list[float] = []
            cpu_connect0 = _cpu_sample(cfg.server_pid)
            t0 = time.perf_counter()
            if cfg.ramp:
                _progress(f"{total} participants arrive: join + websocket + snapshot "
                          f"({cfg.concurrency} at a time)")
                await _bounded(
                    cfg.concurrency,
                    [self._arrive(client, i, boards[self.board_of(i)], ramp_latencies)
                     for i in range(total)],
                )
            else:
                n_open = sum(1 for t in sub_tokens if t)
                _progress(f"opening {n_open} websockets ({cfg.concurrency} at a time)")
                await _bounded(
                    cfg.concurrency,
                    [
                        self._open(i, self.ws_url(boards[self.board_of(i)].code,
                                                  boards[self.board_of(i)].since),
                                   token, connect_latencies)
                        for i, token in enumerate(sub_tokens)
                        if token
                    ],
                )
            connect_s = time.perf_counter() - t0
            connect_cpu = cpu_usage(cpu_connect0, _cpu_sample(cfg.server_pid), connect_s)
            try:
                await asyncio.sleep(SETTLE_DELAY)
                rss_after = _rss_kb(cfg.server_pid)
                for idx in self.sockets:
                    self.targets[self.board_of(idx)] += 1
                for b in boards:
                    b.target = self.targets[b.index]
                target_at_start = self.target
                _progress(
                    f"{target_at_start + len(self.stalled_sockets)}/{total} subscribers "
                    f"connected in {connect_s:.2f} s ({len(self.stalled_sockets)} stalled);"
                    f" posting {cfg.rate:g}/s per board for {cfg.duration:g} s"
                )
                # Setup garbage (1,000 sockets) out of the collector's way: a full collection
                # here would show up as latency that the server never caused.
                gc.collect()
                gc.freeze()
                posts, post_s, cpu = await self._post_phase(boards)
                _progress("draining")
                await self._drain()
                rss_end = _rss_kb(cfg.server_pid)
            finally:
                gc.unfreeze()
                await self._close_all()

        result = self._result(
            posts=posts,
            post_s=post_s,
            join_s=join_s,
            connect_s=connect_s,
            connect_latencies=connect_latencies or ramp_latencies,
            target=target_at_start,
            cpu=cpu,
        )
        connections = target_at_start + len(self.stalled_sockets)
        result["ramp"] = {
            "participants": len(ramp_latencies),
            "requested": total,
            "s": round(connect_s, 3),
            "per_participant_ms": summarize(ramp_latencies, 1000),
            "concurrency": cfg.concurrency,
            "cpu": connect_cpu,
        } if cfg.ramp else None
        result["server_memory"] = {
            "rss_before_kb": rss_before,
            "rss_connected_kb": rss_after,
            "rss_end_kb": rss_end,
            "connections": connections,
            "per_connection_kb": round((rss_after - rss_before) / connections, 2)
            if connections and rss_after is not None and rss_before is not None else None,
        } if rss_before is not None else None
        result["boards"] = [
            {"code": b.code, "subscribers": b.target, "posters": len(b.poster_tokens)}
            for b in boards
        ]
        return result

    async def _post_phase(
        self, boards: list[BenchBoard]
    ) -> tuple[list[Post], float, dict[str, Any]]:
        cfg = self.cfg
        run_id = uuid.uuid4().hex[:8]
        total = cfg.subscribers * len(boards)
        schedule = sorted(
            (offset, b.index) for b in boards for offset in post_offsets(cfg.rate, cfg.duration)
        )
        posts = [
            Post(
                index=i,
                text=f"bench {run_id} {i} {uuid.uuid4()}",
                client_id=str(uuid.uuid4()),
                offset=offset,
                seen=bytearray(total),
                board=board,
            )
            for i, (offset, board) in enumerate(schedule)
        ]
        for post in posts:
            self.by_text[post.text] = post
        tasks: list[asyncio.Task[None]] = []
        per_board: Counter[int] = Counter()
        pool = KeepAlivePool(cfg.url, max(HTTP_MAX_CONNECTIONS, cfg.concurrency))
        cpu0 = _cpu_sample(cfg.server_pid)
        start = time.perf_counter()
        self.first_send = start
        for post in posts:
            due = start + post.offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            post.lag = max(0.0, time.perf_counter() - due)
            b = boards[post.board]
            nth = per_board[b.index]
            per_board[b.index] += 1
            token = b.poster_tokens[nth % len(b.poster_tokens)]
            column_id = b.column_ids[nth % len(b.column_ids)]
            tasks.append(asyncio.create_task(
                self._post(pool, b.code, post, token, column_id)))
        if tasks:
            _done, not_done = await asyncio.wait(tasks, timeout=HTTP_TIMEOUT * 3)
            for task in not_done:
                task.cancel()
            for post, task in zip(posts, tasks, strict=True):
                if task in not_done:
                    post.error = "post:client_timeout"
        pool.close()
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
        for ws in self.stalled_sockets.values():  # a socket that does not read cannot close
            ws.abort()
        sockets = list(self.sockets.values())
        if sockets:
            _progress(f"closing {len(sockets)} websockets")

        async def close(ws: RawSocket) -> None:
            try:
                await ws.close(WS_CLOSE_TIMEOUT)
            except Exception as exc:
                self.errors[f"close:{exception_kind(exc)}"] += 1

        await _bounded(CLOSE_CONCURRENCY, [close(ws) for ws in sockets])

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
        targets = self.targets
        undelivered = [p for p in acked if p.t_last is None and targets[p.board]]
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
                "boards": cfg.boards,
                "stalled": cfg.stalled,
                "ramp": cfg.ramp,
                "batch": cfg.batch,
                "concurrency": cfg.concurrency,
            },
            "server": {"url": cfg.url, "started": cfg.started_server},
            "subscribers": {
                "requested": cfg.subscribers * cfg.boards,
                "connected": target,
                "stalled": len(self.stalled_sockets),
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
                "expected": sum(targets[p.board] for p in acked),
                "deliveries": self.deliveries,
                "span_s": round(span, 3),
                "deliveries_per_s": round(self.deliveries / span, 1) if span > 0 else None,
                "undelivered_posts": len(undelivered),
                "undelivered_sample": [
                    f"card {p.card_id}: {p.received}/{targets[p.board]}" for p in undelivered[:5]
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


def _family(pid: int) -> list[int]:
    """The process and its descendants (the workers of `board serve --workers N`)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _rss_kb(pid: int | None) -> int | None:
    """Resident memory in KiB (VmRSS in /proc/<pid>/status) of a process and its workers."""
    if pid is None:
        return None
    total = 0
    try:
        for member in _family(pid):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total


def _fmt_cpu(cpu: dict[str, Any]) -> str:
    parts = [f"bench {cpu['bench_pct']:.0f}%"]
    if cpu.get("server_pct") is not None:
        parts.append(f"server {cpu['server_pct']:.0f}%")
    text = f"{', '.join(parts)} of one core"
    if cpu.get("machine_busy_pct") is not None:
        text += f"; whole machine {cpu['machine_busy_pct']:.0f}% busy ({cpu['cores']} cores)"
    return text


def _cpu_sample(server_pid: int | None) -> CpuSample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    server: float | None = None
    if server_pid is not None:
        try:
            ticks = 0
            for member in _family(server_pid):
                fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            server = ticks / os.sysconf("SC_CLK_TCK")
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
    def start(cls, workdir: Path, *, database_url: str | None = None,
              pubsub_url: str | None = None, workers: int = 1) -> Server:
        port = free_port()
        cmd = [
            sys.executable, "-m", "board", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--database", database_url or f"sqlite:///{workdir / 'bench.db'}",
            "--workers", str(workers),
        ]  # fmt: skip
        if pubsub_url:
            cmd += ["--pubsub", pubsub_url]
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
                    health = _json_or_none(resp)
                    if resp.status_code == 200 and isinstance(health, dict) and (
                            health.get("status") == "ok"):
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
@click.option(
    "--boards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Boards at once; --subscribers, --posters and --rate are per board.",
)
@click.option(
    "--stalled",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Fraction of each board's subscribers that stop reading once connected (0.025).",
)
@click.option(
    "--ramp",
    is_flag=True,
    help="Subscribers arrive as participants do (HTTP join, websocket, first snapshot) and "
    "the time for all of them is reported.",
)
@click.option(
    "--batch",
    is_flag=True,
    help="Subscribe with ?batch=1: several waiting frames come as one JSON array.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=CONNECT_CONCURRENCY,
    show_default=True,
    help="Participants joining / sockets opening at the same time.",
)
@click.option("--database", "database_url", default=None, metavar="URL",
              help="Database of the server it starts (default: a throw-away SQLite file); "
              "e.g. postgresql://… (emptied boards are left in it).")
@click.option("--pubsub", "pubsub_url", default=None, metavar="URL",
              help="BOARD_PUBSUB_URL of the server it starts, e.g. redis://127.0.0.1:6379/0.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes of the server it starts (memory and CPU are summed).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def bench(
    url: str | None, subscribers: int, posters: int, rate: float, duration: float,
    boards: int, stalled: float, ramp: bool, batch: bool, concurrency: int,
    database_url: str | None, pubsub_url: str | None, workers: int, as_json: bool
) -> None:
    """Load-test boards: N websocket subscribers, M posters at a fixed rate (per board)."""
    nofile = raise_nofile_limit()
    clients = (subscribers + posters) * boards
    needed = clients + max(HTTP_MAX_CONNECTIONS, concurrency) + 64
    if url is None:
        needed += clients + max(HTTP_MAX_CONNECTIONS, concurrency)  # the server's side
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
        boards=boards,
        stalled=stalled,
        ramp=ramp,
        batch=batch,
        concurrency=concurrency,
    )
    if url is not None:
        result = run_bench(cfg)
    else:
        with tempfile.TemporaryDirectory(prefix="board-bench-") as tmp:
            server = Server.start(Path(tmp), database_url=database_url,
                                  pubsub_url=pubsub_url, workers=workers)
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
