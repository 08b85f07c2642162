"""vqa-chat: answer questions about images, from the command line, in Telegram and Discord, and on the web.

python main.py ask IMAGE QUESTION [--json] [--top-k N]
python main.py                       # every chat platform whose token is set (+ HTTP when PORT is set)
python main.py web [--host H] [--port P]   # the web app and HTTP API alone
python main.py webhook info|delete   # Telegram's webhook: what Telegram has, or remove it
python main.py deploy space OWNER/NAME [--private] [--hardware FLAVOR] [--secret NAME]... [--variable NAME]...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from bots.web.options import DEFAULT_PORT as DEFAULT_WEB_PORT
from bots.web.options import WebOptions
from config import AskSettings, Settings, SettingsError, check_writable, env_files_read, load_settings
from config.log import setup_logging
from vqa_engine.checks.options import CheckOptions  # torch-free
from vqa_engine.options import ModelOptions  # torch-free

if TYPE_CHECKING:
    from bots.core import ChatCore
    from bots.feedback import SharedAnswers
    from bots.memory import ImageStore
    from bots.prediction_log import PredictionLog
    from bots.ratelimit import RateLimiter
    from bots.state.link import RedisLink
    from bots.state.once import Once
    from bots.user_queue import SharedLoad
    from bots.web.metrics import Metrics
    from bots.web.server import WebServer
    from bots.web.telegram_webhook import WebhookInbox
    from vqa_engine.backends.base import Backend
    from vqa_engine.serving.engine import VQAEngine
    from vqa_engine.serving.prediction_cache import SharedPredictions

#: what ``main.py --help`` says of the form that starts the service
WITHOUT_A_COMMAND = """without a command: the service. Every chat bot whose token is set (TELEGRAM_TOKEN,
DISCORD_TOKEN) runs, and with PORT (or WEB_PORT) set the web app and HTTP API run beside them,
in one process, until SIGTERM or Ctrl-C. With no token and no port it exits 2 saying so.

