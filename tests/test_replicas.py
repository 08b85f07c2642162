"""Two ``python main.py`` processes behind a load balancer, sharing one real Redis: Telegram by
webhook (the loopback Bot API posts every update to the balancer, which hands it to the replica the
test chooses, or to both), as a deployment of replicas runs.

One set of processes serves the whole module (starting two of them is most of the cost); each
test uses users of its own. The Redis outage comes last. Every check is what users and operators
see: replies, HTTP statuses, ``/readyz``, log lines and exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bots import replies
from bots.web.telegram_webhook import SECRET_HEADER
from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram
from tests.loopback import free_port
from tests.redis_server import RedisServer
from tests.web_fixture import Child, child_env, example, start_child

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "5550123:AAF-fake-SECRET-t0ken_xyz"
SECRET = "replicas-SECRET-0123456789abcdef"
ADMIN = 1001
COLOR_Q = "what color is the shape?"
WEBHOOK_PATH = "/telegram/updates"


@dataclass
class Balancer:
    """A load balancer in front of the replicas: each update goes to the replicas ``route`` names
    (round robin by default; the test may name one, or both as a retry after a timeout would)."""

    targets: dict[str, str]  # name -> replica's root URL
    plan: list[list[str]] = field(default_factory=list)  # the next updates' targets, in order
    statuses: list[dict[str, int]] = field(default_factory=list)  # per update: replica -> status
    _turn: itertools.cycle[str] = field(init=False)
    _http: aiohttp.ClientSession | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(sorted(self.targets))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._http = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        names = self.plan.pop(0) if self.plan else [next(self._turn)]
        headers = {"Content-Type": "application/json", SECRET_HEADER: request.headers.get(SECRET_HEADER, "")}

        async def one(name: str) -> int:
            assert self._http is not None
            async with self._http.post(self.targets[name] + WEBHOOK_PATH, data=body, headers=headers) as r:
                await r.read()
                return r.status

        statuses = dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
        self.statuses.append(statuses)
        return web.Response(status=min(statuses.values()))


@dataclass
class Cluster:
    fake: FakeTelegram
    redis: RedisServer
    balancer: Balancer
    replicas: dict[str, Child]
    roots: dict[str, str]

    async def readiness(self, name: str) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.roots[name]}/readyz") as response:
            return response.status, await response.json()

    async def redis_up(self, name: str) -> float:
        """``vqa_redis_up`` on the replica's ``/metrics``."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.roots[name]}/metrics") as response:
            text = await response.text()
        [value] = [
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "vqa_redis_up"
            for s in f.samples
        ]
        return value

    async def ask(self, user: int, *, to: list[str], image: str | None = None, text: str = COLOR_Q) -> str:
        """A user's message, routed by the balancer to ``to``; the bot's reply."""
        self.balancer.plan.append(to)
        if image is None:
            self.fake.send_text(user, user, text)
        else:
            self.fake.send_photo(user, user, example(image), caption=text or None)
        [reply] = await self.fake.wait_for_reply(user, timeout=30)
        return reply.text or ""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("replicas")
    ports = {"a": free_port(), "b": free_port()}
    roots = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    async with contextlib.AsyncExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        fake = await FakeTelegram(TOKEN).start()
        stack.push_async_callback(fake.stop)
        balancer = Balancer(roots, port=free_port())
        await balancer.start()
        stack.push_async_callback(balancer.stop)
        replicas: dict[str, Child] = {}
        for name, port in ports.items():
            env = child_env(
                tmp_path,
                PORT=str(port),
                WEB_HOST="127.0.0.1",
                PREDICTION_LOG=str(tmp_path / f"{name}.jsonl"),
                REDIS_URL=redis.url,
                REDIS_RETRY_MAX_S="0.5",
                RATE_LIMIT="3/minute",
                ADMIN_IDS=f"telegram:{ADMIN}",
                TELEGRAM_WEBHOOK_URL=balancer.url,
                TELEGRAM_WEBHOOK_SECRET=SECRET,
            )
            replicas[name] = await start_child("python", str(ROOT / "main.py"), env=env | fake.env())
        for child in replicas.values():
            await child.read_until("serving on web, telegram", timeout=120)
        yield Cluster(fake, redis, balancer, replicas, roots)
        for name, child in replicas.items():
            code, err = await child.stop()
            assert code == 0, err
            assert "Traceback" not in err and "Unclosed" not in err, err
            assert TOKEN not in err and SECRET not in err, name
            assert err.count("redis: down") <= 1, err  # said once, not once per message


