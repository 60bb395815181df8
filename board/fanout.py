"""Per-board fan-out inside one worker: hub → render once per audience → bounded queues.

One ``Feed`` per board that has sockets here. It is the only hub subscriber for that board,
puts events in seq order (filling gaps from the event log, dropping repeats), renders each
event once per audience present, and offers the same bytes to every socket of that audience.
On a busy board the rendered frames are handed over at most every ``BATCH_WINDOW`` seconds,
several at a time, so each socket wakes (and, for pages, sends) once for several events.
A socket whose queue is full is flagged and cut off by its own handler; it never slows others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from board.commands import settings_dict
from board.events import SETTINGS_EVENTS, Event
from board.hub import PRESENCE, RESYNC, Hub
from board.render import Audience, Renderer
from board.store import Store
from board.tables import Board

log = logging.getLogger("board.fanout")
PRESENCE_REPEAT = 10.0  # seconds; below the hub's PRESENCE_TTL
CLOSE_WAIT = 1.0  # seconds a closing feed waits for its tasks to end
PRESENCE_SOCKETS = 1000  # past this many sockets on a board, counts are sent less often

# Seconds between two hand-overs of a board's events to its sockets. A board with less than
# one event per window (10 posts/s is one per 100 ms) sees no delay; a plenary burst gets
# several events per socket wake-up (and per message, for pages), so the per-socket cost —
# the bulk of the work with thousands of sockets — stops growing with the event rate.
BATCH_WINDOW = 0.05
HANDOVER_CHUNK = 100  # sockets offered frames per turn of the event loop
CROWD = 1000  # sockets beyond which the window grows in proportion (2,000: 100 ms)

class Frame:
    """One rendered frame: its seq (None: ephemeral), its text, and for page views the JSON
    string body of its "content" (already escaped), so that several frames can be joined
    into one message without parsing or escaping them again."""

    __slots__ = ("seq", "text", "content")

    def __init__(self, seq: int | None, text: str, content: str | None = None) -> None:
        self.seq = seq
        self.text = text
        self.content = content


CONTENT_KEY = '"content":"'


def html_frame(seq: int | None, text: str) -> Frame:
    """A page view's frame, with the escaped body of its content (see ``batch_text``)."""
    start = text.find(CONTENT_KEY)
    if start < 0 or not text.endswith('"}'):
        return Frame(seq, text)
    return Frame(seq, text, text[start + len(CONTENT_KEY):-2])


def batch_text(frames: list[Frame], *, html: bool) -> str:
    """Several frames as one message. Pages: one frame whose content is the contents one after
    the other (OOB partials swap in the same order), "seq" the last seq among them and "from"
    the first (they are consecutive); API clients that asked (?batch=1): a JSON array."""
    if not html:
        return "[" + ",".join(f.text for f in frames) + "]"
    seqs = [f.seq for f in frames if f.seq is not None]
    body = "".join(f.content or "" for f in frames)
    if not seqs:  # presence only
        return f'{{"seq":null,"type":"batch","from":null,"content":"{body}"}}'
    return f'{{"seq":{seqs[-1]},"type":"batch","from":{seqs[0]},"content":"{body}"}}'


