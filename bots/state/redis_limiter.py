"""``RATE_LIMIT`` counted in Redis, so that a user's limit holds across every process.

The moving window is ``limits``' own (``limits.aio``'s ``MovingWindowRateLimiter`` over its async
Redis storage, driving redis-py on the link's connection pool): the same semantics as
``bots.ratelimit.MemoryRateLimiter`` — at most ``amount`` questions in any ``window`` seconds.
Key: ``PREFIX:limits:LIMITER/{platform}/{user}/{amount}/{multiples}/{granularity}``, a list of
hit times that expires one window after the last hit.

While Redis is down the limit fails open: questions are let through (the link has already said
once that Redis is down), and counted in Redis again as soon as it is back.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from bots.ratelimit import RateDecision
from bots.state.link import RedisLink, RedisUnavailable


def storage_uri(url: str) -> str:
    """``limits``' name for an async Redis URL (the connection itself comes from the link's pool)."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


class RedisRateLimiter:
    """Counts questions per user in Redis; lets them through while Redis is down."""

    def __init__(self, link: RedisLink, rate: str) -> None:
        self.rate = parse(rate)
        self.link = link
        storage = RedisStorage(
            storage_uri(link.url),
            implementation="redispy",
            key_prefix=link.key("limits"),
            connection_pool=link.client.connection_pool,  # type: ignore[arg-type]  # (passed to redis-py)
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, platform: str, user_id: str) -> RateDecision:
        try:
            if await self.link.call(lambda _: self._limiter.hit(self.rate, platform, user_id)):
                return RateDecision(True)
            stats = await self.link.call(
                lambda _: self._limiter.get_window_stats(self.rate, platform, user_id)
            )
        except RedisUnavailable:
            return RateDecision(True)  # fail open
        return RateDecision(False, retry_after_s=max(1, math.ceil(stats.reset_time - time.time())))
