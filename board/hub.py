"""Pub/sub between the code that changes a board and the sockets that watch it.

The interface is two calls: ``await hub.publish(event)`` after a commit, and
``async with hub.subscribe(board_id) as sub: async for event in sub``. The in-process backend
below serves one worker; Redis and PostgreSQL backends implement the same two calls.
Delivery may be late or (after a backend reconnect) repeated; consumers order and de-duplicate
by seq and fill gaps from the event log, so a backend never has to be perfect.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from board.events import Event

# Not a board event: a backend yields Event(board_id, None, RESYNC) to each subscription after
# it reconnects, and the fan-out then reads what was committed meanwhile from the event log.
RESYNC = "hub.resync"


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...


class Hub(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(self, board_id: int) -> AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


class _QueueSubscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class MemoryHub:
    """In-process backend: one unbounded queue per subscriber (a board feed, not a socket)."""

    def __init__(self) -> None:
        self._subscribers: dict[int, set[_QueueSubscription]] = defaultdict(set)

    async def publish(self, event: Event) -> None:
        for sub in self._subscribers.get(event.board_id, ()):
            sub.queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, board_id: int) -> AsyncIterator[_QueueSubscription]:
        sub = _QueueSubscription()
        self._subscribers[board_id].add(sub)
        try:
            yield sub
        finally:
            subs = self._subscribers.get(board_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[board_id]

    async def close(self) -> None:
        self._subscribers.clear()
