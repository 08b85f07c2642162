"""Per-user image memory for follow-up questions: bounded and expiring."""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache

from bots.requests import ImageRef


class ImageMemory:
    """The last image each user sent in each chat, for ``ttl_s`` seconds; at most ``max_users`` kept.

    Only references are kept (see ``ImageRef``), so the memory holds no image bytes.
    """

    def __init__(
        self, *, ttl_s: float = 600.0, max_users: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._images: TTLCache[tuple[str, str, str], ImageRef] = TTLCache(
            maxsize=max_users, ttl=ttl_s, timer=timer
        )

    def remember(self, platform: str, chat_id: str, user_id: str, image: ImageRef) -> None:
        self._images[(platform, chat_id, user_id)] = image

    def recall(self, platform: str, chat_id: str, user_id: str) -> ImageRef | None:
        return self._images.get((platform, chat_id, user_id))

    def forget(self, platform: str, chat_id: str, user_id: str) -> None:
        self._images.pop((platform, chat_id, user_id), None)

    def __len__(self) -> int:
        self._images.expire()
        return len(self._images)
