"""Rate limits and connection caps.

Counters of people's actions (posts, joins, code guesses) live in Redis when the settings name
one (``BOARD_RATE_LIMITS_URL``, or a Redis ``BOARD_PUBSUB_URL``), so every worker counts against
the same budget; otherwise in this process's memory. A per-socket message limit and the open
sockets per IP stay in memory: a socket belongs to one worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow

from board.errors import RuleViolation
from board.settings import Settings

log = logging.getLogger("board.ratelimit")
PERIODS_FR = {"second": "seconde", "minute": "minute", "hour": "heure", "day": "jour"}
SHARED_RULES = ("post_participant", "post_ip", "join_ip", "code_miss_ip")
WARN_EVERY = 30.0  # seconds between two "Redis unreachable" warnings
SWEEP_EVERY = 60.0  # seconds between two sweeps of the local counters' idle keys


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


class LocalWindows:
    """Moving windows counted in this process's memory: for each rule and key, the times of
    the hits still inside the window (never more than the rule allows), forgotten lazily.

    The same rule as the Redis limiter's moving window. (limits' own MemoryStorage starts a
    timer thread to expire its entries whenever none is running, and the posting request
    waited for that thread to start: a py-spy profile of a stream of posts showed hundreds of
    these short-lived threads.)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[tuple[str, ...], deque[float]] = {}
        self._windows: dict[str, float] = {}  # rule -> its window, for the sweep
        self._swept_at = clock()

    def ask(self, item: RateLimitItem, rule: str, *keys: str, count: bool = True) -> bool:
        """Whether one more hit fits in the window; counted when ``count`` and it fits."""
        now = self._clock()
        window = float(item.get_expiry())
        key = (rule, *keys)
        times = self._hits.get(key)
        if times is not None:
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= item.amount:
                return False
        if count and item.amount > 0:
            if times is None:
                times = self._hits[key] = deque()
                self._windows[rule] = window
            times.append(now)
        if now - self._swept_at > SWEEP_EVERY:
            self._sweep(now)
        return item.amount > 0

    def _sweep(self, now: float) -> None:
        """Forget the keys whose last hit left its window (people who went home)."""
        self._swept_at = now
        idle = [key for key, times in self._hits.items()
                if not times or times[-1] <= now - self._windows.get(key[0], 0.0)]
        for key in idle:
            del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        shared = settings.shared_limits()
        # Shared through Redis when configured; otherwise counted in this process's memory
        # by LocalWindows (no thread, no await).
        self._shared: AsyncMovingWindow | None = AsyncMovingWindow(
            RedisStorage(redis_storage_uri(shared), implementation="redispy",
                         key_prefix="atelier_board", socket_connect_timeout=1,
                         socket_timeout=1)) if shared else None
        self._local = LocalWindows()
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
            if not self._local.ask(item, rule, *keys, count=count):
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
        if not self._local.ask(item, "ws_message", key):
            raise too_many(item)

    def open_socket(self, ip: str) -> None:
        if self._sockets[ip] >= self.max_ws_per_ip:
            raise RuleViolation("too_many_connections", limit=self.max_ws_per_ip)
        self._sockets[ip] += 1

    def close_socket(self, ip: str) -> None:
        self._sockets[ip] -= 1
        if self._sockets[ip] <= 0:
            del self._sockets[ip]
