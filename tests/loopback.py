"""What the loopback fakes share: a server's lifetime, a call recorder, injected faults, a download gate.

Each fake (``fake_telegram.py``, ``fake_discord.py``, ``fake_hub.py``) is an aiohttp app on a free
127.0.0.1 port that a real, unmodified client library talks to. :class:`LoopbackServer` gives it:

- lifetime: ``async with Fake() as fake`` on the test's event loop, or ``with Fake() as fake`` on a
  loop in a thread of its own, for clients that block (``subprocess.run`` of a child process);
- a :class:`Recorder`: every request, with its route, params, status and monotonic time, so a
  test can assert what did and did not happen, and ``await fake.wait_for(predicate)`` instead of
  sleeping: the predicate is re-checked on every new record, the timeout is only a safety net
  whose error says what did arrive;
- faults: :meth:`~LoopbackServer.fail_next` (the next calls of a route fail, or every call until
  :meth:`~LoopbackServer.clear_failures`), :meth:`~LoopbackServer.hang` (a request is accepted
  and never answered until cleared or stopped);
- a download gate: :meth:`~LoopbackServer.hold_downloads` keeps file downloads waiting (the
  request arrived, no bytes sent) until :meth:`~LoopbackServer.release_downloads`;
- what the bot sent: an :class:`Outbox` of :class:`SentMessage` records (each fake's own kind,
  with its platform's fields), and the :class:`UploadedFile` parts of multipart requests.

A route is what a fake records a request under: a Bot API method name (``"sendMessage"``), a REST
route template (``"POST /channels/{channel_id}/messages"``), or :data:`DOWNLOAD`. Matching
ignores case.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Self, TypeVar

from aiohttp import web

T = TypeVar("T")
#: re-checked on every change; its first truthy result ends the wait
Predicate = Callable[[Sequence["Record"]], T | None]

#: the route every fake records file downloads under (params: the file's id)
DOWNLOAD = "download"
#: the status of a request recorded on arrival because a hang holds it unanswered
HELD = 0
#: what a child process's environment needs to reach a fake on 127.0.0.1 even behind a proxy
DIRECT: Mapping[str, str] = MappingProxyType(
    {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
)


def free_port() -> int:
    """A loopback port nothing listens on now (for a child process that must be told its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Record:
    """One request a fake received: its route, decoded params, HTTP status, ``time.monotonic()``."""

    route: str
    params: Any = None
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    path: str = ""


@dataclass(eq=False)
class _Waiter:
    predicate: Callable[[Sequence[Record]], Any]
    future: asyncio.Future[Any]


class Recorder:
    """Every record, and the tests waiting for a predicate over them (re-checked on each change)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._waiters: list[_Waiter] = []

    def add(self, record: Record) -> Record:
        self.records.append(record)
        self.changed()
        return record

    def of(self, route: str) -> list[Record]:
        key = route.lower()
        return [r for r in self.records if r.route.lower() == key]

    def changed(self) -> None:
        """Re-check every waiting predicate (records also call this; fakes call it on other news)."""
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            try:
                result = waiter.predicate(self.records)
            except Exception as exc:
                self._waiters.remove(waiter)
                _resolve(waiter.future, exc)
                continue
            if result:
                self._waiters.remove(waiter)
                _resolve(waiter.future, result)

    async def wait_for(
        self,
        predicate: Predicate[T],
        *,
        timeout: float = 10.0,
        what: str | Callable[[], str] = "the condition",
    ) -> T:
        """``predicate(records)``'s first truthy result; the timeout is a safety net naming what came."""
        result = predicate(self.records)
        if result:
            return result
        waiter = _Waiter(predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            described = what() if callable(what) else what
            last = ", ".join(f"{r.route} {r.status}" for r in self.records[-12:]) or "none"
            raise TimeoutError(
                f"{described}: not within {timeout} s; {len(self.records)} calls, the last: {last}"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request (Telegram's ``sendPhoto`` with bytes, Discord's ``files[n]``)."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class SentMessage:
    """A message the bot sent: the platform's JSON for it, and when (``time.monotonic()``); each
    fake's subclass adds its platform's fields."""

    message: Any
    at: float


S = TypeVar("S", bound=SentMessage)


class Outbox(Generic[S]):
    """Every message the bot sent, oldest first and by destination (a chat or a channel), with a
    read cursor per destination: successive waits return successive messages, and a message sent
    before a wait is not missed."""

    def __init__(self, recorder: Recorder) -> None:
        self.messages: list[S] = []
        self._recorder = recorder
        self._by_destination: dict[int, list[S]] = {}
        self._cursor: dict[int, int] = {}

    def add(self, destination: int, sent: S) -> None:
        self.messages.append(sent)
        self._by_destination.setdefault(destination, []).append(sent)

    def to(self, destination: int) -> list[S]:
        """Everything sent to ``destination``, oldest first."""
        return list(self._by_destination.get(destination, ()))

    async def next(
        self, destination: int, count: int, *, timeout: float, what: Callable[[list[S]], str]
    ) -> list[S]:
        """The next ``count`` messages sent to ``destination`` that no earlier call returned;
        ``what(unread)`` describes what did arrive, should the timeout pass."""
        start = self._cursor.get(destination, 0)
        target = start + count
        sent = self._by_destination.setdefault(destination, [])
        got = await self._recorder.wait_for(
            lambda _: sent[start:target] if len(sent) >= target else None,
            timeout=timeout,
            what=lambda: what(sent[start:]),
        )
        self._cursor[destination] = target
        return got


def _resolve(future: asyncio.Future[Any], outcome: Any) -> None:
    """Settle a waiter's future from any thread (the Hub fake records on a loop of its own)."""

    def settle() -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        settle()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(settle)


@dataclass(frozen=True)
class Failure:
    """How an injected fault answers; each fake renders it in its platform's error shape."""

    status: int = 500
    message: str | None = None  # the description; None: the fake's default for the status
    code: int = 0  # Discord's JSON error code
    retry_after: float | None = None
    hang: bool = False  # accept the request, never answer it until cleared or stopped


class LoopbackServer:
    """An aiohttp app on a free 127.0.0.1 port; subclasses add routes and platform behaviour."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.closing = False
        self.held_downloads: list[Any] = []  # ids of downloads that reached the hold
        self._failures: dict[str, deque[Failure]] = {}
        self._standing: dict[str, Failure] = {}  # failures until clear_failures()
        self._gate: asyncio.Event | None = None  # set or None: downloads flow
        self._unhang: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._thread: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None

    def add_routes(self, app: web.Application) -> None:
        """A subclass adds its routes."""
        raise NotImplementedError

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on a free loopback port; returns self."""
        self.closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def on_stop(self) -> None:
        """Called first by :meth:`stop`: a subclass wakes its long polls, closes its websockets."""

    async def stop(self) -> None:
        """Answer what waits (long polls, held downloads, hangs) at once, then close the server."""
        self.closing = True
        await self.on_stop()
        self.release_downloads()
        self._release_hung()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        """Serve from a loop in a thread of its own, for clients that block the caller's thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        self._thread = (loop, thread)
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        loop, thread = self._thread
        self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- records -----------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Record]:
        """Every request, oldest first."""
        return self.recorder.records

    def calls_of(self, route: str) -> list[Record]:
        """Every request to ``route`` (case-insensitive), oldest first."""
        return self.recorder.of(route)

    def clear_calls(self) -> None:
        self.recorder.records.clear()

    def record(self, route: str, params: Any = None, status: int = 200, path: str = "") -> Record:
        return self.recorder.add(Record(route, params, status, time.monotonic(), path))

    def changed(self) -> None:
        """Tell waiting tests that state other than the records changed."""
        self.recorder.changed()

    async def wait_for(
        self,
        predicate: Predicate[T],
        *,
        timeout: float = 10.0,
        what: str | Callable[[], str] = "the condition",
    ) -> T:
        """``predicate(calls)``'s first truthy result, re-checked on every call (no polling)."""
        return await self.recorder.wait_for(predicate, timeout=timeout, what=what)

    async def wait_for_calls(
        self, route: str, count: int = 1, *, status: int | None = None, timeout: float = 10.0
    ) -> list[Record]:
        """The calls of ``route`` (with ``status``, if given) once there are at least ``count``."""

        def enough(_: Sequence[Record]) -> list[Record] | None:
            calls = [c for c in self.calls_of(route) if status is None or c.status == status]
            return calls if len(calls) >= count else None

        return await self.wait_for(enough, timeout=timeout, what=f"{count} {route} calls (status {status})")

    # -- faults ------------------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        *,
        status: int = 500,
        message: str | None = None,
        code: int = 0,
        retry_after: float | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` calls of ``route`` fail (``times=None``: until :meth:`clear_failures`).

        ``message`` is the error's description (a fake's default for the status otherwise);
        ``retry_after`` goes where the platform puts it (429s); ``code`` is Discord's JSON code.
        """
        self._add_failure(route, Failure(status, message, code, retry_after), times)

    def hang(self, route: str, *, times: int | None = None) -> None:
        """Accept calls of ``route`` and never answer them, until :meth:`clear_failures` or stop.

        A held call is recorded on arrival with status :data:`HELD`; once released it is
        served (and recorded) as usual.
        """
        self._add_failure(route, Failure(hang=True), times)

    def clear_failures(self) -> None:
        """Forget every injected fault and let hung calls through."""
        self._failures.clear()
        self._standing.clear()
        self._release_hung()

    def take_failure(self, route: str) -> Failure | None:
        """For subclasses: the fault for this call of ``route``, if one was injected."""
        key = route.lower()
        queue = self._failures.get(key)
        if queue:
            return queue.popleft()
        return self._standing.get(key)

    async def held(self, route: str, params: Any = None, path: str = "") -> None:
        """For subclasses: record a hung call, then wait until it is released."""
        self.record(route, params, HELD, path)
        if self._unhang is None:
            self._unhang = asyncio.Event()
        if not self.closing:
            await self._unhang.wait()

    def _add_failure(self, route: str, failure: Failure, times: int | None) -> None:
        if times is None:
            self._standing[route.lower()] = failure
        else:
            self._failures.setdefault(route.lower(), deque()).extend([failure] * times)

    def _release_hung(self) -> None:
        unhang, self._unhang = self._unhang, None
        if unhang is not None:
            unhang.set()

    # -- downloads ---------------------------------------------------------------------------------

    @property
    def downloads(self) -> list[Any]:
        """The ids of the files served, one per successful download, oldest first."""
        return [c.params for c in self.calls_of(DOWNLOAD) if c.status == 200]

    def hold_downloads(self) -> None:
        """Make file downloads wait (request received, no bytes sent) until :meth:`release_downloads`."""
        if self._gate is None:
            self._gate = asyncio.Event()

    def release_downloads(self) -> None:
        """Let held downloads (and later ones) through."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def wait_for_held_downloads(self, count: int = 1, *, timeout: float = 10.0) -> list[Any]:
        """The ids of held downloads once at least ``count`` have reached the hold."""
        return await self.wait_for(
            lambda _: list(self.held_downloads) if len(self.held_downloads) >= count else None,
            timeout=timeout,
            what=lambda: f"{len(self.held_downloads)} of {count} held downloads",
        )

    async def download_gate(self, file_id: Any) -> None:
        """For subclasses: pass a download through the gate (waiting while downloads are held)."""
        gate = self._gate
        if gate is None:
            return
        self.held_downloads.append(file_id)
        self.changed()
        await gate.wait()
