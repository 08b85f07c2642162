"""Shared state in a real Redis (``redis-server`` on a free loopback port, started by each test):
two chat cores built as ``main.py`` builds them stand for two processes sharing it. What is
checked is what users see (replies), what operators see (log lines, /health), and what is in
Redis (keys, expiries). Redis is killed and restarted for the outage cases; nothing sleeps: the
tests wait for the log lines that say Redis is down or back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bots import replies
from bots.core import ChatCore
from bots.events import Button, ChatEvent, Command, ImageRef, Outcome, Press
from bots.prediction_log import PredictionLog
from bots.state.link import RedisLink
from bots.state.redis_cache import RedisPredictionCache
from bots.state.redis_once import RedisOnce
from config import Settings, load_settings
from config.log import RedactSecrets
from service.builders import build_core
from service.state import SharedState, build_state
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.redis_server import RedisServer
from vqa_engine import Candidate, Prediction, VQAEngine
from vqa_engine.modular.package import load_package
from vqa_engine.options import EngineOptions

COLOR_Q = "what color is the shape?"
ADMIN = "1001"


def example(name: str) -> bytes:
    return (ROOT / "examples" / f"{name}.png").read_bytes()


class Photos:
    """Images "on the platform" by source, as both processes would download them."""

    def __init__(self) -> None:
        self.images = {name: example(name) for name in ("blue_circle", "red_triangle", "green_rectangle")}
        self.holds: dict[str, asyncio.Event] = {}
        self.downloading: dict[str, asyncio.Event] = {}

    def hold(self, source: str) -> None:
        self.holds[source] = asyncio.Event()
        self.downloading[source] = asyncio.Event()

    async def fetch(self, image: ImageRef) -> bytes:
        if image.source in self.holds:
            self.downloading[image.source].set()
            await self.holds[image.source].wait()
        return self.images[image.source]


def message(photos: Photos, text: str = COLOR_Q, image: str | None = None, *, user: str = "42") -> ChatEvent:
    return ChatEvent(
        platform="telegram",
        chat_id=user,
        chat_type="private",
        private=True,
        user_id=user,
        addressed=True,
        fetch=photos.fetch,
        text=text,
        images=(ImageRef(image, mime_type="image/png"),) if image else (),
    )


def command(photos: Photos, name: Command, *, user: str = ADMIN) -> ChatEvent:
    return ChatEvent("telegram", user, "private", True, user, True, photos.fetch, command=name)


class LogLines(logging.Handler):
    """The log lines a process writes, and a wait for the next one that contains some text."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        for text, future in list(self._waiters):
            if text in line and not future.done():
                future.set_result(None)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, *, after: int = 0, timeout: float = 30) -> None:
        """Until a line containing ``text`` is logged (beyond the first ``after`` lines)."""
        if any(text in line for line in self.lines[after:]):
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((text, future))
        try:
            async with asyncio.timeout(timeout):  # a safety net, not a measurement
                await future
        finally:
            self._waiters.remove((text, future))


@pytest.fixture
def logs() -> Iterator[LogLines]:
    handler = LogLines()
    logger = logging.getLogger("bots")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def engine() -> AsyncIterator[VQAEngine]:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        yield engine


def settings_for(server: RedisServer, tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        Settings,
        **{
            "redis_url": server.url,
            "redis_retry_max_s": 0.2,
            "prediction_log": tmp_path / "p.jsonl",
            "admin_ids": f"telegram:{ADMIN}",
            **overrides,
        },
    )


@dataclass
class Process:
    """What one ``main.py`` process would hold: its state (and link to Redis) and its chat core."""

    state: SharedState
    core: ChatCore

    @property
    def link(self) -> RedisLink:
        assert self.state.link is not None
        return self.state.link


@contextlib.asynccontextmanager
async def two_processes(
    settings: Settings, engine: VQAEngine, tmp_path: Path
) -> AsyncIterator[tuple[Process, Process]]:
    async with contextlib.AsyncExitStack() as stack:
        processes = []
        for name in ("a", "b"):
            state = build_state(settings)
            assert state.link is not None
            await state.link.start()
            stack.push_async_callback(state.link.close)
            log = stack.enter_context(PredictionLog(tmp_path / f"{name}.jsonl", salt="s"))
            core = build_core(settings, engine, log, state=state, platforms=tuple, health=state.health)
            processes.append(Process(state, core))
        yield processes[0], processes[1]


async def ask(process: Process, event: ChatEvent) -> str:
    reply = await process.core.handle(event)
    assert reply is not None
    return reply.text