async def test_both_replicas_registered_the_webhook_and_neither_polls(cluster: Cluster) -> None:
    calls = cluster.fake.calls_of("setWebhook")
    assert [(c.params["url"], c.params["secret_token"]) for c in calls] == [
        (cluster.balancer.url, SECRET)
    ] * 2
    assert cluster.fake.calls_of("getUpdates") == []
    for name in ("a", "b"):
        assert await cluster.readiness(name) == (
            200,
            {
                "ready": True,
                "model": "loaded",
                "platforms": {"telegram": "connected"},
                "waiting_for": [],
                "redis": "up",
            },
        )


async def test_a_users_rate_limit_holds_across_both_replicas(cluster: Cluster) -> None:
    user = 201
    answers = [await cluster.ask(user, to=[name], image="blue_circle") for name in ("a", "b", "a")]
    refused = await cluster.ask(user, to=["b"], image="blue_circle")
    assert all(text.startswith("blue — ") for text in answers), answers
    wait = re.search(r"try again in (\d+) seconds", refused)
    assert wait is not None and refused == replies.rate_limited(int(wait[1]), "3 per 1 minute"), refused


async def test_a_follow_up_reaching_the_other_replica_is_answered(cluster: Cluster) -> None:
    user = 202
    prompt = await cluster.ask(user, to=["a"], image="green_rectangle", text="")
    answer = await cluster.ask(user, to=["b"], text=COLOR_Q)
    assert prompt == replies.ask_what("telegram", private=True)
    assert answer.startswith("green — ")


async def test_the_chart_button_works_on_the_other_replica(cluster: Cluster) -> None:
    user = 206
    answer = await cluster.ask(user, to=["a"], image="blue_circle")
    [sent] = cluster.fake.replies(user)
    [row] = sent.params["reply_markup"]["inline_keyboard"]
    cluster.balancer.plan.append(["b"])  # the press reaches the other replica
    cluster.fake.click(user, user, sent.message_id, row[0]["callback_data"])
    [chart] = await cluster.fake.wait_for_reply(user, timeout=30)
    assert answer.startswith("blue — ")
    assert chart.method == "sendPhoto" and chart.photo and chart.text == replies.chart_caption(COLOR_Q)


async def test_an_update_posted_to_both_replicas_is_answered_once(cluster: Cluster) -> None:
    user = 203
    first = await cluster.ask(user, to=["a", "b"], image="red_triangle")
    both = cluster.balancer.statuses[-1]  # each replica decided before it answered the balancer
    second = await cluster.ask(user, to=["b", "a"], image="blue_circle")
    assert both == {"a": 200, "b": 200}
    assert first.startswith("red — ") and second.startswith("blue — ")
    assert [m.text[:4] for m in cluster.fake.replies(user) if m.text] == ["red ", "blue"]  # nothing twice


async def test_a_post_without_the_secret_gets_403(cluster: Cluster) -> None:
    update = {
        "update_id": 999_999,
        "message": {"message_id": 1, "date": 0, "chat": {"id": 204, "type": "private"}},
    }
    wrong = await cluster.fake.post_update(update, cluster.roots["a"] + WEBHOOK_PATH, secret="nope")
    missing = await cluster.fake.post_update(update, cluster.roots["b"] + WEBHOOK_PATH, secret=None)
    assert (wrong, missing) == (403, 403)


async def test_redis_killed_mid_conversation_then_back(cluster: Cluster) -> None:
    user = 205
    before = await cluster.ask(user, to=["a"], image="blue_circle")
    await asyncio.to_thread(cluster.redis.kill)
    during = [await cluster.ask(user, to=[name], image="red_triangle") for name in ("a", "b", "a", "b")]
    for child in cluster.replicas.values():  # (the fixture checks it is said once only)
        await child.read_until("redis: down", timeout=30)
    readiness = [await cluster.readiness(name) for name in ("a", "b")]
    gauges = [await cluster.redis_up(name) for name in ("a", "b")]
    prompt = await cluster.ask(user, to=["a"], image="green_rectangle", text="")  # kept in a alone
    await asyncio.to_thread(cluster.redis.start)  # empty: it saved nothing
    for child in cluster.replicas.values():
        await child.read_until("redis: back", timeout=30)
    follow_up = await cluster.ask(user, to=["b"], text=COLOR_Q)  # a copied its image back
    after = [await cluster.readiness(name) for name in ("a", "b")]
    gauges += [await cluster.redis_up(name) for name in ("a", "b")]
    assert before.startswith("blue — ")
    # answers continue: beyond RATE_LIMIT (3/minute), since limits let questions through meanwhile
    assert all(text.startswith("red — ") for text in during), during
    assert [(status, body["redis"], body["ready"]) for status, body in readiness] == [(200, "down", True)] * 2
    assert prompt == replies.ask_what("telegram", private=True)
    assert follow_up.startswith("green — ")
    assert [body["redis"] for _, body in after] == ["up", "up"]
    assert gauges == [0, 0, 1, 1]  # /metrics' vqa_redis_up
