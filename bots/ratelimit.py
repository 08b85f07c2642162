"""Per-user limits: a moving-window rate (the ``limits`` library) and a cap on questions in flight."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0  # when not allowed by the rate: seconds until a slot frees
    reason: str = ""  # "rate" or "in_flight" when refused


class UserLimiter:
    """``RATE_LIMIT`` per user per platform (admins exempt) and at most ``max_in_flight`` at once."""

    def __init__(self, rate: str = "10/minute", *, max_in_flight: int = 2) -> None:
        self.rate = parse(rate)
        self.max_in_flight = max_in_flight
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._in_flight: Counter[tuple[str, str]] = Counter()

    def check(self, platform: str, user_id: str, *, admin: bool = False) -> Decision:
        """Count one question against the user's budget, or say why and for how long not."""
        key = (platform, user_id)
        if self._in_flight[key] >= self.max_in_flight and not admin:
            return Decision(False, reason="in_flight")
        if admin or self._limiter.hit(self.rate, platform, user_id):
            return Decision(True)
        stats = self._limiter.get_window_stats(self.rate, platform, user_id)
        return Decision(False, retry_after_s=max(1, math.ceil(stats.reset_time - time.time())), reason="rate")

    @contextmanager
    def in_flight(self, platform: str, user_id: str) -> Iterator[None]:
        """Hold one of the user's in-flight slots while a question is being answered."""
        key = (platform, user_id)
        self._in_flight[key] += 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]  # no entry per idle user

    @property
    def users_in_flight(self) -> int:
        return len(self._in_flight)
