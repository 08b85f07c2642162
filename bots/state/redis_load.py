"""Each user's questions in flight or waiting, counted in Redis across every process.

Each process keeps its own ordered line per user (``bots.user_queue.UserQueue``); this count makes
the user's bound — ``MAX_IN_FLIGHT_PER_USER`` running plus ``MAX_QUEUED_PER_USER`` waiting — hold
for the user across replicas, not per replica. Key: ``PREFIX:load:{platform}:{user}``, a sorted
set of tickets scored by when they were admitted (Redis's own clock). A ticket leaves when its
question is answered; one whose process died ages out after ``lease_s``, and the key expires
``lease_s`` after the user's last question.

While Redis is down the count is not kept (each process's own line still bounds the user).
"""

from __future__ import annotations

import contextlib
import secrets

from bots.state.link import RedisLink, RedisUnavailable
from bots.user_queue import QueueFullError

#: a question is answered, refused or timed out well within this (seconds)
DEFAULT_LEASE_S = 300

#: KEYS[1] the user's tickets; ARGV: ticket, bound, lease (s). Returns {admitted, tickets before}
_ENTER = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - lease)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
    return {0, n}
end
redis.call('ZADD', KEYS[1], t, ARGV[1])
redis.call('EXPIRE', KEYS[1], lease)
return {1, n}
"""


class RedisUserLoad:
    """``SharedLoad`` in Redis: at most ``max_in_flight + max_waiting`` questions per user."""

    def __init__(
        self, link: RedisLink, *, max_in_flight: int, max_waiting: int, lease_s: int = DEFAULT_LEASE_S
    ) -> None:
        self.link = link
        self.max_in_flight = max_in_flight
        self.bound = max_in_flight + max_waiting
        self.lease_s = lease_s
        self._enter = link.client.register_script(_ENTER)

    def _key(self, platform: str, user_id: str) -> str:
        return self.link.key("load", platform, user_id)

    async def enter(self, platform: str, user_id: str) -> str | None:
        ticket = secrets.token_hex(8)
        key = self._key(platform, user_id)
        try:
            admitted, before = await self.link.call(
                lambda _: self._enter(keys=[key], args=[ticket, self.bound, self.lease_s])
            )
        except RedisUnavailable:
            return None
        if not admitted:
            raise QueueFullError(max(0, int(before) - self.max_in_flight))
        return ticket

    async def leave(self, platform: str, user_id: str, ticket: str) -> None:
        with contextlib.suppress(RedisUnavailable):  # then it ages out after the lease
            await self.link.call(lambda r: r.zrem(self._key(platform, user_id), ticket))
