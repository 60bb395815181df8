"""Pub/sub between the code that changes a board and the sockets that watch it.

The interface is two calls: ``await hub.publish(event)`` after a commit, and
``async with hub.subscribe(board_id) as sub: async for event in sub``. ``MemoryHub`` serves one
worker; ``board.hub_redis.RedisHub`` and ``board.hub_pg.PostgresHub`` carry events between
workers and hand them to the same in-process registry (``make_hub`` picks one from the settings).

Delivery may be late or (after a backend reconnect) repeated; consumers order and de-duplicate
by seq and fill gaps from the event log, so a backend never has to be perfect. After a backend
reconnects, every subscription gets ``Event(board_id, None, RESYNC)``: the fan-out then reads what
was committed meanwhile from the log, so an outage of the pub/sub engine loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from board.events import Event

log = logging.getLogger("board.hub")

# Not a board event: a backend yields Event(board_id, None, RESYNC) to each subscription after
# it reconnects, and the fan-out then reads what was committed meanwhile from the event log.
RESYNC = "hub.resync"
# Not a board event either: another worker's count of the participants connected to it, shared
# so that every projector shows the whole room. Counts older than PRESENCE_TTL are forgotten
# (a worker that died stops counting); live workers repeat theirs more often than that.
PRESENCE = "hub.presence"
PRESENCE_TTL = 30.0


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...


class Hub(Protocol):
    kind: str  # "memory", "redis" or "postgresql"

    @property
    def is_connected(self) -> bool: ...

    async def publish(self, event: Event) -> None: ...

    def subscribe(self, board_id: int) -> AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...

    async def share_presence(self, board_id: int, count: int) -> None: ...

    def presence_elsewhere(self, board_id: int) -> int: ...


class _QueueSubscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class MemoryHub:
    """In-process backend: one unbounded queue per subscriber (a board feed, not a socket)."""

    kind = "memory"

    @property
    def is_connected(self) -> bool:
        """Whether events reach the other workers now (in memory, there are none)."""
        return True

    def __init__(self) -> None:
        self._subscribers: dict[int, set[_QueueSubscription]] = defaultdict(set)

    async def publish(self, event: Event) -> None:
        self.deliver_here(event)

    def deliver_here(self, event: Event) -> None:
        for sub in self._subscribers.get(event.board_id, ()):
            sub.queue.put_nowait(event)

    def resync_here(self) -> None:
        """Tell every subscription of this worker to catch up from the event log."""
        for board_id in list(self._subscribers):
            self.deliver_here(Event(board_id=board_id, seq=None, type=RESYNC))

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

    async def share_presence(self, board_id: int, count: int) -> None:
        """Tell the other workers how many participants of the board are connected here."""

    def presence_elsewhere(self, board_id: int) -> int:
        """Participants of the board connected to the other workers (none: one worker)."""
        return 0


class Backoff:
    """Waits between reconnect attempts: 0.1 s doubling to ``ceiling``, with jitter."""

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.first, self.ceiling, self.delay = first, ceiling, first

    def reset(self) -> None:
        self.delay = self.first

    async def wait(self) -> None:
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self.ceiling)


class RemoteHub(MemoryHub):
    """What the Redis and PostgreSQL backends share.

    An event is handed to this worker's subscribers at once and sent to the engine tagged with
    this worker's id; what comes back from the engine with another id is handed on too. A
    background task keeps the engine's subscription alive (``_listen`` returns or raises when the
    connection is lost) and reconnects with back-off, then resyncs every subscription here.
    Publishing while the engine is away only logs: the event is in the log already, and the
    other workers catch up from it when their own connection comes back.
    """

    kind = "remote"

    def __init__(self) -> None:
        super().__init__()
        self.origin = uuid.uuid4().hex[:12]
        self.connected = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._unsent: set[int] = set()  # boards with events the other workers did not get
        self._flushes: set[asyncio.Task[None]] = set()
        # board id -> worker id -> (participants connected there, when it said so)
        self._presence: defaultdict[int, dict[str, tuple[int, float]]] = defaultdict(dict)

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name=f"{self.kind}-hub")

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    def encode(self, event: Event) -> str:
        return event.to_hub(origin=self.origin)

    def received(self, raw: str | bytes) -> None:
        try:
            origin, event = Event.read_hub(raw)
            if event.type == PRESENCE:
                count = int(event.data["count"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s hub: unreadable message dropped", self.kind)
            return
        if origin == self.origin:
            return  # ours, already delivered here
        if event.type == PRESENCE:
            counts = self._presence[event.board_id]
            before = counts.get(origin)
            counts[origin] = (count, time.monotonic())
            if before is not None and before[0] == count:
                return  # a repeat changes nothing on screen
        self.deliver_here(event)

    async def publish(self, event: Event) -> None:
        self.deliver_here(event)
        if not self.connected.is_set():
            self._unsent.add(event.board_id)  # announced as a resync once the engine is back
            return
        try:
            if self._unsent:
                await self._flush_unsent()
            await self._send(event.board_id, self.encode(event))
        except Exception as exc:  # engine gone between two checks: same as above
            self._unsent.add(event.board_id)
            log.warning("%s hub: publish failed (%s); other workers will catch up from the log",
                        self.kind, type(exc).__name__)

    async def share_presence(self, board_id: int, count: int) -> None:
        if not self.connected.is_set():
            return  # repeated every few seconds: the next one will do
        message = self.encode(Event(board_id, None, PRESENCE, {"count": count}))
        try:
            await self._send(board_id, message)
        except Exception as exc:
            log.info("%s hub: presence not shared (%s)", self.kind, type(exc).__name__)

    def presence_elsewhere(self, board_id: int) -> int:
        counts = self._presence.get(board_id)
        if not counts:
            return 0
        now = time.monotonic()
        for origin in [o for o, (_, at) in counts.items() if now - at > PRESENCE_TTL]:
            del counts[origin]
        return sum(count for count, _ in counts.values())

    async def _flush_unsent(self) -> None:
        """Tell the other workers to read the log of boards whose events could not be sent.

        Their own connection may never have dropped (only ours did): without this they would
        wait for the board's next event to notice the gap."""
        while self._unsent:
            board_id = self._unsent.pop()
            try:
                await self._send(board_id, self.encode(Event(board_id, None, RESYNC)))
            except Exception:
                self._unsent.add(board_id)
                raise

    async def _flush_quietly(self) -> None:
        try:
            await self._flush_unsent()
        except Exception as exc:  # retried at the next publish
            log.warning("%s hub: resync announcement failed (%s)", self.kind, type(exc).__name__)

    async def _send(self, board_id: int, message: str) -> None:
        raise NotImplementedError

    async def _listen(self, on_ready: Callable[[], None]) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        """Drop whatever connection is left (called after a loss and on close)."""

    def _ready(self, backoff: Backoff, *, again: bool) -> None:
        """Listening (again): what this worker's feeds missed meanwhile is in the log, and
        what the others missed of ours is announced to them."""
        self.connected.set()
        backoff.reset()
        if again:
            log.warning("%s hub: reconnected; catching up from the event log", self.kind)
        self.resync_here()
        if self._unsent:
            flush = asyncio.create_task(self._flush_quietly())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _keep_listening(self) -> None:
        backoff = Backoff()
        listened = False
        while not self._closing:
            try:
                await self._listen(functools.partial(self._ready, backoff, again=listened))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set() or not listened:
                    log.warning("%s hub: connection lost (%s: %s); retrying", self.kind,
                                type(exc).__name__, str(exc)[:120])
            listened = listened or self.connected.is_set()
            self.connected.clear()
            await _quietly(self._disconnect())
            if not self._closing:
                await backoff.wait()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await _quietly(self._disconnect())
        await super().close()


async def _quietly(step: Awaitable[None]) -> None:
    try:
        await step
    except Exception as exc:
        log.debug("ignored while disconnecting: %s", exc)


def make_hub(pubsub_url: str | None, *, channel: str = "atelier_board") -> MemoryHub:
    """The backend the settings ask for: redis://…, postgresql://…, or none (one worker)."""
    if not pubsub_url or pubsub_url == "memory":
        return MemoryHub()
    hub: RemoteHub
    if pubsub_url.startswith(("redis://", "rediss://", "unix://")):
        from board.hub_redis import RedisHub

        hub = RedisHub(pubsub_url, channel=channel)
    elif pubsub_url.startswith(("postgresql", "postgres://")):
        from board.hub_pg import PostgresHub

        hub = PostgresHub(pubsub_url, channel=channel)
    else:
        raise ValueError(f"BOARD_PUBSUB_URL must be redis://… or postgresql://…, not {pubsub_url}")
    hub.start()
    return hub
