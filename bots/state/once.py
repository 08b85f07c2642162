"""Something done once: a Telegram update handled by one process only, however often it arrives.

Telegram retries a webhook delivery it thinks failed, and a load balancer may hand the same update
to two replicas; ``Once.first(name)`` is True for exactly one of them. ``MemoryOnce`` remembers in
this process (enough for one replica); ``bots.state.redis_once.RedisOnce`` across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

#: how long a name is remembered: Telegram gives up redelivering an update well within this
DEFAULT_TTL_S = 3600


class Once(Protocol):
    async def first(self, name: str) -> bool:
        """True the first time ``name`` is seen (within the time it is remembered), False after."""
        ...


class MemoryOnce:
    """Names seen by this process, each for ``ttl_s`` seconds, at most ``max_names`` of them."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_names: int = 200_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=max_names, ttl=ttl_s, timer=timer)

    async def first(self, name: str) -> bool:
        if name in self._seen:
            return False
        self._seen[name] = True
        return True
