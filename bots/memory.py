"""Each user's last image per chat, for follow-up questions, and the conversation about it:
bounded and expiring.

Only references are kept (``ImageRef`` is plain data), never image bytes; the conversation is the
earlier (question, answer) texts (``bots.conversation``), forgotten when a new image comes. The core talks to
``ImageStore`` through async calls so the memory can live in this process or in a shared store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

from bots.events import ImageRef
from bots.options import DEFAULT_FOLLOW_UP_MINUTES
from vqa_engine.conversation import History

#: (platform, chat id, user id)
MemoryKey = tuple[str, str, str]


class ImageStore(Protocol):
    async def remember(self, key: MemoryKey, image: ImageRef) -> None:
        """Keep ``image`` as the last one, its conversation starting afresh."""
        ...

    async def recall(self, key: MemoryKey) -> ImageRef | None: ...

    async def history(self, key: MemoryKey) -> History:
        """The earlier turns about the last image, oldest first."""
        ...

    async def keep_history(self, key: MemoryKey, history: History) -> None:
        """Replace the turns about the last image (already bounded by the caller)."""
        ...

    async def forget(self, key: MemoryKey) -> None:
        """Drop the last image and its turns (``/new``)."""
        ...

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
        self._turns: TTLCache[MemoryKey, History] = TTLCache(maxsize=max_users, ttl=ttl_s, timer=timer)

    async def remember(self, key: MemoryKey, image: ImageRef) -> None:
        self._images[key] = image
        self._turns.pop(key, None)

    async def recall(self, key: MemoryKey) -> ImageRef | None:
        return self._images.get(key)

    async def history(self, key: MemoryKey) -> History:
        return self._turns.get(key, ())

    async def keep_history(self, key: MemoryKey, history: History) -> None:
        self._turns[key] = history

    async def forget(self, key: MemoryKey) -> None:
        self._images.pop(key, None)
        self._turns.pop(key, None)

    async def count(self) -> int:
        self._images.expire()
        return len(self._images)
