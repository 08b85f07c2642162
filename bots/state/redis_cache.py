"""The engine's answers shared through Redis: a question one process answered is not computed
again by another (the engine's ``SharedPredictions``, injected from ``service``).

Key: ``PREFIX:answer:{digest}``, where the digest is a hash of the engine's cache key (image
digest, question as the model reads it, model identity), holding the prediction as JSON; it
expires after ``REDIS_CACHE_TTL_S``. The index ``PREFIX:answers`` (a sorted set of those keys by
when they were written, expiring with them) bounds the cache to ``REDIS_CACHE_SIZE`` answers: past
it the oldest go. While Redis is down, every call is a miss (the engine's own LRU still answers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging

from bots.state.bounded import bounded_put
from bots.state.link import RedisLink, RedisUnavailable
from vqa_engine.prediction import Prediction
from vqa_engine.serving.prediction_cache import CacheKey

log = logging.getLogger(__name__)


class RedisPredictionCache:
    """Predictions in Redis, bounded by age (``ttl_s``) and count (``size``)."""

    def __init__(self, link: RedisLink, *, ttl_s: int, size: int) -> None:
        if size < 1 or ttl_s < 1:
            raise ValueError("the shared cache needs a size and a time to live of at least 1")
        self.link = link
        self.ttl_s = ttl_s
        self.size = size
        self.index = link.key("answers")
        self._put = bounded_put(link.client)

    def _key(self, key: CacheKey) -> str:
        digest = hashlib.blake2b("\0".join(key).encode(), digest_size=20).hexdigest()
        return self.link.key("answer", digest)

    async def get(self, key: CacheKey) -> Prediction | None:
        return await self.link.get_json(self._key(key), Prediction.from_dict, "answer in the shared cache")

    async def put(self, key: CacheKey, prediction: Prediction) -> None:
        value = json.dumps(prediction.to_dict())
        with contextlib.suppress(RedisUnavailable):  # not shared this time
            await self.link.call(
                lambda _: self._put(keys=[self._key(key), self.index], args=[value, self.ttl_s, self.size])
            )
