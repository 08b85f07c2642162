"""The service: every chat platform whose token is set and, with an HTTP address, the web app
and HTTP API, in one event loop around one engine and one chat core, until SIGTERM or SIGINT.

``Service`` owns every resource under one ``AsyncExitStack``, so each is closed on every exit
path (a failed start, a signal during a login that hangs, a normal stop), in reverse order: the
front ends stop (answering what they received), then the engine, then the link to Redis, then
the prediction log. The HTTP server starts before the model loads, so that ``/healthz`` answers
and ``/readyz`` says what is still loading."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from config import SettingsError, check_writable
from service.builders import (
    HttpAddress,
    build_core,
    build_engine,
    build_front_ends,
    build_metrics,
    build_web_server,
    model_loader,
)
from service.exit_codes import EXIT_FAILURE, EXIT_USAGE
from service.front_ends import FrontEnd, Stopped, start_front_end, stop_front_ends, unless_stopped
from service.state import SharedState, build_state

if TYPE_CHECKING:
    from bots.core import ChatCore
    from bots.web.metrics import Metrics
    from bots.web.telegram_webhook import WebhookInbox
    from config import Settings
    from vqa_engine.backends.base import Backend
    from vqa_engine.serving.engine import VQAEngine

log = logging.getLogger("vqa_chat")

NO_PLATFORM = (
    "error: no chat platform is configured; set TELEGRAM_TOKEN and/or DISCORD_TOKEN (in the "
    "environment or in .env), or PORT for the web app. To try the model without a bot: "
    "python main.py web, or python main.py ask IMAGE QUESTION"
)
WEBHOOK_WITHOUT_HTTP = (
    "error: TELEGRAM_WEBHOOK_URL needs the HTTP server that receives the updates: set PORT "
    "(or WEB_PORT), and have TELEGRAM_WEBHOOK_URL reach it"
)


def configured_platforms(settings: Settings) -> list[str]:
    """The chat platforms whose token is set."""
    tokens = {"telegram": settings.telegram_token, "discord": settings.discord_token}
    return [name for name, token in tokens.items() if token is not None]


def uses_webhook(settings: Settings) -> bool:
    """Telegram's updates come by webhook (its route on the HTTP server), not long polling."""
    return settings.telegram_token is not None and settings.telegram_webhook_url is not None


def run_service(settings: Settings, *, chat: bool = True, http: HttpAddress | None = None) -> int:
    """``main.py`` and ``main.py web``: refuse settings that cannot work (exit 2), else serve on
    uvloop (where installed) until SIGTERM or SIGINT; the process's exit code."""
    if chat and http is None and not configured_platforms(settings):
        print(NO_PLATFORM, file=sys.stderr)
        return EXIT_USAGE
    if chat and http is None and uses_webhook(settings):
        print(WEBHOOK_WITHOUT_HTTP, file=sys.stderr)
        return EXIT_USAGE
    try:
        check_writable(settings.prediction_log, "PREDICTION_LOG")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import uvloop  # a faster event loop: the bot's own work per question drops by about a third
    except ImportError:  # not on Windows
        return asyncio.run(serve(settings, chat=chat, http=http))
    return uvloop.run(serve(settings, chat=chat, http=http))


