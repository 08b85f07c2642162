"""Answers remembered by image, question and model: a repeat costs no forward pass.

Torch-free. Keys are a hash of the image bytes, the question as the model reads it (the backend
says what counts as the same question) and the model's identity, so a new revision never serves
an old answer. Bounded (LRU); size 0 turns it off.
"""

from __future__ import annotations

import hashlib

from cachetools import LRUCache

from vqa_engine.prediction import Prediction

CacheKey = tuple[str, str, str]


def image_digest(data: bytes) -> str:
    """A short, collision-resistant name for the image bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class PredictionCache:
    """An LRU of predictions, counting hits and misses. Not thread-safe: one event loop uses it."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("the cache size cannot be negative")
        self._entries: LRUCache[CacheKey, Prediction] | None = LRUCache(maxsize=size) if size else None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    def get(self, key: CacheKey) -> Prediction | None:
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
