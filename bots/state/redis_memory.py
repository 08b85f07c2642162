"""Each user's last image per chat in Redis, so that a follow-up question reaching another process
is answered about the image sent to this one.

Only the reference is stored (``ImageRef``: a Telegram file id or a Discord attachment URL, its
size and type), never image bytes. Key: ``PREFIX:image:{platform}:{chat}:{user}``, a JSON string
that expires ``FOLLOW_UP_MINUTES`` after it was written. The conversation about that image (the
earlier questions and answers, ``bots.conversation``) sits beside it in
``PREFIX:turns:{platform}:{chat}:{user}``, a JSON list with the same lifetime, deleted when a new
image is remembered.

This process keeps its own copy of what it remembers (bounded, expiring). While Redis is down that
copy answers alone; when Redis is back the images remembered meanwhile are written to Redis (unless
another process remembered a newer one for the same chat and user meanwhile), so nothing is lost.
A recall takes the newer of Redis's and this process's image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable

from cachetools import TTLCache
from redis.asyncio import Redis

from bots.events import ImageRef
from bots.memory import MemoryKey
from bots.state.link import RedisLink, RedisUnavailable
from vqa_engine.conversation import History

#: set KEYS[1] to ARGV[1] for ARGV[3] ms unless it holds an image remembered after ARGV[2]
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
    local ok, decoded = pcall(cjson.decode, current)
    if ok and tonumber(decoded['at']) and tonumber(decoded['at']) >= tonumber(ARGV[2]) then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


@dataclasses.dataclass(frozen=True)
class _Kept:
    image: ImageRef
    at: float  # time.time() when it was remembered: the newer of two copies wins


class RedisImageMemory:
    """Follow-up images in Redis, with this process's own copy as the fallback."""

    def __init__(
        self,
        link: RedisLink,
        *,
        ttl_s: float,
        max_users: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.ttl_s = ttl_s
        self._clock = clock
        self._local: TTLCache[MemoryKey, _Kept] = TTLCache(maxsize=max_users, ttl=ttl_s, timer=clock)
        self._turns: TTLCache[MemoryKey, History] = TTLCache(maxsize=max_users, ttl=ttl_s, timer=clock)
        self._unshared: set[MemoryKey] = set()  # remembered while Redis was down
        self._set_if_newer = link.client.register_script(_SET_IF_NEWER)
        link.on_back(self.share_again)

    def _key(self, key: MemoryKey) -> str:
        return self.link.key("image", *key)

    def _turns_key(self, key: MemoryKey) -> str:
        return self.link.key("turns", *key)

    async def remember(self, key: MemoryKey, image: ImageRef) -> None:
        kept = _Kept(image, self._clock())
        self._local[key] = kept
        self._turns.pop(key, None)
        try:
            await self.link.call(lambda r: r.set(self._key(key), _dumps(kept), px=int(self.ttl_s * 1000)))
            await self.link.call(lambda r: r.delete(self._turns_key(key)))
        except RedisUnavailable:
            self._unshared.add(key)
        else:
            self._unshared.discard(key)

    async def recall(self, key: MemoryKey) -> ImageRef | None:
        local = self._local.get(key)
        try:
            raw = await self.link.call(lambda r: r.get(self._key(key)))
        except RedisUnavailable:
            return local.image if local is not None else None
        shared = _loads(raw) if raw is not None else None
        newest = max((k for k in (local, shared) if k is not None), key=lambda k: k.at, default=None)
        return newest.image if newest is not None else None

    async def history(self, key: MemoryKey) -> History:
        """The turns in Redis (another process may have answered the last one), else this
        process's copy."""
        try:
            raw = await self.link.call(lambda r: r.get(self._turns_key(key)))
        except RedisUnavailable:
            return self._turns.get(key, ())
        return _load_turns(raw) if raw is not None else ()

    async def keep_history(self, key: MemoryKey, history: History) -> None:
        self._turns[key] = history
        text = json.dumps([list(turn) for turn in history])
        with contextlib.suppress(RedisUnavailable):  # this process's copy answers while it is down
            await self.link.call(lambda r: r.set(self._turns_key(key), text, px=int(self.ttl_s * 1000)))

    async def forget(self, key: MemoryKey) -> None:
        self._local.pop(key, None)
        self._turns.pop(key, None)
        self._unshared.discard(key)
        with contextlib.suppress(RedisUnavailable):  # other processes' copies expire on their own
            await self.link.call(lambda r: r.delete(self._key(key), self._turns_key(key)))

    async def count(self) -> int:
        """Images remembered now: every process's (a scan of the keys; /stats only), or this
        process's while Redis is down."""
        pattern = self._key(("*", "*", "*"))

        async def scan(r: Redis) -> int:
            return sum([1 async for _ in r.scan_iter(match=pattern, count=1000)])

        try:
            return await self.link.call(scan)
        except RedisUnavailable:
            self._local.expire()
            return len(self._local)

    async def share_again(self) -> None:
        """Redis is back: write what was remembered while it was down (newer images win)."""
        for key in list(self._unshared):
            kept = self._local.get(key)
            if kept is not None:
                await self._share(key, kept)
            self._unshared.discard(key)

    async def _share(self, key: MemoryKey, kept: _Kept) -> None:
        left_ms = int((kept.at + self.ttl_s - self._clock()) * 1000)
        if left_ms > 0:
            args: list[str | float] = [_dumps(kept), kept.at, left_ms]
            await self.link.call(lambda _: self._set_if_newer([self._key(key)], args))


def _dumps(kept: _Kept) -> str:
    return json.dumps({"image": dataclasses.asdict(kept.image), "at": kept.at})


def _load_turns(raw: bytes | str) -> History:
    try:
        return tuple((str(question), str(answer)) for question, answer in json.loads(raw))
    except (ValueError, TypeError):
        return ()  # written by another version: as if the conversation started afresh


def _loads(raw: bytes | str) -> _Kept | None:
    try:
        data = json.loads(raw)
        return _Kept(ImageRef(**data["image"]), float(data["at"]))
    except (ValueError, TypeError, KeyError):
        return None  # written by another version: as if nothing was remembered
