"""Rate limits and connection caps (in memory for one process; see the README to scale out)."""

from __future__ import annotations

from collections import Counter

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from board.errors import RuleViolation
from board.settings import Settings

PERIODS_FR = {"second": "seconde", "minute": "minute", "hour": "heure", "day": "jour"}


def too_many(item: RateLimitItem) -> RuleViolation:
    period = item.GRANULARITY.name
    per_en = period if item.multiples == 1 else f"{item.multiples} {period}s"
    per_fr = PERIODS_FR.get(period, period)
    if item.multiples != 1:
        per_fr = f"{item.multiples} {per_fr}s"
    return RuleViolation("too_many", limit_fr=f"{item.amount} par {per_fr}",
                         limit_en=f"{item.amount} per {per_en}")


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rules: dict[str, RateLimitItem] = {
            "post_participant": parse(settings.rate_posts_per_participant),
            "post_ip": parse(settings.rate_posts_per_ip),
            "join_ip": parse(settings.rate_joins_per_ip),
            "code_miss_ip": parse(settings.rate_code_misses_per_ip),
            "ws_message": parse(settings.rate_ws_messages),
        }
        self.max_ws_per_ip = settings.max_ws_per_ip
        self._sockets: Counter[str] = Counter()

    def hit(self, rule: str, *keys: str) -> None:
        """Count one more; refuse with 429 too_many once the window is full."""
        item = self._rules[rule]
        if not self._limiter.hit(item, rule, *keys):
            raise too_many(item)

    def check(self, rule: str, *keys: str) -> None:
        """Refuse if the window is already full, without counting."""
        item = self._rules[rule]
        if not self._limiter.test(item, rule, *keys):
            raise too_many(item)

    def open_socket(self, ip: str) -> None:
        if self._sockets[ip] >= self.max_ws_per_ip:
            raise RuleViolation("too_many_connections", limit=self.max_ws_per_ip)
        self._sockets[ip] += 1

    def close_socket(self, ip: str) -> None:
        self._sockets[ip] -= 1
        if self._sockets[ip] <= 0:
            del self._sockets[ip]