def ws_text_frame(text: str) -> bytes:
    """One unfragmented, unmasked websocket text frame (RFC 6455 §5.2), as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65536:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


class Wire:
    """Frames handed over together to the sockets of one audience, encoded once for all of
    them: as one websocket message each, or as one batched message."""

    __slots__ = ("frames", "html", "first_seq", "last_seq", "_each", "_batched")

    def __init__(self, frames: list[Frame], *, html: bool) -> None:
        self.frames = frames
        self.html = html
        seqs = [f.seq for f in frames if f.seq is not None]  # ascending (one feed's order)
        self.first_seq = seqs[0] if seqs else None
        self.last_seq = seqs[-1] if seqs else None
        self._each: bytes | None = None
        self._batched: bytes | None = None

    def data(self, batch: bool) -> bytes:
        if batch and len(self.frames) > 1:
            if self._batched is None:
                self._batched = ws_text_frame(batch_text(self.frames, html=self.html))
            return self._batched
        if self._each is None:
            self._each = b"".join(ws_text_frame(f.text) for f in self.frames)
        return self._each


# Writes a socket's bytes straight to its transport; False when it cannot right now (the peer
# is not reading fast enough, or the socket is closing): the frames then wait in the queue.
DirectWrite = Callable[[bytes], bool]


class Client:
    """One socket's side of the fan-out: a bounded queue and the last seq it was sent.

    While the socket keeps up, frames handed over by the feed go straight to its transport
    (``direct``, the same bytes for the whole audience, no task wakes up). Otherwise they wait
    in ``pending`` and ``wake`` asks the socket's handler to send them (a writer task that
    exists only while there is a backlog). A full queue or a cut-off (``cut``) ends the socket.
    """

    __slots__ = ("key", "audience", "participant_id", "pending", "queue_size", "last_seq",
                 "overflowed", "batch", "direct", "wake", "writing")

    _keys = itertools.count(1)

    def __init__(self, audience: Audience, *, participant_id: int | None, queue_size: int,
                 batch: bool = False):
        self.key = f"socket-{next(Client._keys)}"  # unique for the process's lifetime
        self.audience = audience
        self.participant_id = participant_id
        self.pending: list[Frame] = []  # an empty deque would take ~600 B per idle socket
        self.queue_size = queue_size
        self.last_seq = 0
        self.overflowed = False
        # Several frames as one message: always for pages, for API clients with ?batch=1.
        self.batch = audience.html or batch
        self.direct: DirectWrite | None = None  # set by the socket once its replay is sent
        self.wake: Callable[[], None] | None = None  # set by the socket while it is live
        self.writing = False  # its writer is sending the backlog

    def offer(self, wire: Wire) -> None:
        if self.overflowed:
            return
        direct = self.direct
        if direct is not None and not self.pending and not self.writing:
            # The frames are in seq order: none was sent by the replay if the first was not.
            fresh = wire.first_seq is None or wire.first_seq > self.last_seq
            if fresh and direct(wire.data(self.batch)):
                if wire.last_seq is not None:
                    self.last_seq = wire.last_seq
                return
        frames = wire.frames
        if len(self.pending) + len(frames) > self.queue_size:
            self.cut()
            return
        self.pending.extend(frames)
        if self.wake is not None and not self.writing:
            self.wake()

    def cut(self) -> None:
        """Too slow, or the board's feed is gone: the socket closes (1013) and resyncs."""
        self.overflowed = True
        self.pending.clear()
        if self.wake is not None:
            self.wake()

    def take(self) -> list[Frame]:
        """What is waiting, in order, minus what the replay already sent."""
        frames: list[Frame] = []
        pending, self.pending = self.pending, []
        for frame in pending:
            if frame.seq is not None:
                if frame.seq <= self.last_seq:
                    continue
                self.last_seq = frame.seq
            frames.append(frame)
        return frames


class SnapshotAbandoned(RuntimeError):
    """The socket building a shared snapshot was closed before it was done."""


