"""The process's one connection to Redis, and what happens when Redis goes away.

Every Redis-backed part of the state (``bots.state.redis_*``) calls Redis through
:meth:`RedisLink.call`. When a call fails because Redis is unreachable or too slow, the link
says so once (one warning, not one per message), marks Redis down and starts reconnecting with
exponential backoff and jitter; while it is down every call raises :class:`RedisUnavailable` at
once, without touching the network, and each part falls back to this process (rate limits let
questions through, images and answers are kept in memory). Once a ``PING`` answers again the
link is up, the parts are told (``on_back``: they copy back what they kept meanwhile), and one
line says Redis is back. Nothing here raises into a chat turn except ``RedisUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bots.state.options import DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_RETRY_MAX_S, DEFAULT_REDIS_TIMEOUT_S

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
#: the first reconnect waits up to this long; each failure doubles it, up to ``retry_max_s``
RETRY_BASE_S = 0.25
#: what makes Redis "down" (anything else is a bug in a call, reported as an error)
_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class RedisUnavailable(Exception):
    """Redis cannot be used now: the caller falls back to this process."""


def describe_url(url: str) -> str:
    """Where Redis is, without the password: ``host:6379/0`` or the socket's path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


class RedisLink:
    """Owns the Redis client (one connection pool) of a process; built and closed in ``service``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        timeout_s: float = DEFAULT_REDIS_TIMEOUT_S,
        retry_max_s: float = DEFAULT_REDIS_RETRY_MAX_S,
    ) -> None:
        # one quick retry on a fresh connection: after a Redis restart the pooled ones are dead
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self.url = url
        self.prefix = prefix
        self.where = describe_url(url)
        self._backoff = ExponentialWithJitterBackoff(cap=retry_max_s, base=RETRY_BASE_S)
        self._up = False
        self._started = False
        self.down_since: float | None = None  # time.time()
        self.reason = "not connected yet"
        self._reconnecting: asyncio.Task[None] | None = None
        self._on_back: list[Callable[[], Awaitable[None]]] = []

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (one ``PING``). Never raises: when Redis is not there, the process starts on its
        own state and keeps trying in the background."""
        self._started = True
        try:
            await self._ping()
        except _OUTAGE as exc:
            self._went_down(exc)
            return
        self._up = True
        self.down_since = None
        log.info("redis: connected to %s; rate limits, memory and the cache are shared", self.where)

    async def close(self) -> None:
        """Stop reconnecting; close the connections."""
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._up = False
        await self.client.aclose()

    # -- using it ---------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def status(self) -> Literal["up", "down"]:
        return "up" if self._up else "down"

    def key(self, *parts: str) -> str:
        """A key in this deployment's namespace: ``PREFIX:part:part``."""
        return ":".join((self.prefix, *parts))

    def on_back(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` each time Redis is reachable again (after an outage)."""
        self._on_back.append(callback)

    async def call(self, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``operation(client)``'s result. Raises ``RedisUnavailable`` at once while Redis is down,
        and when this call finds it down (or too slow: ``REDIS_TIMEOUT_S``)."""
        if not self._up:
            raise RedisUnavailable(self.reason)
        try:
            return await operation(self.client)
        except _OUTAGE as exc:
            self._went_down(exc)
            raise RedisUnavailable(self.reason) from exc
        except RedisError as exc:  # a command Redis refused: a bug (or a Redis we cannot use)
            log.error("redis: a command failed: %s", exc)
            raise RedisUnavailable(str(exc)) from exc

    async def get_json(self, key: str, parse: Callable[[dict[str, Any]], R], what: str) -> R | None:
        """The JSON value at ``key`` read with ``parse``; None when absent, when Redis is down, or
        when it cannot be read (written by another version: logged as ``what``, then ignored)."""
        try:
            raw = await self.call(lambda r: r.get(key))
        except RedisUnavailable:
            return None
        if raw is None:
            return None
        try:
            return parse(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            log.warning("redis: an unreadable %s (another version?); ignored", what)
            return None

    def describe(self) -> str:
        """One line for /health: ``redis: up (host:6379/0)`` or since when and why it is down."""
        if self._up:
            return f"redis: up ({self.where})"
        since = ""
        if self.down_since is not None:
            since = time.strftime(" since %H:%M:%S UTC", time.gmtime(self.down_since))
        return f"redis: down{since} ({self.reason}); limits open, memory and cache in this process"

    # -- outages ----------------------------------------------------------------------------

    async def _ping(self) -> None:
        await self.client.ping()  # type: ignore[misc]  # (typed for the sync and async clients alike)

    def _went_down(self, exc: BaseException) -> None:
        self.reason = _short(exc)
        if not self._up and self._reconnecting is not None:
            return  # already known, already reconnecting
        self._up = False
        self.down_since = time.time()
        log.warning(
            "redis: down (%s); rate limits let questions through, memory and the cache stay in this "
            "process until it is back",
            self.reason,
        )
        if self._started:
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="redis-reconnect"
            )

    async def _reconnect(self) -> None:
        failures = 0
        while True:
            failures += 1
            await asyncio.sleep(self._backoff.compute(failures))
            try:
                await self._ping()
            except _OUTAGE as exc:
                self.reason = _short(exc)
                continue
            except RedisError as exc:
                self.reason = _short(exc)
                continue
            break
        self._reconnecting = None
        self._up = True
        outage = time.time() - self.down_since if self.down_since is not None else 0.0
        for callback in list(self._on_back):  # (first: "back" means what was kept is shared)
            try:
                await callback()
            except RedisUnavailable:
                return  # down again: the next reconnect runs the callbacks again
            except Exception:
                log.exception("redis: could not copy this process's state back")
        self.down_since = None
        log.warning("redis: back at %s after %.1f s; state is shared again", self.where, outage)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
