"""The "typing…" indicator, shown only while an answer takes longer than a moment.

Most answers take milliseconds; an indicator for those is one more platform request per
question (Telegram counts it against the bot's flood limits) and nothing the user would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)

#: show it once a turn has taken this long
TYPING_AFTER_S = 0.5
#: platforms show it for about 5-10 s; repeat while the answer takes longer
TYPING_EVERY_S = 4.5


@contextlib.asynccontextmanager
async def typing_while_slow(
    send_typing: Callable[[], Awaitable[object]],
    *,
    after: float = TYPING_AFTER_S,
    every: float = TYPING_EVERY_S,
) -> AsyncIterator[None]:
    """Send ``send_typing()`` after ``after`` seconds, then every ``every`` s, until the block ends.

    A timer, not a task, waits for the first one: a quick turn costs no task at all.
    """
    tasks: list[asyncio.Task[None]] = []

    async def keep_typing() -> None:
        while True:
            try:
                await send_typing()
            except Exception as exc:  # cosmetic: never worth failing a turn for
                log.debug("could not show typing: %s", exc)
            await asyncio.sleep(every)

    timer = asyncio.get_running_loop().call_later(
        after, lambda: tasks.append(asyncio.create_task(keep_typing()))
    )
    try:
        yield
    finally:
        timer.cancel()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
