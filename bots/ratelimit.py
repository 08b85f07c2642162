"""``RATE_LIMIT`` per user per platform, as a moving window.

The core talks to a ``RateLimiter`` through one async call, so the count can live in this
process (``MemoryRateLimiter``) or in a store shared by several processes. The rate is parsed by
the ``limits`` library (``10/minute``, ``100 per hour``...).

In memory we keep each user's last ``amount`` question times ourselves rather than use
``limits``' in-memory storage: that storage starts a ``threading.Timer`` to expire entries after
nearly every hit, which cost the bot's event loop about 1 ms per question at 30 questions/s
(a thread start, and the wait for it). A deque per user and an expiring map do the same work in
microseconds, with nothing left behind for idle users.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cachetools import TTLCache
from limits import RateLimitItem, parse


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
    """A moving window in this process: at most ``amount`` questions in any ``window`` seconds."""

    def __init__(
        self,
        rate: str,
        *,
        max_users: int = 100_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = parse(rate)
        self._amount = self.rate.amount
        self._window = float(self.rate.get_expiry())
        self._timer = timer
        # a user idle for a whole window has nothing worth keeping
        self._hits: TTLCache[tuple[str, str], deque[float]] = TTLCache(
            maxsize=max_users, ttl=self._window, timer=timer
        )

    async def hit(self, platform: str, user_id: str) -> RateDecision:
        now = self._timer()
        key = (platform, user_id)
        hits = self._hits.get(key)
        if hits is None:
            hits = deque(maxlen=self._amount)
        if len(hits) == self._amount and hits[0] > now - self._window:
            return RateDecision(False, retry_after_s=max(1, math.ceil(hits[0] + self._window - now)))
        hits.append(now)  # the oldest falls out of the full deque
        self._hits[key] = hits  # (re)sets its expiry: a window after this hit
        return RateDecision(True)
