"""The parts of the service, each built from the settings and the parts it needs: the model
loader, the engine, the chat core, the metrics, the web server and the chat adapters. Tests and
benchmarks build them here too, so that they run what the service runs.

Heavy libraries (torch, gradio, telegram, discord) are imported inside the builder that needs
them: ``main.py ask`` and ``main.py --help`` must not pay for what they do not use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service.state import SharedState, memory_state
from vqa_engine.checks.options import CheckOptions  # torch-free
from vqa_engine.options import ModelOptions  # torch-free

if TYPE_CHECKING:
    from bots.core import ChatCore
    from bots.prediction_log import PredictionLog
    from bots.state.once import Once
    from bots.web.metrics import Metrics
    from bots.web.server import WebServer
    from bots.web.telegram_webhook import WebhookInbox
    from config import AskSettings, Settings
    from service.front_ends import FrontEnd
    from vqa_engine.backends.base import Backend
    from vqa_engine.serving.engine import VQAEngine
    from vqa_engine.serving.prediction_cache import SharedPredictions

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


@dataclasses.dataclass(frozen=True)
class HttpAddress:
    """Where the HTTP server listens."""

    host: str
    port: int


def model_loader(settings: AskSettings | Settings) -> Callable[[], Backend]:
    """Loads the configured model or ensemble (from folders or the Hub) when called."""
    from functools import partial

    from vqa_engine.loading.loader import load_backend

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return partial(load_backend, settings.section(ModelOptions), token=token)


def build_engine(
    settings: Settings,
    load_model: Callable[[], Backend],
    *,
    shared_cache: SharedPredictions | None = None,
) -> VQAEngine:
    """The one engine every front end shares; the model loads in its ``start()``."""
    from vqa_engine.options import EngineOptions
    from vqa_engine.preprocess import ImageLimits
    from vqa_engine.serving.engine import VQAEngine

    return VQAEngine(
        load_model,
        options=settings.section(EngineOptions),
        limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
        checks=settings.section(CheckOptions),
        shared_cache=shared_cache,
    )


def build_core(
    settings: Settings,
    engine: VQAEngine,
    prediction_log: PredictionLog,
    *,
    platforms: Callable[[], Sequence[str]],
    state: SharedState | None = None,
    observe: Callable[[str, str, float], None] | None = None,
    health: Callable[[], Sequence[str]] = tuple,
) -> ChatCore:
    """The one chat core every front end asks: limits, queue, memory, the log, the engine
    (``state``: where limits and memory live; this process's memory when not given)."""
    from bots.conversation import ConversationBounds
    from bots.core import ChatCore
    from bots.options import ChatOptions
    from bots.user_queue import UserQueue

    options = settings.section(ChatOptions)
    if state is None:
        state = memory_state(settings)
    return ChatCore(
        engine,
        conversation=ConversationBounds(turns=options.conversation_turns, chars=options.conversation_chars),
        limiter=state.limiter,
        queue=UserQueue(
            max_in_flight=options.max_in_flight_per_user, max_waiting=options.max_queued_per_user
        ),
        shared_in_flight=state.in_flight,
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
    engine: VQAEngine, connections: Callable[[], dict[str, bool]], *, state: SharedState | None = None
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
    state: SharedState | None = None,
    webhook_inbox: WebhookInbox | None = None,
) -> WebServer:
    """The web app, the HTTP API, health and metrics on one uvicorn server in this loop; with
    ``webhook_inbox``, the route Telegram posts updates to (the path of TELEGRAM_WEBHOOK_URL)."""
    from fastapi import APIRouter

    from bots.web.api import Probes
    from bots.web.asker import WebAsker
    from bots.web.options import WebOptions
    from bots.web.server import WebServer, build_app

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
        options=settings.section(WebOptions),
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
    return WebServer(app, host=http.host, port=http.port, shutdown_timeout_s=settings.shutdown_timeout_s)


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
        from bots.discord_bot import DiscordAdapter

        front_ends["discord"] = DiscordAdapter(
            core,
            token=settings.discord_token.get_secret_value(),
            message_content=settings.discord_message_content,
            sync_commands=settings.discord_sync_commands,
            drain_s=settings.shutdown_timeout_s,
            shard_count=settings.discord_shard_count,
            shard_ids=settings.shard_ids,
            api_base=settings.discord_api_base,
            gateway_url=settings.discord_gateway_url,
        )
    return front_ends
