"""``Once`` across processes: ``SET NX`` with an expiry, so one replica of many wins each name.

Key: ``PREFIX:once:{name}`` (a Telegram update: ``once:telegram-update:{bot id}:{update id}``),
expiring after ``ttl_s``. This process also remembers what it saw; while Redis is down that
memory alone decides (so a duplicate reaching the same replica is still caught; one reaching
another replica during the outage may be answered twice).
"""

from __future__ import annotations

from bots.state.link import RedisLink, RedisUnavailable
from bots.state.once import DEFAULT_TTL_S, MemoryOnce


class RedisOnce:
    def __init__(self, link: RedisLink, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.link = link
        self.ttl_s = ttl_s
        self._local = MemoryOnce(ttl_s=ttl_s)

    async def first(self, name: str) -> bool:
        here = await self._local.first(name)
        key = self.link.key("once", name)
        try:
            won = await self.link.call(lambda r: r.set(key, b"1", nx=True, ex=self.ttl_s))
        except RedisUnavailable:
            return here
        return bool(won) and here
