"""Values in Redis bounded by age and by count: each value under its own key with an expiry, and
an index (a sorted set of those keys by when they were written, expiring with them) from which the
oldest are deleted once there are more than the bound. One Lua script, so it is atomic."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

#: KEYS[1] the value's key, KEYS[2] the index; ARGV: the value, its time to live (s), the bound
_PUT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZADD', KEYS[2], t, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t - ttl)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[2], over)
    for i = 1, #oldest, 2 do
        redis.call('DEL', oldest[i])
    end
end
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""


def bounded_put(client: Redis) -> AsyncScript:
    """The script, registered with ``client``:
    ``await put(keys=[key, index], args=[value, ttl_s, bound])``."""
    return client.register_script(_PUT)