async def keys_and_ttls(url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        return {key.decode(): await client.ttl(key) async for key in client.scan_iter(match="*")}
    finally:
        await client.aclose()


# -- across processes -----------------------------------------------------------------------------


async def test_a_users_rate_limit_holds_across_two_processes(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path
) -> None:
    photos = Photos()
    settings = settings_for(redis_server, tmp_path, rate_limit="3/minute")
    async with two_processes(settings, engine, tmp_path) as (a, b):
        answers = [await ask(p, message(photos, image="blue_circle")) for p in (a, b, a)]
        refused = await b.core.handle(message(photos, image="blue_circle"))
        other_user = await ask(a, message(photos, image="red_triangle", user="43"))
    assert all(text.startswith("blue — ") for text in answers), answers
    assert refused is not None and refused.outcome is Outcome.RATE_LIMITED
    assert refused.text == replies.rate_limited(refused.retry_after_s or 0, "3 per 1 minute")
    assert refused.retry_after_s is not None and 50 <= refused.retry_after_s <= 60
    assert other_user.startswith("red — ")  # a limit per user


async def test_a_follow_up_reaching_the_other_process_is_about_the_image_sent_to_the_first(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path
) -> None:
    photos = Photos()
    async with two_processes(settings_for(redis_server, tmp_path), engine, tmp_path) as (a, b):
        prompt = await a.core.handle(message(photos, "", image="green_rectangle"))
        follow_up = await ask(b, message(photos, COLOR_Q))
        ttls = await keys_and_ttls(redis_server.url)
    assert prompt is not None and prompt.outcome is Outcome.PROMPT
    assert follow_up.startswith("green — ")
    assert 590 <= ttls["vqa:image:telegram:42:42"] <= 600  # FOLLOW_UP_MINUTES (10)


async def test_a_users_queue_bound_holds_across_processes(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path
) -> None:
    photos = Photos()
    settings = settings_for(redis_server, tmp_path, max_in_flight_per_user=1, max_queued_per_user=0)
    async with two_processes(settings, engine, tmp_path) as (a, b):
        photos.hold("blue_circle")
        first = asyncio.create_task(a.core.handle(message(photos, image="blue_circle")))
        await photos.downloading["blue_circle"].wait()  # in flight in process a
        refused = await b.core.handle(message(photos, image="red_triangle"))
        photos.holds["blue_circle"].set()
        answered = await first
        after = await ask(b, message(photos, image="red_triangle"))
    assert refused is not None and refused.outcome is Outcome.QUEUE_FULL
    assert refused.text == replies.queue_full(0)
    assert answered is not None and answered.text.startswith("blue — ")
    assert after.startswith("red — ")  # the first left: room again


def press(photos: Photos, button: Button, request_id: str) -> ChatEvent:
    """A button under an answer, pressed by user 42."""
    return ChatEvent(
        "telegram", "42", "private", True, "42", True, photos.fetch, press=Press(button, request_id)
    )


async def test_the_buttons_under_an_answer_work_on_the_other_process(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path
) -> None:
    photos = Photos()
    async with two_processes(settings_for(redis_server, tmp_path), engine, tmp_path) as (a, b):
        answer = await a.core.handle(message(photos, image="red_triangle"))
        assert answer is not None and answer.request_id is not None
        chart = await b.core.handle(press(photos, Button.CHART, answer.request_id))
        vote = await b.core.handle(press(photos, Button.GOOD, answer.request_id))
        unknown = await b.core.handle(press(photos, Button.CHART, "0123456789ab"))
    assert chart is not None and chart.outcome is Outcome.CHART and chart.image is not None
    assert chart.text == replies.chart_caption(COLOR_Q)
    assert vote is not None and vote.outcome is Outcome.FEEDBACK
    assert unknown is not None and unknown.outcome is Outcome.EXPIRED


async def test_an_answer_computed_by_one_process_is_not_computed_again_by_another(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = settings_for(redis_server, tmp_path)
    states = [build_state(settings) for _ in range(2)]
    engines = [
        VQAEngine(lambda: load_package(BUNDLED_MODEL), options=EngineOptions(), shared_cache=s.cache)
        for s in states
    ]
    async with contextlib.AsyncExitStack() as stack:
        for state, engine in zip(states, engines, strict=True):
            assert state.link is not None
            await state.link.start()
            stack.push_async_callback(state.link.close)
            await stack.enter_async_context(engine)
        first = await engines[0].answer(example("blue_circle"), COLOR_Q, top_k=2)
        again = await engines[1].answer(example("blue_circle"), COLOR_Q, top_k=2)
        stats = engines[1].stats()
    assert again == first and again.answer == "blue"
    assert (stats.cache_hits, stats.shared_cache_hits, stats.batches) == (1, 1, 0)  # no forward pass


async def test_the_shared_cache_is_bounded_by_size_and_age(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url)
    await link.start()
    try:
        cache = RedisPredictionCache(link, ttl_s=120, size=3)
        prediction = Prediction("red", 0.9, (Candidate("red", 0.9), Candidate("blue", 0.1)))
        for n in range(5):
            await cache.put((f"image{n}", "what color", "model"), prediction)
        kept = [await cache.get((f"image{n}", "what color", "model")) for n in range(5)]
        ttls = await keys_and_ttls(redis_server.url)
    finally:
        await link.close()
    assert kept == [None, None, prediction, prediction, prediction]  # the oldest went
    assert len([k for k in ttls if k.startswith("vqa:answer:")]) == 3
    assert all(0 < ttl <= 120 for ttl in ttls.values()), ttls


async def test_an_update_is_taken_by_one_process_only(redis_server: RedisServer) -> None:
    links = [RedisLink(redis_server.url), RedisLink(redis_server.url)]
    for link in links:
        await link.start()
    try:
        a, b = (RedisOnce(link) for link in links)
        results = [await a.first("telegram-update:1:100"), await b.first("telegram-update:1:100")]
        results += [await b.first("telegram-update:1:101"), await b.first("telegram-update:1:101")]
        ttls = await keys_and_ttls(redis_server.url)
    finally:
        for link in links:
            await link.close()
    assert results == [True, False, True, False]
    assert 3590 <= ttls["vqa:once:telegram-update:1:100"] <= 3600


async def test_every_key_is_in_the_namespace_and_expires(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path
) -> None:
    photos = Photos()
    settings = settings_for(redis_server, tmp_path, redis_prefix="bot-7")
    async with two_processes(settings, engine, tmp_path) as (a, b):
        await a.core.handle(message(photos, "", image="blue_circle"))
        await ask(b, message(photos, COLOR_Q))
        assert a.state.cache is not None
        prediction = Prediction("red", 0.9, (Candidate("red", 0.9),))
        await a.state.cache.put(("image", "question", "model"), prediction)
        await a.state.once.first("telegram-update:1:5")
        assert a.state.in_flight is not None
        ticket = await a.state.in_flight.enter("telegram", "44")  # a question still in flight
        ttls = await keys_and_ttls(redis_server.url)
    assert ticket is not None
    prefixes = {key.split(":")[1] for key in ttls}
    assert prefixes == {"limits", "image", "answer", "answers", "reply", "replies", "once", "load"}, ttls
    assert all(key.startswith("bot-7:") for key in ttls), ttls
    assert all(ttl > 0 for ttl in ttls.values()), ttls  # -1 would be a key without an expiry


# -- outages ----------------------------------------------------------------------------------------


async def test_redis_down_answers_continue_said_once_then_shared_again(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path, logs: LogLines
) -> None:
    photos = Photos()
    settings = settings_for(redis_server, tmp_path, rate_limit="2/minute")
    async with two_processes(settings, engine, tmp_path) as (a, b):
        before = await ask(a, message(photos, image="blue_circle"))
        redis_server.kill()
        during = [await ask(a, message(photos, image="red_triangle")) for _ in range(3)]  # fails open
        await a.core.handle(message(photos, "", image="green_rectangle"))  # remembered in a alone
        follow_up_here = await ask(a, message(photos, COLOR_Q))
        health_down = await ask(a, command(photos, Command.HEALTH))
        down_lines = logs.count("redis: down")
        seen = len(logs.lines)
        await asyncio.to_thread(redis_server.start)  # empty: nothing was saved
        await logs.wait_for("redis: back", after=seen)  # a reconnects (with backoff)
        follow_up_there = await ask(b, message(photos, COLOR_Q))  # a copied its image back
        health_up = await ask(a, command(photos, Command.HEALTH))
        limited = [await ask(b, message(photos, image="blue_circle", user="45")) for _ in range(3)]
    assert before.startswith("blue — ")
    assert all(text.startswith("red — ") for text in during), during
    assert follow_up_here.startswith("green — ")
    assert down_lines == 1  # once, not once per message
    assert "redis: down since" in health_down and "limits open" in health_down
    assert follow_up_there.startswith("green — ")
    assert f"redis: up (127.0.0.1:{redis_server.port}/0)" in health_up
    assert limited[2] == replies.rate_limited(60, "2 per 1 minute")  # counted in Redis again


async def test_redis_missing_at_start_is_said_and_the_process_runs_on_its_own(
    redis_server: RedisServer, engine: VQAEngine, tmp_path: Path, logs: LogLines
) -> None:
    photos = Photos()
    redis_server.kill()
    async with two_processes(settings_for(redis_server, tmp_path), engine, tmp_path) as (a, _):
        await a.core.handle(message(photos, "", image="blue_circle"))
        answer = await ask(a, message(photos, COLOR_Q))
        status = a.link.status
    assert answer.startswith("blue — ")
    assert status == "down"
    assert logs.count("redis: down") == 2  # once per process


async def test_a_password_in_redis_url_never_reaches_the_log(
    engine: VQAEngine, tmp_path: Path, logs: LogLines
) -> None:
    password = "s3cret-Pa55word"
    with RedisServer(password=password) as server:
        settings = settings_for(server, tmp_path)
        assert password in settings.secrets and server.url in settings.secrets
        photos = Photos()
        async with two_processes(settings, engine, tmp_path) as (a, _):
            first = await ask(a, message(photos, image="blue_circle"))
            server.kill()
            second = await ask(a, message(photos, image="blue_circle"))
            health = await ask(a, command(photos, Command.HEALTH))
    redact = RedactSecrets(settings.secrets).redact
    assert first.startswith("blue — ") and second.startswith("blue — ")
    assert logs.count("redis: down") == 1
    for text in [*logs.lines, health]:
        assert password not in text
    assert redact(f"redis://:{password}@host") == "redis://:[REDACTED]@host"