class Feed:
    def __init__(self, board_id: int, fanout: Fanout) -> None:
        self.board_id = board_id
        self.fanout = fanout
        self.clients: dict[Audience, set[Client]] = {}
        self.last_seq = 0
        self.join_code = ""
        self.settings: dict[str, Any] = {}
        self.present: Counter[int] = Counter()
        self.presence_dirty = asyncio.Event()
        # The last snapshot built for each audience that shares one: (seq, built at, the
        # (seq, text) it was built at, or the future of it while it is being built).
        self.snapshots: dict[Audience, tuple[int, float, asyncio.Future[tuple[int, str]]]] = {}
        # Frames rendered but not yet handed to the sockets (see _broadcast), per audience.
        self.outbox: dict[Audience, list[Frame]] = {}
        self.flush_at: asyncio.TimerHandle | None = None
        self.flushed = 0.0  # loop time of the last hand-over
        # Flushed frames still being offered, a chunk of sockets at a time (_hand_over).
        self.handover: deque[tuple[Wire, list[Client], int]] = deque()
        self.handing: asyncio.Handle | None = None
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.deleted = False  # board.deleted went by: no snapshot is served without a read
        self.closing = False
        self.task = asyncio.create_task(self._run(), name=f"feed-{board_id}")
        self.presence_task = asyncio.create_task(self._presence(), name=f"presence-{board_id}")

    @property
    def participants(self) -> int:
        """Participants connected to this board: here, plus what the other workers said."""
        return len(self.present) + self.fanout.hub.presence_elsewhere(self.board_id)

    async def shared_snapshot(self, audience: Audience, seq: int,
                              build: Callable[[], Awaitable[tuple[int, str]]],
                              reuse: float) -> tuple[int, str]:
        """The snapshot this audience gets at ``seq``: (the seq it was built at, its text).
        Built once for everyone who asks at the same seq within ``reuse`` seconds; who asks
        while it is being built waits for that build rather than starting another (a wave of
        a hundred phones arriving at once built it a hundred times)."""
        now = time.monotonic()
        known = self.snapshots.get(audience)
        if known is not None and known[0] == seq and now - known[1] < reuse:
            try:
                return await asyncio.shield(known[2])
            except SnapshotAbandoned:  # its builder's socket went away meanwhile
                return await build()
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self.snapshots[audience] = (seq, now, future)
        try:
            built = await build()
        except BaseException as exc:
            if self.snapshots.get(audience, (0, 0.0, None))[2] is future:
                del self.snapshots[audience]
            future.set_exception(exc if isinstance(exc, Exception) else SnapshotAbandoned())
            future.exception()  # those waiting see it; nobody else needs to
            raise
        future.set_result(built)
        return built

    def current_snapshot(self, audience: Audience, reuse: float
                         ) -> asyncio.Future[tuple[int, str]] | None:
        """The shared snapshot of this audience, if it is the board as this feed last saw it
        (built, or being built, at the feed's seq less than ``reuse`` seconds ago): a newcomer
        attached to the feed may take it without reading the board. Whatever comes after that
        seq reaches the newcomer through the feed, as it reaches every socket attached."""
        known = self.snapshots.get(audience)
        if known is None or self.deleted or known[0] != self.last_seq or (
                time.monotonic() - known[1] >= reuse):
            return None
        return known[2]

    def add(self, client: Client) -> None:
        self.clients.setdefault(client.audience, set()).add(client)
        if client.participant_id is not None:
            self.present[client.participant_id] += 1
            if self.present[client.participant_id] == 1:
                self.presence_dirty.set()

    def remove(self, client: Client) -> None:
        group = self.clients.get(client.audience)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients[client.audience]
        pid = client.participant_id
        if pid is not None and self.present[pid] > 0:
            self.present[pid] -= 1
            if self.present[pid] == 0:
                del self.present[pid]
                self.presence_dirty.set()

    def empty(self) -> bool:
        return not self.clients

    async def _run(self) -> None:
        store = self.fanout.store
        try:
            async with self.fanout.hub.subscribe(self.board_id) as sub:
                # Subscribed first, then read the seq: nothing can fall between the two.
                board = await store.query(lambda session: session.get(Board, self.board_id))
                if board is None:
                    raise LookupError(f"board {self.board_id} is gone")
                self.last_seq, self.join_code = board.seq, board.join_code
                self.settings = settings_dict(board)
                self.ready.set()
                async for event in sub:
                    await self.deliver(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a broken feed must not leave sockets waiting forever
            log.exception("feed of board %s stopped", self.board_id)
            self.failed = exc
            self.ready.set()
            for group in self.clients.values():
                for client in group:
                    client.cut()

    async def deliver(self, event: Event) -> None:
        if event.type == RESYNC:  # the hub reconnected: what it missed meanwhile is in the log
            await self._fill(until=None)
            return
        if event.type == PRESENCE:  # another worker's count changed: show the new total
            self.presence_dirty.set()
            return
        if event.type == "board.deleted":  # every socket closes; a reconnect meets a 404
            self.deleted = True
            for group in self.clients.values():
                for client in list(group):
                    client.cut()
            return
        if event.seq is None or event.seq <= self.last_seq:
            return  # ephemeral from elsewhere, or already delivered
        if event.seq > self.last_seq + 1:
            await self._fill(until=event.seq - 1)
        self._broadcast(event)

    async def _fill(self, *, until: int | None) -> None:
        """Broadcast the logged events after the last one delivered (up to ``until``)."""
        since = self.last_seq
        missing = await self.fanout.store.query(lambda session: Store.events_since(
            session, board_id=self.board_id, since=since, until=until))
        for gap_event in missing:
            self._broadcast(gap_event)

    def _broadcast(self, event: Event) -> None:
        assert event.seq is not None
        if event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        if event.type in SETTINGS_EVENTS:  # its data is the settings (plus its own fields)
            self.settings = {k: event.data[k] for k in self.settings if k in event.data}
        fanout = self.fanout
        for audience in self.clients:
            frame = fanout.frame(event.seq, audience, fanout.renderer.frame(
                event, audience, self.join_code, self.settings))
            self.outbox.setdefault(audience, []).append(frame)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Hand the outbox to the sockets now, or, on a busy board (the last hand-over less
        than ``batch_window`` ago), at most that long after the last one: each socket then
        wakes once for several events, and pages get them in one message."""
        if self.flush_at is not None:
            return  # already due
        loop = asyncio.get_running_loop()
        sockets = sum(len(group) for group in self.clients.values())
        # Each hand-over costs a write per socket: a crowded board waits longer between two.
        due = self.flushed + self.fanout.batch_window * max(1.0, sockets / CROWD)
        if loop.time() >= due:
            self._flush()
        else:
            self.flush_at = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self.flush_at = None
        self.flushed = asyncio.get_running_loop().time()
        outbox, self.outbox = self.outbox, {}
        for audience, frames in outbox.items():
            # A socket of an audience that appeared since these were rendered has them from
            # its replay (it read the board's seq after it was added); none is missing.
            clients = list(self.clients.get(audience, ()))
            if clients:
                self.handover.append((Wire(frames, html=audience.html), clients, 0))
        if self.handing is None:
            self._hand_over()

    def _hand_over(self) -> None:
        """Offer the flushed frames, ``HANDOVER_CHUNK`` sockets per turn of the event loop, so
        that thousands of sockets do not hold up everything else (each database call of a post
        waits for a turn of the loop) while staying in order from one flush to the next."""
        budget = HANDOVER_CHUNK
        handover = self.handover
        while handover and budget > 0:
            wire, clients, start = handover[0]
            end = min(len(clients), start + budget)
            for client in clients[start:end]:
                client.offer(wire)
            budget -= end - start
            if end == len(clients):
                handover.popleft()
            else:
                handover[0] = (wire, clients, end)
        self.handing = asyncio.get_running_loop().call_soon(self._hand_over) if handover else None

    async def _presence(self) -> None:
        interval = self.fanout.presence_interval
        hub = self.fanout.hub
        shared, shared_at = -1, 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_REPEAT):
                    await self.presence_dirty.wait()
            if self.closing:
                return
            # The other workers hear this worker's count when it changes, and again every
            # PRESENCE_REPEAT seconds (they forget counts that stop coming).
            here, now = len(self.present), time.monotonic()
            if here != shared or now - shared_at >= PRESENCE_REPEAT:
                await hub.share_presence(self.board_id, here)
                shared, shared_at = here, now
            if not self.presence_dirty.is_set():
                continue
            self.presence_dirty.clear()
            count = self.participants
            sockets = 0
            for audience, group in self.clients.items():
                wire = Wire([self.fanout.frame(None, audience, self.fanout.renderer.presence_frame(
                    count, audience))], html=audience.html)
                for client in list(group):
                    client.offer(wire)
                sockets += len(group)
            # Coalesce a wave of joins into one frame; on a board of thousands, whose every
            # count is a write per socket, less often (2,000 sockets: every 2 s).
            await asyncio.sleep(interval * max(1.0, sockets / PRESENCE_SOCKETS))

    async def close(self) -> None:
        for handle in (self.flush_at, self.handing):
            if handle is not None:
                handle.cancel()
        self.flush_at = self.handing = None
        self.handover.clear()
        # The presence loop also stops by itself once woken: a cancellation can be lost on
        # Python 3.11 when it meets a timeout expiring at the same moment (the loop's own, or
        # one inside the Redis client), and the socket closing this feed waited for it for
        # ever (seen as uvicorn's "Cancel 1 running task(s)" at shutdown).
        self.closing = True
        self.presence_dirty.set()
        tasks = (self.task, self.presence_task)
        for task in tasks:
            task.cancel()
            task.add_done_callback(_consume)
        await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        with contextlib.suppress(Exception):  # nobody here any more (best effort)
            await self.fanout.hub.share_presence(self.board_id, 0)


def _consume(task: asyncio.Task[None]) -> None:
    """A closed feed's task is not awaited past CLOSE_WAIT: its outcome is read here."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("feed task %s ended with %r", task.get_name(), task.exception())


class Fanout:
    def __init__(self, *, hub: Hub, store: Store, renderer: Renderer,
                 presence_interval: float = 1.0, batch_window: float = BATCH_WINDOW) -> None:
        self.batch_window = batch_window
        self.hub = hub
        self.store = store
        self.renderer = renderer
        self.presence_interval = presence_interval
        self.feeds: dict[int, Feed] = {}

    @contextlib.asynccontextmanager
    async def attach(self, board_id: int, client: Client) -> AsyncIterator[Feed]:
        feed = self.feeds.get(board_id)
        if feed is None:
            feed = self.feeds[board_id] = Feed(board_id, self)
        feed.add(client)
        try:
            await feed.ready.wait()
            if feed.failed is not None:
                raise RuntimeError(f"live feed of board {board_id} is down") from feed.failed
            yield feed
        finally:
            feed.remove(client)
            if feed.empty() and self.feeds.get(board_id) is feed:
                del self.feeds[board_id]
                await feed.close()

    @staticmethod
    def frame(seq: int | None, audience: Audience, text: str) -> Frame:
        return html_frame(seq, text) if audience.html else Frame(seq, text)

    def presence(self, board_id: int) -> int:
        """Participants connected to the board, on every worker (pages and the API show it;
        this worker may hold no socket of the board while others do)."""
        feed = self.feeds.get(board_id)
        return feed.participants if feed is not None else self.hub.presence_elsewhere(board_id)

    async def close(self) -> None:
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.close()


