"""Starting and stopping the front ends (chat adapters, the web server): a start that fails or
hangs is one log line and the others go on; a stop answers what each one already received."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("vqa_chat")


class FrontEnd(Protocol):
    """A platform adapter (or the web server) as the service drives it."""

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    def health(self) -> list[str]:
        """More /health lines about it (none for most)."""
        ...

    async def stop(self) -> bool:
        """Stop; True when every question it had received was answered."""
        ...


class Stopped(Exception):
    """SIGTERM or SIGINT arrived while waiting."""


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event, *, timeout: float | None = None) -> T:
    """``work``'s result, unless ``stop`` is set first: then ``work`` is cancelled (so it cleans up
    after itself) and ``Stopped`` is raised. Raises what ``work`` raises, and ``TimeoutError``
    after ``timeout`` seconds (also cancelling it)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if stop.is_set():
        raise Stopped
    raise TimeoutError


async def start_front_end(name: str, front: FrontEnd, stop: asyncio.Event, timeout: float) -> bool:
    """Start one front end; True when it did. A failure or a hang is one log line, so that the
    others go on."""
    try:
        await unless_stopped(front.start(), stop, timeout=timeout)
    except Stopped:
        return False
    except TimeoutError:
        log.error("%s could not start: not connected after %.0f s (LOGIN_TIMEOUT_S)", name, timeout)
    except Exception as exc:
        log.error("%s could not start: %s", name, str(exc) or type(exc).__name__)
    else:
        return True
    return False


async def stop_front_ends(front_ends: dict[str, FrontEnd], timeout: float) -> bool:
    """Stop every front end at once; each answers what it already received. True: all answered."""

    async def stop_one(name: str, front: FrontEnd) -> bool:
        try:
            async with asyncio.timeout(timeout + 2):
                return await front.stop()
        except Exception:
            log.exception("%s did not stop cleanly", name)
            return False

    return all(await asyncio.gather(*(stop_one(name, front) for name, front in front_ends.items())))
