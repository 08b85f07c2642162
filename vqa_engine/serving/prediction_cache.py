"""Answers remembered by image, question and model: a repeat costs no forward pass.

Torch-free. Keys are a hash of the image bytes, the question as the model reads it (the backend
says what counts as the same question) and the model's identity, so a new revision never serves
an old answer. Bounded (LRU); size 0 turns it off.

Several processes may share a second tier (``SharedPredictions``, e.g. Redis: injected from
``service``, never imported here): a miss in this process's LRU asks it before the model runs,
and a new answer is written to both.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

from cachetools import LRUCache

from vqa_engine.prediction import Prediction

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str]


def image_digest(data: bytes) -> str:
    """A short, collision-resistant name for the image bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class SharedPredictions(Protocol):
    """A cache shared by several processes, behind this process's own. Its calls never raise: a
    store that cannot answer now is a miss."""

    async def get(self, key: CacheKey) -> Prediction | None: ...

    async def put(self, key: CacheKey, prediction: Prediction) -> None: ...


class PredictionCache:
    """An LRU of predictions, counting hits and misses, with an optional shared tier behind it.
    Not thread-safe: one event loop uses it."""

    def __init__(self, size: int, *, shared: SharedPredictions | None = None) -> None:
        if size < 0:
            raise ValueError("the cache size cannot be negative")
        self._entries: LRUCache[CacheKey, Prediction] | None = LRUCache(maxsize=size) if size else None
        self.shared = shared if size else None
        self.hits = 0
        self.shared_hits = 0  # (of ``hits``) answered by the shared tier
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    def get(self, key: CacheKey) -> Prediction | None:
        """This process's entry (the shared tier is not asked)."""
        if self._entries is None:
            return None
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: CacheKey, prediction: Prediction) -> None:
        if self._entries is not None:
            self._entries[key] = prediction

    async def lookup(self, key: CacheKey) -> Prediction | None:
        """This process's entry, else the shared tier's (then kept here too)."""
        if self._entries is None:
            return None
        found = self._entries.get(key)
        if found is None and self.shared is not None:
            try:
                found = await self.shared.get(key)
            except Exception:  # (it should not raise) a miss, and a line to look into
                log.exception("the shared prediction cache failed")
            if found is not None:
                self._entries[key] = found
                self.shared_hits += 1
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    async def store(self, key: CacheKey, prediction: Prediction) -> None:
        """Keep a new answer here and in the shared tier."""
        if self._entries is None:
            return
        self._entries[key] = prediction
        if self.shared is not None:
            try:
                await self.shared.put(key, prediction)
            except Exception:
                log.exception("the shared prediction cache failed")
