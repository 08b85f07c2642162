"""Each user's last image per chat, for follow-up questions: bounded and expiring.

Only references are kept (``ImageRef`` is plain data), never image bytes. The core talks to
``ImageStore`` through async calls so the memory can live in this process or in a shared store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

from bots.events import ImageRef
from bots.options import DEFAULT_FOLLOW_UP_MINUTES

#: (platform, chat id, user id)
MemoryKey = tuple[str, str, str]


class ImageStore(Protocol):
    async def remember(self, key: MemoryKey, image: ImageRef) -> None: ...

    async def recall(self, key: MemoryKey) -> ImageRef | None: ...

    async def count(self) -> int:
        """Images remembered now (for ``/stats``)."""
        ...


class ImageMemory:
    """In this process: the last image of each (platform, chat, user) for ``ttl_s`` seconds,
    at most ``max_users`` entries (the oldest go first)."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_FOLLOW_UP_MINUTES * 60,
        max_users: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._images: TTLCache[MemoryKey, ImageRef] = TTLCache(maxsize=max_users, ttl=ttl_s, timer=timer)

    async def remember(self, key: MemoryKey, image: ImageRef) -> None:
        self._images[key] = image

    async def recall(self, key: MemoryKey) -> ImageRef | None:
        return self._images.get(key)

    async def count(self) -> int:
        self._images.expire()
        return len(self._images)
