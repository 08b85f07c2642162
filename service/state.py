"""Where rate limits, per-user counts, follow-up images, answers' buttons, cached answers and
Telegram update ids live: this process's memory, or Redis (``REDIS_URL``) shared by every process
that uses it. Which one is decided here, once, from the settings."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bots.feedback import SharedAnswers
    from bots.memory import ImageStore
    from bots.ratelimit import RateLimiter
    from bots.state.link import RedisLink
    from bots.state.once import Once
    from bots.user_queue import SharedLoad
    from config import Settings
    from vqa_engine.serving.prediction_cache import SharedPredictions


@dataclasses.dataclass(frozen=True)
class SharedState:
    """The per-user and per-update state the chat core and adapters read and write: in this
    process's memory, or in Redis behind ``link``."""

    limiter: RateLimiter
    memory: ImageStore
    once: Once
    in_flight: SharedLoad | None = None  # each user's questions in flight across processes
    answers: SharedAnswers | None = None  # answers' buttons work on every process
    cache: SharedPredictions | None = None  # the engine's answers across processes
    link: RedisLink | None = None

    def health(self) -> list[str]:
        """/health's line about Redis (none without it)."""
        return [self.link.describe()] if self.link is not None else []


def memory_state(settings: Settings) -> SharedState:
    """Rate limits, follow-up images and update ids in this process only."""
    from bots.memory import ImageMemory
    from bots.options import ChatOptions
    from bots.ratelimit import MemoryRateLimiter
    from bots.state.once import MemoryOnce

    chat = settings.section(ChatOptions)
    return SharedState(
        limiter=MemoryRateLimiter(chat.rate_limit),
        memory=ImageMemory(ttl_s=chat.follow_up_minutes * 60),
        once=MemoryOnce(),
    )


def build_state(settings: Settings) -> SharedState:
    """In Redis when ``REDIS_URL`` is set, else in this process. Nothing connects yet: the owner
    calls ``link.start()`` (which never raises: without Redis the process runs on its own) and
    ``link.close()``."""
    from bots.options import ChatOptions
    from bots.state.options import SharedStateOptions

    shared = settings.section(SharedStateOptions)
    if shared.redis_url is None:
        return memory_state(settings)
    from bots.state.link import RedisLink
    from bots.state.redis_answers import RedisAnswers
    from bots.state.redis_cache import RedisPredictionCache
    from bots.state.redis_limiter import RedisRateLimiter
    from bots.state.redis_load import RedisUserLoad
    from bots.state.redis_memory import RedisImageMemory
    from bots.state.redis_once import RedisOnce

    chat = settings.section(ChatOptions)
    link = RedisLink(
        shared.redis_url.get_secret_value(),
        prefix=shared.redis_prefix,
        timeout_s=shared.redis_timeout_s,
        retry_max_s=shared.redis_retry_max_s,
    )
    cache = None
    if shared.redis_cache_size > 0:
        cache = RedisPredictionCache(link, ttl_s=shared.redis_cache_ttl_s, size=shared.redis_cache_size)
    return SharedState(
        limiter=RedisRateLimiter(link, chat.rate_limit),
        memory=RedisImageMemory(link, ttl_s=chat.follow_up_minutes * 60),
        once=RedisOnce(link),
        answers=RedisAnswers(link),
        in_flight=RedisUserLoad(
            link, max_in_flight=chat.max_in_flight_per_user, max_waiting=chat.max_queued_per_user
        ),
        cache=cache,
        link=link,
    )
