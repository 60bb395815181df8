"""Rate limits and connection caps.

Counters of people's actions (posts, joins, code guesses) live in Redis when the settings name
one (``BOARD_RATE_LIMITS_URL``, or a Redis ``BOARD_PUBSUB_URL``), so every worker counts against
the same budget; otherwise in this process's memory. A per-socket message limit and the open
sockets per IP stay in memory: a socket belongs to one worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from board.errors import RuleViolation
from board.settings import Settings

log = logging.getLogger("board.ratelimit")
PERIODS_FR = {"second": "seconde", "minute": "minute", "hour": "heure", "day": "jour"}
SHARED_RULES = ("post_participant", "post_ip", "join_ip", "code_miss_ip")
WARN_EVERY = 30.0  # seconds between two "Redis unreachable" warnings


def too_many(item: RateLimitItem) -> RuleViolation:
    period = item.GRANULARITY.name
    per_en = period if item.multiples == 1 else f"{item.multiples} {period}s"
    per_fr = PERIODS_FR.get(period, period)
    if item.multiples != 1:
        per_fr = f"{item.multiples} {per_fr}s"
    return RuleViolation("too_many", limit_fr=f"{item.amount} par {per_fr}",
                         limit_en=f"{item.amount} per {per_en}")


def redis_storage_uri(url: str) -> str:
    """limits names its asyncio Redis storage async+redis://…"""
    return url if url.startswith("async+") else "async+" + url


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        shared = settings.shared_limits()
        # Shared through Redis when configured; otherwise counted in this process's memory
        # by the synchronous limiter (the asyncio one hands every hit to a thread).
        self._shared: AsyncMovingWindow | None = AsyncMovingWindow(
            RedisStorage(redis_storage_uri(shared), implementation="redispy",
                         key_prefix="atelier_board", socket_connect_timeout=1,
                         socket_timeout=1)) if shared else None
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._rules: dict[str, RateLimitItem] = {
            "post_participant": parse(settings.rate_posts_per_participant),
            "post_ip": parse(settings.rate_posts_per_ip),
            "join_ip": parse(settings.rate_joins_per_ip),
            "code_miss_ip": parse(settings.rate_code_misses_per_ip),
            "ws_message": parse(settings.rate_ws_messages),
        }
        self.max_ws_per_ip = settings.max_ws_per_ip
        self._sockets: Counter[str] = Counter()
        self._warned_at = 0.0

    async def hit(self, rule: str, *keys: str) -> None:
        """Count one more; refuse with 429 too_many once the window is full."""
        await self._ask(rule, keys, count=True)

    async def check(self, rule: str, *keys: str) -> None:
        """Refuse if the window is already full, without counting."""
        await self._ask(rule, keys, count=False)

    async def _ask(self, rule: str, keys: tuple[str, ...], *, count: bool) -> None:
        item = self._rules[rule]
        if self._shared is None:
            if not (self._local.hit if count else self._local.test)(item, rule, *keys):
                raise too_many(item)
            return
        ask = self._shared.hit if count else self._shared.test
        try:
            allowed = await ask(item, rule, *keys)
        except Exception as exc:  # Redis away: let people post rather than refuse everyone
            now = time.monotonic()
            if now - self._warned_at > WARN_EVERY:
                self._warned_at = now
                log.warning("rate limits unavailable (%s); not counting meanwhile",
                            type(exc).__name__)
            return
        if not allowed:
            raise too_many(item)

    def hit_socket(self, key: str) -> None:
        """One more message on one socket (counted in this worker: the socket lives here)."""
        item = self._rules["ws_message"]
        if not self._local.hit(item, "ws_message", key):
            raise too_many(item)

    def open_socket(self, ip: str) -> None:
        if self._sockets[ip] >= self.max_ws_per_ip:
            raise RuleViolation("too_many_connections", limit=self.max_ws_per_ip)
        self._sockets[ip] += 1

    def close_socket(self, ip: str) -> None:
        self._sockets[ip] -= 1
        if self._sockets[ip] <= 0:
            del self._sockets[ip]
