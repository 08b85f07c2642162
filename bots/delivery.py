"""Getting a message out despite a flaky network: bounded retries with backoff (tenacity).

Platforms' own flood control is handled by their libraries (python-telegram-bot's
``AIORateLimiter``, discord.py's 429 handling); this covers what is left: connections that drop,
5xx answers, timeouts. Each adapter says which of its errors are worth another try.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: tries in all (the first and the retries): 0.5 s, 1 s and 2 s of backoff (+ jitter) at most
ATTEMPTS = 4
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 4.0


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    what: str,
    attempts: int = ATTEMPTS,
) -> T:
    """``await call()``, again after a transient failure (at most ``attempts`` tries in all);
    the last error, or any other, is raised."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S, jitter=FIRST_WAIT_S / 2),
        retry=retry_if_exception(transient),
        reraise=True,
        before_sleep=lambda state: _log_retry(state, what),
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")


def _log_retry(state: RetryCallState, what: str) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "%s failed (%s: %s); try %d of %d in %.1f s",
        what,
        type(error).__name__,
        error,
        state.attempt_number + 1,
        ATTEMPTS,
        state.upcoming_sleep,
    )
