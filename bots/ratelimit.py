"""``RATE_LIMIT`` per user per platform: a moving window from the ``limits`` library.

The core talks to a ``RateLimiter`` through one async call, so the count can live in this
process (``MemoryRateLimiter``) or in a store shared by several processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: int = 0  # when refused: seconds until the window has room again


class RateLimiter(Protocol):
    """Counts questions per user against ``RATE_LIMIT``."""

    rate: RateLimitItem

    async def hit(self, platform: str, user_id: str) -> RateDecision:
        """Count one question, or say how long until the user may ask again."""
        ...


class MemoryRateLimiter:
    """In this process's memory (the ``limits`` in-memory storage; its entries expire by themselves)."""

    def __init__(self, rate: str = "10/minute") -> None:
        self.rate = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, platform: str, user_id: str) -> RateDecision:
        if self._limiter.hit(self.rate, platform, user_id):
            return RateDecision(True)
        stats = self._limiter.get_window_stats(self.rate, platform, user_id)
        return RateDecision(False, retry_after_s=max(1, math.ceil(stats.reset_time - time.time())))