async def serve(settings: Settings, *, chat: bool = True, http: HttpAddress | None = None) -> int:
    """The service until SIGTERM or SIGINT, then drained; its exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await Service(settings, chat=chat, http=http).run(stop)


@dataclasses.dataclass(frozen=True)
class Parts:
    """What one run built, before any front end starts."""

    state: SharedState
    engine: VQAEngine
    core: ChatCore
    metrics: Metrics | None  # with an HTTP address only


class Service:
    """Every chat platform whose token is set (``chat``) and the HTTP server (``http``), sharing
    one engine (whose model ``load_model`` loads: the configured one when not given)."""

    def __init__(
        self,
        settings: Settings,
        *,
        chat: bool = True,
        http: HttpAddress | None = None,
        load_model: Callable[[], Backend] | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.chat = chat
        self.load_model = load_model if load_model is not None else model_loader(settings)
        self.configured = configured_platforms(settings) if chat else []
        self.front_ends: dict[str, FrontEnd] = {}  # those that started
        self.all_answered: bool | None = None  # set once the front ends have stopped

    async def run(self, stop: asyncio.Event) -> int:
        """Build, start, serve until ``stop`` is set, stop; the process's exit code."""
        async with contextlib.AsyncExitStack() as stack:
            parts = await self.build(stack)
            failed = await self.start(parts, stop)
            if failed is not None:
                return failed
            log.info("serving on %s", ", ".join(self.front_ends))
            await stop.wait()
            log.info("stopping: answering the questions already received")
        if self.all_answered is False:
            print(
                "error: stopped with questions unanswered after SHUTDOWN_TIMEOUT_S "
                f"({self.settings.shutdown_timeout_s:g} s); their users got no reply",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        log.info("stopped")
        return 0

    async def build(self, stack: contextlib.AsyncExitStack) -> Parts:
        """The prediction log, the shared state, the engine, the metrics and the chat core, each
        entered into ``stack``; the front ends are stopped first of all on the way out."""
        from bots.prediction_log import PredictionLog

        settings = self.settings
        salt = settings.prediction_log_salt.get_secret_value() if settings.prediction_log_salt else None
        prediction_log = stack.enter_context(PredictionLog(settings.prediction_log, salt=salt))
        state = build_state(settings)
        if state.link is not None:
            stack.push_async_callback(state.link.close)  # after everything that uses it
            await state.link.start()  # (never raises: without Redis the process runs on its own)
        engine = build_engine(settings, self.load_model, shared_cache=state.cache)
        stack.push_async_callback(engine.close, drain_timeout=settings.shutdown_timeout_s)
        stack.push_async_callback(self.stop_front_ends)
        metrics = build_metrics(engine, self.connections, state=state) if self.http is not None else None
        core = build_core(
            settings,
            engine,
            prediction_log,
            state=state,
            platforms=self.platforms,
            observe=metrics.observe if metrics is not None else None,
            health=lambda: state.health() + self.front_end_health(),
        )
        return Parts(state=state, engine=engine, core=core, metrics=metrics)

    async def start(self, parts: Parts, stop: asyncio.Event) -> int | None:
        """The web server, then the model, then the chat platforms; an exit code when the
        service cannot go on (0: stopped while starting), None when it serves."""
        from vqa_engine import ModelPackageError

        inbox: WebhookInbox | None = None
        if self.chat and uses_webhook(self.settings):
            from bots.web.telegram_webhook import WebhookInbox

            inbox = WebhookInbox()
        if parts.metrics is not None and self.http is not None:
            failed = await self.start_web(parts, parts.metrics, self.http, inbox, stop)
            if failed is not None:
                return failed
        log.info("loading the model")
        try:
            await unless_stopped(parts.engine.start(), stop)
        except Stopped:
            return 0
        except ModelPackageError as exc:
            print(f"error: cannot load the model: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        await self.start_chat(parts, inbox, stop)
        if stop.is_set():
            log.info("stopped before every platform had connected")
            return 0
        if not self.front_ends:
            print("error: no chat platform could start (see the log above)", file=sys.stderr)
            return EXIT_FAILURE
        return None

    async def start_web(
        self,
        parts: Parts,
        metrics: Metrics,
        http: HttpAddress,
        inbox: WebhookInbox | None,
        stop: asyncio.Event,
    ) -> int | None:
        """The web server; an exit code when the service cannot go on without it."""
        web = build_web_server(
            self.settings,
            parts.core,
            parts.engine,
            metrics,
            http,
            self.connections,
            state=parts.state,
            webhook_inbox=inbox,
        )
        if await start_front_end("web", web, stop, self.settings.login_timeout_s):
            self.front_ends["web"] = web
        elif stop.is_set():
            return 0
        elif not self.configured:
            print("error: the web app could not start (see the log above)", file=sys.stderr)
            return EXIT_FAILURE
        return None

    async def start_chat(self, parts: Parts, inbox: WebhookInbox | None, stop: asyncio.Event) -> None:
        """Every configured chat platform, side by side; those that fail are left out. Telegram's
        updates by webhook go to its adapter once it has started."""
        if not self.chat:
            return
        candidates = build_front_ends(
            self.settings, parts.core, min_image_side=parts.engine.input_size, once=parts.state.once
        )
        timeout = self.settings.login_timeout_s
        started = await asyncio.gather(
            *(start_front_end(name, front, stop, timeout) for name, front in candidates.items())
        )
        self.front_ends.update(
            (name, front) for (name, front), ok in zip(candidates.items(), started, strict=True) if ok
        )
        telegram = self.front_ends.get("telegram")
        if inbox is not None and telegram is not None:
            from bots.telegram_bot import TelegramAdapter

            assert isinstance(telegram, TelegramAdapter)
            inbox.receiver = telegram.receive

    async def stop_front_ends(self) -> None:
        """Stop every front end that started, each answering what it already received."""
        self.all_answered = await stop_front_ends(self.front_ends, self.settings.shutdown_timeout_s)

    def connections(self) -> dict[str, bool]:
        """Each configured chat platform: connected now?"""
        return {name: name in self.front_ends and self.front_ends[name].connected for name in self.configured}

    def platforms(self) -> list[str]:
        """The front ends connected now."""
        return [name for name, front in self.front_ends.items() if front.connected]

    def front_end_health(self) -> list[str]:
        """/health's lines about the front ends (Discord's shards)."""
        return [line for front in self.front_ends.values() for line in front.health()]
