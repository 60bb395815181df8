"""Redis pub/sub backend: one PUBLISH per event, one pattern subscription per worker.

Every worker subscribes once to ``<channel>:*`` and publishes each event on
``<channel>:<board id>``; the in-process registry (``MemoryHub``) then hands it to the feed of
that board, if this worker has one. Redis keeps nothing: a worker that was disconnected resyncs
its feeds from the event log (see ``RemoteHub``).
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from board.hub import RemoteHub


class RedisHub(RemoteHub):
    kind = "redis"

    def __init__(self, url: str, *, channel: str = "atelier_board") -> None:
        super().__init__()
        self.url = url
        self.channel = channel
        # Publishing client: its own pool, so a publish never waits behind the listener.
        # A pooled connection left from before a Redis restart fails once: retry on a new one.
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        self._listener: aioredis.Redis | None = None

    async def _send(self, board_id: int, message: str) -> None:
        await self._client.publish(f"{self.channel}:{board_id}", message)

    async def _listen(self, on_ready: Callable[[], None]) -> None:
        # No socket timeout on the listening connection (it waits for messages by design);
        # health checks (PING every 5 s while idle) notice a dead server.
        self._listener = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2, health_check_interval=5)
        pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(f"{self.channel}:*")
            on_ready()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is not None and message.get("type") == "pmessage":
                    self.received(message["data"])
                elif message is None:
                    await pubsub.ping()  # raises when the server went away quietly
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed in redis 8

    async def _disconnect(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.aclose()

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()
