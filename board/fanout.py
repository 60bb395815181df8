"""Per-board fan-out inside one worker: hub → render once per audience → bounded queues.

One ``Feed`` per board that has sockets here. It is the only hub subscriber for that board,
puts events in seq order (filling gaps from the event log, dropping repeats), renders each
event once per audience present, and offers the same bytes to every socket of that audience.
A socket whose queue is full is flagged and cut off by its own handler; it never slows others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from board.commands import settings_dict
from board.events import SETTINGS_EVENTS, Event
from board.hub import RESYNC, Hub
from board.render import Audience, Renderer
from board.store import Store
from board.tables import Board

log = logging.getLogger("board.fanout")

Frame = tuple[int | None, str]


class Client:
    """One socket's side of the fan-out: a bounded queue and the last seq it was sent."""

    _keys = itertools.count(1)

    def __init__(self, audience: Audience, *, participant_id: int | None, queue_size: int):
        self.key = f"socket-{next(Client._keys)}"  # unique for the process's lifetime
        self.audience = audience
        self.participant_id = participant_id
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=queue_size)
        self.last_seq = 0
        self.overflowed = asyncio.Event()

    def offer(self, seq: int | None, text: str) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait((seq, text))
        except asyncio.QueueFull:
            self.overflowed.set()

    async def frames(self) -> AsyncIterator[str]:
        """Queued frames in order, skipping any the replay already sent."""
        while True:
            seq, text = await self.queue.get()
            if seq is not None:
                if seq <= self.last_seq:
                    continue
                self.last_seq = seq
            yield text


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
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.task = asyncio.create_task(self._run(), name=f"feed-{board_id}")
        self.presence_task = asyncio.create_task(self._presence(), name=f"presence-{board_id}")

    @property
    def participants(self) -> int:
        return len(self.present)

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
                async with store.read() as session:
                    board = await session.get(Board, self.board_id)
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
                    client.overflowed.set()

    async def deliver(self, event: Event) -> None:
        if event.type == RESYNC:  # the hub reconnected: what it missed meanwhile is in the log
            await self._fill(until=None)
            return
        if event.type == "board.deleted":  # every socket closes; a reconnect meets a 404
            for group in self.clients.values():
                for client in group:
                    client.overflowed.set()
            return
        if event.seq is None or event.seq <= self.last_seq:
            return  # ephemeral from elsewhere, or already delivered
        if event.seq > self.last_seq + 1:
            await self._fill(until=event.seq - 1)
        self._broadcast(event)

    async def _fill(self, *, until: int | None) -> None:
        """Broadcast the logged events after the last one delivered (up to ``until``)."""
        async with self.fanout.store.read() as session:
            missing = await self.fanout.store.events_since(
                session, board_id=self.board_id, since=self.last_seq, until=until
            )
        for gap_event in missing:
            self._broadcast(gap_event)

    def _broadcast(self, event: Event) -> None:
        assert event.seq is not None
        if event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        if event.type in SETTINGS_EVENTS:  # its data is the settings (plus its own fields)
            self.settings = {k: event.data[k] for k in self.settings if k in event.data}
        for audience, group in self.clients.items():
            text = self.fanout.renderer.frame(event, audience, self.join_code, self.settings)
            for client in group:
                client.offer(event.seq, text)

    async def _presence(self) -> None:
        interval = self.fanout.presence_interval
        while True:
            await self.presence_dirty.wait()
            self.presence_dirty.clear()
            count = self.participants
            for audience, group in self.clients.items():
                text = self.fanout.renderer.presence_frame(count, audience)
                for client in group:
                    client.offer(None, text)
            await asyncio.sleep(interval)  # coalesce a wave of joins into one frame

    async def close(self) -> None:
        for task in (self.task, self.presence_task):
            task.cancel()
        for task in (self.task, self.presence_task):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Fanout:
    def __init__(self, *, hub: Hub, store: Store, renderer: Renderer,
                 presence_interval: float = 1.0) -> None:
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

    def presence(self, board_id: int) -> int:
        feed = self.feeds.get(board_id)
        return feed.participants if feed is not None else 0

    async def close(self) -> None:
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.close()


