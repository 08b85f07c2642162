"""Each user's questions in a line: a few run at once, the rest wait, answers leave in order.

A user who sends three captioned photos at once expects three answers, in the order asked —
not a refusal. ``MAX_IN_FLIGHT_PER_USER`` questions of one user run together (so one user cannot
fill the engine's batches alone), up to ``MAX_QUEUED_PER_USER`` more wait their turn, and only
beyond that is a question turned away. A question that finishes before an earlier one of the
same user waits for it, so replies go out in the order the questions came.

The line itself is this process's; with several processes (replicas behind a load balancer) a
``SharedLoad`` also counts each user's questions across all of them, so that the bound holds for
the user, not per process (``bots.state.redis_load``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from bots.options import DEFAULT_MAX_IN_FLIGHT_PER_USER, DEFAULT_MAX_QUEUED_PER_USER


class QueueFullError(Exception):
    """The user already has ``waiting`` questions waiting.

    ``retry_after_s``: the user is asked to send the question again once an earlier one is
    answered (``bots.replies.queue_full``), which is soon: one second.
    """

    retry_after_s = 1

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} questions already waiting")
        self.waiting = waiting


class SharedLoad(Protocol):
    """Each user's questions admitted and not yet answered, in every process together."""

    async def enter(self, platform: str, user_id: str) -> str | None:
        """A ticket for one more question of the user (None: not counted, e.g. the store is
        down); raises ``QueueFullError`` when the user already has as many as the bound allows."""
        ...

    async def leave(self, platform: str, user_id: str, ticket: str) -> None:
        """The question is answered (or refused, or cancelled): it no longer counts."""
        ...


@dataclass(eq=False)
class _Ticket:
    start: asyncio.Future[None]
    leave: asyncio.Future[None]
    started: bool = False
    finished: bool = False


@dataclass
class _Line:
    tickets: deque[_Ticket] = field(default_factory=deque)  # arrival order, until they leave
    running: int = 0

    @property
    def waiting(self) -> int:
        return sum(1 for t in self.tickets if not t.started)


class UserQueue:
    """Per-key (one key per user) ordered admission; all on the event loop, no locks needed."""

    def __init__(
        self,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT_PER_USER,
        max_waiting: int = DEFAULT_MAX_QUEUED_PER_USER,
    ) -> None:
        if max_in_flight < 1 or max_waiting < 0:
            raise ValueError("max_in_flight must be at least 1 and max_waiting at least 0")
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._lines: dict[Hashable, _Line] = {}

    def admit(self, key: Hashable) -> Turn:
        """A place in ``key``'s line; raises ``QueueFullError`` when it would wait beyond the bound."""
        line = self._lines.get(key)
        if line is not None and line.running >= self.max_in_flight and line.waiting >= self.max_waiting:
            raise QueueFullError(line.waiting)
        if line is None:
            line = self._lines[key] = _Line()
        loop = asyncio.get_running_loop()
        ticket = _Ticket(loop.create_future(), loop.create_future())
        line.tickets.append(ticket)
        self._start_waiting(line)
        return Turn(self, key, line, ticket)

    def waiting(self, key: Hashable) -> int:
        """How many of ``key``'s questions wait for a slot."""
        line = self._lines.get(key)
        return line.waiting if line is not None else 0

    @property
    def users(self) -> int:
        """Users with a question running or waiting."""
        return len(self._lines)

    def _start_waiting(self, line: _Line) -> None:
        """Start waiting tickets, in order, while slots are free."""
        for ticket in line.tickets:
            if line.running >= self.max_in_flight:
                return
            if not ticket.started:
                ticket.started = True
                line.running += 1
                if not ticket.start.done():
                    ticket.start.set_result(None)

    def _finish(self, line: _Line, ticket: _Ticket) -> None:
        """Its work is done: free its slot; it may leave once every earlier ticket has left."""
        ticket.finished = True
        line.running -= 1
        self._start_waiting(line)
        if line.tickets[0] is ticket and not ticket.leave.done():
            ticket.leave.set_result(None)

    def _leave(self, key: Hashable, line: _Line, ticket: _Ticket) -> None:
        """Gone (answered, refused or cancelled): let the next one leave if it is done too."""
        if ticket.started and not ticket.finished:
            line.running -= 1
        ticket.started = ticket.finished = True
        was_head = bool(line.tickets) and line.tickets[0] is ticket
        if ticket in line.tickets:
            line.tickets.remove(ticket)
        self._start_waiting(line)
        if was_head and line.tickets and line.tickets[0].finished and not line.tickets[0].leave.done():
            line.tickets[0].leave.set_result(None)
        if not line.tickets and self._lines.get(key) is line:
            del self._lines[key]


class Turn:
    """``async with turn:`` runs when the user's slot is free. On the way out it waits until
    every earlier question of the user has left, so that replies go out in the order asked."""

    def __init__(self, queue: UserQueue, key: Hashable, line: _Line, ticket: _Ticket) -> None:
        self._queue, self._key, self._line, self._ticket = queue, key, line, ticket

    async def __aenter__(self) -> None:
        try:
            await self._ticket.start
        except BaseException:
            self.cancel()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._queue._finish(self._line, self._ticket)
            try:
                await self._ticket.leave
            except BaseException:
                self.cancel()
                raise
        self.cancel()  # (an error or a cancellation leaves at once: it holds no one up)

    def cancel(self) -> None:
        """Give the place up (the question was refused after admission, or it is over)."""
        self._queue._leave(self._key, self._line, self._ticket)