Settings come from the environment, then .env, then config/*.toml (docs/configuration.md)."""
EXIT_USAGE = 2  # unusable input or settings, as the DESIGN.md contract says
EXIT_FAILURE = 1

T = TypeVar("T")
log = logging.getLogger("vqa_chat")
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


class FrontEnd(Protocol):
    """A platform adapter as ``serve()`` drives it."""

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    def health(self) -> list[str]:
        """More /health lines about it (none for most)."""
        ...

    async def stop(self) -> bool:
        """Stop; True when every question it had received was answered."""
        ...


def read_image_arg(path: str, max_bytes: int) -> bytes:
    """The image bytes named on the command line (``-`` for stdin), never more than the cap + 1."""
    if path == "-":
        return sys.stdin.buffer.read(max_bytes + 1)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if file.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image")
    with file.open("rb") as f:
        return f.read(max_bytes + 1)  # the decoder reports "larger than" from the extra byte


def model_loader(settings: AskSettings | Settings) -> Callable[[], Backend]:
    """Loads the configured model or ensemble (from folders or the Hub) when called."""
    from functools import partial

    from vqa_engine.loading.loader import load_backend

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return partial(load_backend, settings.section(ModelOptions), token=token)


def ask(settings: AskSettings, image_path: str, question: str, *, as_json: bool, top_k: int) -> int:
    """``main.py ask``: load the configured model, answer once, print."""
    from bots.replies import format_cli
    from vqa_engine import ModelPackageError, VQAInputError
    from vqa_engine.preprocess import ImageLimits, clean_question
    from vqa_engine.serving.model_facts import facts_of

    try:
        question = clean_question(question)
        image = read_image_arg(image_path, settings.max_image_bytes)
    except (VQAInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = model_loader(settings)()
        backend.use_checks(settings.section(CheckOptions))
    except ModelPackageError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    try:
        prediction = backend.predict(image, question, top_k=top_k, limits=limits)
    except VQAInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    trained_on = facts_of(backend).trained_on
    print(json.dumps(prediction.to_dict()) if as_json else format_cli(prediction, trained_on=trained_on))
    return 0


@dataclasses.dataclass(frozen=True)
class HttpAddress:
    """Where the HTTP server listens."""

    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class State:
    """Where rate limits, per-user counts, follow-up images, cached answers and Telegram update
    ids live: this process's memory, or Redis behind ``link`` (``REDIS_URL``)."""

    limiter: RateLimiter
    memory: ImageStore
    once: Once
    load: SharedLoad | None = None  # each user's questions across processes
    answers: SharedAnswers | None = None  # answers' buttons work on every process
    cache: SharedPredictions | None = None  # the engine's answers across processes
    link: RedisLink | None = None

    def health(self) -> list[str]:
        return [self.link.describe()] if self.link is not None else []


def run_bots(settings: Settings, *, chat: bool = True, http: HttpAddress | None = None) -> int:
    """``main.py``: every platform whose token is set (``chat``) and the HTTP server (``http``),
    in one event loop, sharing one engine and one chat core."""
    if chat and http is None and not configured_platforms(settings):
        print(
            "error: no chat platform is configured; set TELEGRAM_TOKEN and/or DISCORD_TOKEN "
            "(in the environment or in .env), or PORT for the web app. To try the model without "
            "a bot: python main.py web, or python main.py ask IMAGE QUESTION",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if chat and http is None and uses_webhook(settings):
        print(
            "error: TELEGRAM_WEBHOOK_URL needs the HTTP server that receives the updates: set PORT "
            "(or WEB_PORT), and have TELEGRAM_WEBHOOK_URL reach it",
            file=sys.stderr,
        )
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


def configured_platforms(settings: Settings) -> list[str]:
    """The chat platforms whose token is set."""
    tokens = {"telegram": settings.telegram_token, "discord": settings.discord_token}
    return [name for name, token in tokens.items() if token is not None]


def uses_webhook(settings: Settings) -> bool:
    """Telegram's updates come by webhook (its route on the HTTP server), not long polling."""
    return settings.telegram_token is not None and settings.telegram_webhook_url is not None


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


async def serve(settings: Settings, *, chat: bool = True, http: HttpAddress | None = None) -> int:
    """Build the engine, the chat core and the front ends; run until SIGTERM/SIGINT; drain; exit 0.

    Every resource is entered into one ``AsyncExitStack``, so each is closed on every exit path
    (a failed start, a signal during a login that hangs, a normal stop), in reverse order: the
    front ends stop (answering what they received), then the engine, then the prediction log.
    The HTTP server starts before the model loads, so that ``/healthz`` answers and ``/readyz``
    says what is still loading.
    """
    from bots.prediction_log import PredictionLog
    from vqa_engine import ModelPackageError
    from vqa_engine.options import EngineOptions
    from vqa_engine.preprocess import ImageLimits
    from vqa_engine.serving.engine import VQAEngine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        salt = settings.prediction_log_salt.get_secret_value() if settings.prediction_log_salt else None
        prediction_log = stack.enter_context(PredictionLog(settings.prediction_log, salt=salt))
        state = build_state(settings)
        if state.link is not None:
            stack.push_async_callback(state.link.close)  # last: after everything that uses it
            await state.link.start()  # (never raises: without Redis the process runs on its own)
        engine = VQAEngine(
            model_loader(settings),
            options=settings.section(EngineOptions),
            limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
            checks=settings.section(CheckOptions),
            shared_cache=state.cache,
        )
        stack.push_async_callback(engine.close, drain_timeout=settings.shutdown_timeout_s)
        front_ends: dict[str, FrontEnd] = {}
        drained: list[bool] = []

        async def stop_all() -> None:
            drained.append(await stop_front_ends(front_ends, settings.shutdown_timeout_s))

        stack.push_async_callback(stop_all)
        configured = configured_platforms(settings) if chat else []

        def connections() -> dict[str, bool]:
            """Each configured chat platform: connected now?"""
            return {name: name in front_ends and front_ends[name].connected for name in configured}

        def health() -> list[str]:
            """/health's lines about the shared state and the front ends (Discord's shards)."""
            return state.health() + [line for front in front_ends.values() for line in front.health()]

        metrics = build_metrics(engine, connections, state=state) if http is not None else None
        core = build_core(
            settings,
            engine,
            prediction_log,
            state=state,
            platforms=lambda: [name for name, front in front_ends.items() if front.connected],
            observe=metrics.observe if metrics is not None else None,
            health=health,
        )
        inbox: WebhookInbox | None = None
        if chat and uses_webhook(settings):
            from bots.web.telegram_webhook import WebhookInbox

            inbox = WebhookInbox()
        if http is not None and metrics is not None:
            web = build_web_server(
                settings, core, engine, metrics, http, connections, state=state, webhook_inbox=inbox
            )
            if await start_front_end("web", web, stop, settings.login_timeout_s):
                front_ends["web"] = web
            elif stop.is_set():
                return 0
            elif not configured:
                print("error: the web app could not start (see the log above)", file=sys.stderr)
                return EXIT_FAILURE
        log.info("loading the model")
        try:
            await unless_stopped(engine.start(), stop)
        except Stopped:
            return 0
        except ModelPackageError as exc:
            print(f"error: cannot load the model: {exc}", file=sys.stderr)
            return EXIT_FAILURE

        side = engine.input_size
        candidates = build_front_ends(settings, core, min_image_side=side, once=state.once) if chat else {}
        started = await asyncio.gather(
            *(
                start_front_end(name, front, stop, settings.login_timeout_s)
                for name, front in candidates.items()
            )
        )
        front_ends.update(
            (name, front) for (name, front), ok in zip(candidates.items(), started, strict=True) if ok
        )
        telegram = front_ends.get("telegram")
        if inbox is not None and telegram is not None:
            from bots.telegram_bot import TelegramAdapter

            assert isinstance(telegram, TelegramAdapter)
            inbox.receiver = telegram.receive
        if stop.is_set():
            log.info("stopped before every platform had connected")
            return 0
        if not front_ends:
            print("error: no chat platform could start (see the log above)", file=sys.stderr)
            return EXIT_FAILURE
        log.info("serving on %s", ", ".join(front_ends))
        await stop.wait()
        log.info("stopping: answering the questions already received")
    if drained and not drained[0]:
        print(
            "error: stopped with questions unanswered after SHUTDOWN_TIMEOUT_S "
            f"({settings.shutdown_timeout_s:g} s); their users got no reply",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    log.info("stopped")
    return 0


async def start_front_end(name: str, front: FrontEnd, stop: asyncio.Event, timeout: float) -> bool:
    """Start one platform; a failure or a hang is one log line, and the others go on."""
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
    """Stop every platform at once; each answers what it already received. True: all answered."""

    async def stop_one(name: str, front: FrontEnd) -> bool:
        try:
            async with asyncio.timeout(timeout + 2):
                return await front.stop()
        except Exception:
            log.exception("%s did not stop cleanly", name)
            return False

    return all(await asyncio.gather(*(stop_one(name, front) for name, front in front_ends.items())))


def memory_state(settings: Settings) -> State:
    """Rate limits, follow-up images and update ids in this process only."""
    from bots.memory import ImageMemory
    from bots.options import ChatOptions
    from bots.ratelimit import MemoryRateLimiter
    from bots.state.once import MemoryOnce

    chat = settings.section(ChatOptions)
    return State(
        limiter=MemoryRateLimiter(chat.rate_limit),
        memory=ImageMemory(ttl_s=chat.follow_up_minutes * 60),
        once=MemoryOnce(),
    )


def build_state(settings: Settings) -> State:
    """Rate limits, per-user counts, follow-up images, cached answers, update ids: in Redis when
    ``REDIS_URL`` is set (shared by every process using it), else in this process. Nothing
    connects yet (``State.link.start()``)."""
    from bots.options import ChatOptions
    from bots.state.options import SharedStateOptions

    shared = settings.section(SharedStateOptions)
    if shared.redis_url is None:
        return memory_state(settings)
    chat = settings.section(ChatOptions)
    follow_up_s = chat.follow_up_minutes * 60
    from bots.state.link import RedisLink
    from bots.state.redis_cache import RedisPredictionCache
    from bots.state.redis_limiter import RedisRateLimiter
    from bots.state.redis_load import RedisUserLoad
    from bots.state.redis_memory import RedisImageMemory
    from bots.state.redis_once import RedisOnce
    from bots.state.redis_replies import RedisAnswers

    link = RedisLink(
        shared.redis_url.get_secret_value(),
        prefix=shared.redis_prefix,
        timeout_s=shared.redis_timeout_s,
        retry_max_s=shared.redis_retry_max_s,
    )
    cache = None
    if shared.redis_cache_size > 0:
        cache = RedisPredictionCache(link, ttl_s=shared.redis_cache_ttl_s, size=shared.redis_cache_size)
    return State(
        limiter=RedisRateLimiter(link, chat.rate_limit),
        memory=RedisImageMemory(link, ttl_s=follow_up_s),
        once=RedisOnce(link),
        answers=RedisAnswers(link),
        load=RedisUserLoad(
            link, max_in_flight=chat.max_in_flight_per_user, max_waiting=chat.max_queued_per_user
        ),
        cache=cache,
        link=link,
    )


def build_core(
    settings: Settings,
    engine: VQAEngine,
    prediction_log: PredictionLog,
    *,
    platforms: Callable[[], Sequence[str]],
    state: State | None = None,
    observe: Callable[[str, str, float], None] | None = None,
    health: Callable[[], Sequence[str]] = tuple,
) -> ChatCore:
    """The one chat core every front end asks: limits, queue, memory, the log, the engine
    (``state``: where limits and memory live; this process's memory when not given)."""
    from bots.core import ChatCore
    from bots.options import ChatOptions
    from bots.user_queue import UserQueue

    options = settings.section(ChatOptions)
    if state is None:
        state = memory_state(settings)
    return ChatCore(
        engine,
        limiter=state.limiter,
        queue=UserQueue(
            max_in_flight=options.max_in_flight_per_user, max_waiting=options.max_queued_per_user
        ),
        load=state.load,
        answers=state.answers,
        memory=state.memory,
        prediction_log=prediction_log,
        admins=options.admins,
        max_image_bytes=settings.max_image_bytes,
        platforms=platforms,
        observe=observe,
        health=health,
    )


def build_metrics(
    engine: VQAEngine, connections: Callable[[], dict[str, bool]], *, state: State | None = None
) -> Metrics:
    """The process's Prometheus registry (``/metrics``), fed by the chat core and the engine."""
    from prometheus_client import CollectorRegistry

    from bots.web.metrics import Metrics

    link = state.link if state is not None else None
    return Metrics(
        CollectorRegistry(),
        engine_stats=engine.stats,
        platforms=connections,
        redis_up=(lambda: link.up) if link is not None else None,
    )


def build_web_server(
    settings: Settings,
    core: ChatCore,
    engine: VQAEngine,
    metrics: Metrics,
    http: HttpAddress,
    connections: Callable[[], dict[str, bool]],
    *,
    state: State | None = None,
    webhook_inbox: WebhookInbox | None = None,
) -> WebServer:
    """The web app, the HTTP API, health and metrics on one uvicorn server in this loop; with
    ``webhook_inbox``, the route Telegram posts updates to (the path of TELEGRAM_WEBHOOK_URL)."""
    from fastapi import APIRouter

    from bots.web.api import Probes
    from bots.web.asker import WebAsker
    from bots.web.options import WebOptions
    from bots.web.server import WebServer, build_app

    options = settings.section(WebOptions)
    link = state.link if state is not None else None
    routers: list[APIRouter] = []
    body_caps: dict[str, int] = {}
    if webhook_inbox is not None:
        from bots.options import TelegramOptions
        from bots.web.telegram_webhook import MAX_UPDATE_BYTES, telegram_webhook_router

        telegram = settings.section(TelegramOptions)
        assert telegram.webhook_path is not None and telegram.telegram_webhook_secret is not None
        secret = telegram.telegram_webhook_secret.get_secret_value()
        routers.append(telegram_webhook_router(telegram.webhook_path, secret=secret, inbox=webhook_inbox))
        body_caps[telegram.webhook_path] = MAX_UPDATE_BYTES
    app = build_app(
        WebAsker(core),
        options=options,
        probes=Probes(
            model_ready=lambda: engine.running,
            platforms=connections,
            redis=(lambda: link.status) if link is not None else None,
        ),
        metrics=metrics,
        max_image_bytes=settings.max_image_bytes,
        examples_dir=EXAMPLES_DIR,
        routers=routers,
        body_caps=body_caps,
    )
    return WebServer(
        app,
        host=http.host,
        port=http.port,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )


def build_front_ends(
    settings: Settings, core: ChatCore, *, min_image_side: int, once: Once | None = None
) -> dict[str, FrontEnd]:
    """One adapter per platform whose token is set (``once``: Telegram updates handled once)."""
    front_ends: dict[str, FrontEnd] = {}
    if settings.telegram_token is not None:
        from bots.telegram_bot import TelegramAdapter, Webhook

        webhook = None
        url, secret = settings.telegram_webhook_url, settings.telegram_webhook_secret
        if url is not None and secret is not None:
            webhook = Webhook(url, secret.get_secret_value())
        front_ends["telegram"] = TelegramAdapter(
            core,
            token=settings.telegram_token.get_secret_value(),
            base_url=settings.telegram_base_url,
            base_file_url=settings.telegram_base_file_url,
            min_image_side=min_image_side,
            drain_s=settings.shutdown_timeout_s,
            flood_limit=settings.telegram_flood_limit,
            webhook=webhook,
            once=once,
        )
    if settings.discord_token is not None:
        from bots.discord_bot import DiscordAdapter, point_at

        point_at(settings.discord_api_base, settings.discord_gateway_url)
        front_ends["discord"] = DiscordAdapter(
            core,
            token=settings.discord_token.get_secret_value(),
            message_content=settings.discord_message_content,
            sync_commands=settings.discord_sync_commands,
            drain_s=settings.shutdown_timeout_s,
            shard_count=settings.discord_shard_count,
            shard_ids=settings.shard_ids,
        )
    return front_ends


def webhook(settings: Settings, action: str) -> int:
    """``main.py webhook info|delete``: what Telegram knows of the bot's webhook, or remove it (the
    bot then gets no updates until a process starts polling, or registers the webhook again)."""
    from telegram import Bot
    from telegram.error import TelegramError

    if settings.telegram_token is None:
        print("error: set TELEGRAM_TOKEN (in the environment or in .env)", file=sys.stderr)
        return EXIT_USAGE
    bot = Bot(
        settings.telegram_token.get_secret_value(),
        base_url=settings.telegram_base_url or "https://api.telegram.org/bot",
        base_file_url=settings.telegram_base_file_url or "https://api.telegram.org/file/bot",
    )

    async def call() -> list[str]:
        async with bot:
            if action == "delete":
                await bot.delete_webhook(drop_pending_updates=False)
                return ["webhook deleted: updates wait at Telegram until a bot polls or sets a webhook"]
            info = await bot.get_webhook_info()
        lines = [f"url: {info.url or 'none (long polling)'}", f"pending updates: {info.pending_update_count}"]
        if info.last_error_date is not None:
            when = f"{info.last_error_date:%Y-%m-%d %H:%M:%S} UTC"
            lines.append(f"last error: {when}: {info.last_error_message}")
        return lines

    try:
        lines = asyncio.run(call())
    except TelegramError as exc:
        print(f"error: Telegram answered: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print("\n".join(lines))
    return 0


def deploy_space(settings: AskSettings, args: argparse.Namespace) -> int:
    """``main.py deploy space OWNER/NAME``: create or update a Gradio Space on the Hugging Face Hub
    that runs this project (deploy/space.py)."""
    from deploy.space import SpaceRequest, run

    request = SpaceRequest(
        args.repo_id,
        private=args.private,
        hardware=args.hardware,
        secrets=tuple(args.secret),
        variables=tuple(args.variable),
    )
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return run(request, model=settings.section(ModelOptions), token=token)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 0 to 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description=__doc__.splitlines()[0],
        epilog=WITHOUT_A_COMMAND,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    ask_cmd = commands.add_parser("ask", help="answer one question about one image")
    ask_cmd.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP), or - for stdin")
    ask_cmd.add_argument("question", help='e.g. "what color is the shape?"')
    ask_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    ask_cmd.add_argument("--top-k", type=positive_int, default=3, help="candidates to show (default 3)")
    web_cmd = commands.add_parser("web", help="the web app and HTTP API alone (no chat bots)")
    web_cmd.add_argument("--host", help="address to listen on (default: WEB_HOST, 0.0.0.0)")
    web_cmd.add_argument(
        "--port", type=port_number, help=f"port (default: WEB_PORT, then PORT, then {DEFAULT_WEB_PORT})"
    )
    hook_cmd = commands.add_parser("webhook", help="Telegram's webhook: show what Telegram has, or delete it")
    hook_cmd.add_argument("action", choices=["info", "delete"])
    add_deploy_parser(commands)
    return parser


def add_deploy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``deploy space OWNER/NAME ...``."""
    space_help = "create or update a Gradio Space on the Hugging Face Hub that runs this project"
    deploy_help = "publish this project: deploy space OWNER/NAME (a Hugging Face Space)"
    deploy_cmd = commands.add_parser("deploy", help=deploy_help, description=f"P{deploy_help[1:]}.")
    targets = deploy_cmd.add_subparsers(dest="target", required=True, metavar="TARGET")
    space = targets.add_parser(
        "space", help=space_help, description=f"{space_help[0].upper()}{space_help[1:]}."
    )
    space.add_argument(
        "repo_id", metavar="OWNER/NAME", help="your user or organisation, and the Space's name"
    )
    space.add_argument(
        "--private", action="store_true", help="create it private (an existing one: made private)"
    )
    space.add_argument(
        "--hardware",
        metavar="FLAVOR",
        help="e.g. cpu-basic, cpu-upgrade, t4-small (default: unchanged, or cpu-basic for a new Space)",
    )
    space.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a Space secret, its value from the environment or .env (e.g. TELEGRAM_TOKEN); repeatable",
    )
    space.add_argument(
        "--variable",
        action="append",
        default=[],
        metavar="NAME",
        help="a public Space variable, its value from the environment or .env; repeatable "
        "(MODEL_REPO_ID is always set to the model deployed)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # ask and deploy read only the model's settings: a bad RATE_LIMIT must not stop them
    kind: type[AskSettings | Settings] = AskSettings if args.command in ("ask", "deploy") else Settings
    try:
        settings = load_settings(kind)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level, secrets=settings.secrets)
    read = ", ".join(map(str, env_files_read())) or "no .env file"
    log.debug("settings: the environment, %s, config/*.toml", read)
    if isinstance(settings, AskSettings) and args.command == "deploy":
        return deploy_space(settings, args)
    if isinstance(settings, AskSettings):
        return ask(settings, args.image, args.question, as_json=args.json, top_k=args.top_k)
    if args.command == "webhook":
        return webhook(settings, args.action)
    web = settings.section(WebOptions)
    if args.command == "web":
        port = args.port if args.port is not None else web.http_port
        address = HttpAddress(args.host or web.web_host, DEFAULT_WEB_PORT if port is None else port)
        return run_bots(settings, chat=False, http=address)
    http = HttpAddress(web.web_host, web.http_port) if web.http_port is not None else None
    return run_bots(settings, http=http)


if __name__ == "__main__":
    sys.exit(main())
