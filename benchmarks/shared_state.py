"""Shared state in Redis, several processes, webhooks: what they cost and what they give, in one run.

    python -m benchmarks.shared_state [--users 40] [--questions 600] [--rounds 3]

Needs Debian's ``redis-server`` (started here on a free loopback port). Three measurements:

1. Redis's cost per question: the chat core with this process's memory and with Redis (built by
   ``service.state.build_state``, as ``python main.py`` builds them), around the same engine and bundled
   model, questions alternating between the two, one at a time; every image's bytes are unique, so
   each question takes every state call (per-user count in and out, rate limit, follow-up memory,
   the shared cache's miss and write) and a forward pass.
2. Throughput of one ``python main.py`` process against two sharing Redis, Telegram by webhook
   through a load balancer (one process behind the same hop; round robin; and every update
   delivered to both replicas, as retries would), with ``TORCH_THREADS=1`` and with torch's
   default, closed-loop users on the loopback Bot API, every reply counted: lost and answered
   twice. ``TELEGRAM_FLOOD_LIMIT`` is lifted here, so the figure is the machine's, not Telegram's.
3. Update-to-reply latency, webhook against long polling: one user asking in turn, alternating
   between a webhook bot and a polling bot (two processes, two loopback Bot APIs).

Prints a table; writes ``benchmarks/results/shared_state.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.common import BUNDLED_MODEL, Jobs, percentile, result_path, write_result
from benchmarks.processes import inherited_env, start_main
from benchmarks.workloads import unique_jobs
from bots.core import ChatCore
from bots.events import ChatEvent, ImageRef
from bots.prediction_log import PredictionLog
from config import Settings, load_settings
from service.builders import build_core
from service.state import build_state, memory_state
from tests.fake_telegram import FakeTelegram
from tests.loopback import free_port
from tests.redis_server import RedisServer
from vqa_engine.modular.package import load_package
from vqa_engine.serving.engine import EngineOptions, VQAEngine

PATH = "/telegram/updates"
SECRET = "benchmark-secret-0123456789abcdef"


# -- 1. Redis's cost per question ------------------------------------------------------------------


async def state_overhead(redis: RedisServer, questions: int, tmp: Path) -> dict[str, Any]:
    settings = load_settings(
        Settings,
        redis_url=redis.url,
        redis_prefix="overhead",
        rate_limit="1000000/minute",
        prediction_log=tmp / "overhead.jsonl",
    )
    jobs = unique_jobs(2 * questions + 40, "overhead")
    images: dict[str, bytes] = {}

    async def fetch(image: ImageRef) -> bytes:
        return images[image.source]

    def event(n: int, question: str) -> ChatEvent:
        user = str(1000 + n % 20)
        return ChatEvent("telegram", user, "private", True, user, True, fetch, text=question,
                         images=(ImageRef(f"img{n}", mime_type="image/png"),))  # fmt: skip

    in_memory = memory_state(settings)
    redis_state = build_state(settings)
    assert redis_state.link is not None
    await redis_state.link.start()
    latencies: dict[str, list[float]] = {"memory": [], "redis": []}
    options = EngineOptions(max_queue=4096)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(redis_state.link.close)
        cores: dict[str, ChatCore] = {}
        for name, state in (("memory", in_memory), ("redis", redis_state)):
            engine = VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options, shared_cache=state.cache)
            await stack.enter_async_context(engine)
            log = stack.enter_context(PredictionLog(tmp / f"{name}.jsonl", salt="bench"))
            cores[name] = build_core(settings, engine, log, state=state, platforms=tuple)
        for n, (image, _) in enumerate(jobs):
            images[f"img{n}"] = image
        for n in range(40):  # warm-up: threads, connections, scripts
            await cores["memory" if n % 2 else "redis"].handle(event(n, jobs[n][1]))
        order = itertools.cycle(["memory", "redis"])
        for n in range(40, len(jobs)):
            name = next(order)
            started = time.perf_counter()
            reply = await cores[name].handle(event(n, jobs[n][1]))
            latencies[name].append(time.perf_counter() - started)
            assert reply is not None and reply.predictions, reply
    result: dict[str, Any] = {"questions_each": len(latencies["memory"])}
    for name, values in latencies.items():
        result[name] = {"p50_ms": percentile(values, 0.5) * 1000, "p95_ms": percentile(values, 0.95) * 1000}
    for q in ("p50_ms", "p95_ms"):
        result[f"redis_overhead_{q}"] = result["redis"][q] - result["memory"][q]
    return result


# -- processes -------------------------------------------------------------------------------------


class Balancer:
    """Round robin over the replicas, or every update to all of them (``duplicate``)."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.duplicate = False
        self._turn = itertools.cycle(range(len(targets)))
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body, secret = await request.read(), request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
        targets = self.targets if self.duplicate else [self.targets[next(self._turn)]]

        async def one(target: str) -> int:
            assert self._http is not None
            async with self._http.post(target + PATH, data=body, headers=headers) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(t) for t in targets))
        return web.Response(status=min(statuses))


@contextlib.asynccontextmanager
async def bot_process(
    name: str, fake: FakeTelegram, tmp: Path, redis: RedisServer, *, torch_threads: int, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python main.py`` with this Bot API fake and Redis; its stderr goes to a file."""
    full = (
        inherited_env()
        | fake.env()
        | {
            "REDIS_URL": redis.url,
            "RATE_LIMIT": "1000000/minute",
            "TELEGRAM_FLOOD_LIMIT": "100000",
            "PREDICTION_LOG": str(tmp / f"{name}.jsonl"),
            "LOG_LEVEL": "INFO",
            "DEVICE": "cpu",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "WEB_HOST": "127.0.0.1",
            "TORCH_THREADS": str(torch_threads),
            **env,
        }
    )
    with (tmp / f"{name}.log").open("wb") as log:
        child = await start_main(env=full, cwd=tmp, stdout=log, stderr=log)
        try:
            yield child
        finally:
            if child.returncode is None:
                child.terminate()
            await asyncio.wait_for(child.wait(), 60)


async def telegram_users(fake: FakeTelegram, jobs: Jobs, users: int, first: int) -> dict[str, Any]:
    """Users each asking their next photo question when the last is answered."""
    per_user = [jobs[u::users] for u in range(users)]
    sent: list[tuple[int, int]] = []

    async def user(number: int) -> None:
        chat = first + number
        for image, question in per_user[number]:
            message = fake.send_photo(chat, chat, image, caption=question, sizes=((64, 64),))
            sent.append((chat, message["message_id"]))
            await fake.wait_for_reply(chat, timeout=120)

    started = time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(users)))
    elapsed = time.perf_counter() - started
    replies = Counter((s.chat_id, s.reply_to_message_id) for s in fake.sent)
    counts = Counter(replies.get(key, 0) for key in sent)
    return {
        "answered_per_s": len(sent) / elapsed,
        "questions": len(sent),
        "lost": counts.get(0, 0),
        "answered_twice": sum(v for k, v in counts.items() if k > 1),
    }


async def in_turn(fakes: dict[str, FakeTelegram], questions: int) -> dict[str, Any]:
    """One user, one question at a time, alternating between the bots: update-to-reply latency."""
    jobs = unique_jobs(questions * len(fakes), "latency")
    latency: dict[str, list[float]] = {name: [] for name in fakes}
    chat = 90_000
    for n, (image, question) in enumerate(jobs):
        name = list(fakes)[n % len(fakes)]
        fake = fakes[name]
        message = fake.send_photo(chat, chat, image, caption=question, sizes=((64, 64),))
        [reply] = await fake.wait_for_reply(chat, timeout=60)
        if n >= 2 * len(fakes):  # warm-up
            latency[name].append(reply.at - fake.injected_at(chat, message["message_id"]))
    return {
        name: {"p50_ms": percentile(v, 0.5) * 1000, "p95_ms": percentile(v, 0.95) * 1000, "n": len(v)}
        for name, v in latency.items()
    }


@dataclasses.dataclass
class Deployment:
    """One bot (its own loopback Bot API and token) served by ``processes`` replicas behind a
    balancer, with ``TORCH_THREADS=torch_threads`` each; its own namespace in the one Redis."""

    name: str
    processes: int
    torch_threads: int
    fake: FakeTelegram = dataclasses.field(init=False)
    balancer: Balancer = dataclasses.field(init=False)
    roots: list[str] = dataclasses.field(default_factory=list)


async def start_deployment(
    stack: contextlib.AsyncExitStack, number: int, deployment: Deployment, redis: RedisServer, tmp: Path
) -> None:
    deployment.fake = fake = await FakeTelegram(f"{number}:BENCH-token").start()
    fake.validate_updates = False  # well-formed updates only: spares the fake's CPU
    stack.push_async_callback(fake.stop)
    ports = [free_port() for _ in range(deployment.processes)]
    deployment.roots = [f"http://127.0.0.1:{port}" for port in ports]
    deployment.balancer = Balancer(deployment.roots)
    await deployment.balancer.start()
    stack.push_async_callback(deployment.balancer.stop)
    env = {"REDIS_PREFIX": deployment.name, "TELEGRAM_WEBHOOK_SECRET": SECRET}
    if deployment.name != "polling":
        env["TELEGRAM_WEBHOOK_URL"] = deployment.balancer.url
    for n, port in enumerate(ports):
        await stack.enter_async_context(
            bot_process(
                f"{deployment.name}-{n}",
                fake,
                tmp,
                redis,
                torch_threads=deployment.torch_threads,
                PORT=str(port),
                **env,
            )
        )


#: (name in the results, deployment, every update to all its replicas)
RUNS = [
    ("single", "single", False),
    ("pair", "pair", False),
    ("pair, every update to both", "pair", True),
    ("single, TORCH_THREADS=0", "single-torch-default", False),
    ("pair, TORCH_THREADS=0", "pair-torch-default", False),
]


async def throughput_rounds(
    deployments: dict[str, Deployment], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every run of ``RUNS`` in turn, ``args.rounds`` times, after a warm-up of each deployment."""
    for name in ("single", "pair", "single-torch-default", "pair-torch-default"):  # warm-up
        await telegram_users(
            deployments[name].fake, unique_jobs(4 * args.users, f"warm-{name}"), args.users, 5_000
        )
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        row: dict[str, Any] = {}
        for n, (run_name, name, duplicate) in enumerate(RUNS):
            deployment = deployments[name]
            deployment.balancer.duplicate = duplicate
            jobs = unique_jobs(args.questions, f"{run_name}-{number}")
            first = 10_000 + 1_000 * (number * len(RUNS) + n)  # chats of their own
            row[run_name] = await telegram_users(deployment.fake, jobs, args.users, first)
        rounds.append(row)
    return rounds


async def processes(redis: RedisServer, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    deployments = {
        d.name: d
        for d in (
            Deployment("single", 1, args.torch_threads),
            Deployment("pair", 2, args.torch_threads),
            Deployment("single-torch-default", 1, 0),
            Deployment("pair-torch-default", 2, 0),
            Deployment("polling", 1, args.torch_threads),
        )
    }
    async with contextlib.AsyncExitStack() as stack:
        for number, deployment in enumerate(deployments.values(), start=1):
            await start_deployment(stack, number, deployment, redis, tmp)
        for deployment in deployments.values():
            if deployment.name == "polling":
                await deployment.fake.wait_for_calls("getUpdates", timeout=300)
            else:
                await deployment.fake.wait_for_calls("setWebhook", deployment.processes, timeout=300)
        rounds = await throughput_rounds(deployments, args)
        # latency: Telegram straight to the process (no balancer), as polling has none
        webhook, single = deployments["single"].fake.webhook, deployments["single"]
        assert webhook is not None
        webhook["url"] = single.roots[0] + PATH
        latency = await in_turn(
            {"webhook": single.fake, "polling": deployments["polling"].fake}, args.latency_questions
        )

    def ratio(run_name: str, base: str) -> float:
        return statistics.median(r[run_name]["answered_per_s"] / r[base]["answered_per_s"] for r in rounds)

    return {
        "rounds": rounds,
        "pair_vs_single": ratio("pair", "single"),
        "pair_duplicated_vs_single": ratio("pair, every update to both", "single"),
        "pair_vs_single_torch_default": ratio("pair, TORCH_THREADS=0", "single, TORCH_THREADS=0"),
        "lost": sum(r["lost"] for row in rounds for r in row.values()),
        "answered_twice": sum(r["answered_twice"] for row in rounds for r in row.values()),
        "latency": latency,
        "webhook_vs_polling_p50": latency["webhook"]["p50_ms"] / latency["polling"]["p50_ms"],
    }


def report(result: dict[str, Any]) -> None:
    o = result["overhead"]
    print(f"1. Redis per question ({o['questions_each']} questions each, alternating, one at a time)")
    print(f"{'state':>8} | {'p50 ms':>7} {'p95 ms':>7}")
    for name in ("memory", "redis"):
        print(f"{name:>8} | {o[name]['p50_ms']:>7.2f} {o[name]['p95_ms']:>7.2f}")
    overhead = f"p50 {o['redis_overhead_p50_ms']:+.2f} ms, p95 {o['redis_overhead_p95_ms']:+.2f} ms"
    print(f"Redis overhead: {overhead}\n")
    p = result["processes"]
    print(
        f"2. Throughput, {result['users']} users, {result['questions']} photo questions per run, by webhook"
    )
    print(f"{'round':>5} | {'config':>28} | {'answered/s':>10} | {'lost':>4} {'twice':>5}")
    for number, row in enumerate(p["rounds"], start=1):
        for config, r in row.items():
            counts = f"{r['lost']:>4} {r['answered_twice']:>5}"
            print(f"{number:>5} | {config:>28} | {r['answered_per_s']:>10.1f} | {counts}")
    print(
        f"2 processes / 1 (median): {p['pair_vs_single']:.2f}x; every update to both: "
        f"{p['pair_duplicated_vs_single']:.2f}x; "
        f"with TORCH_THREADS=0: {p['pair_vs_single_torch_default']:.2f}x"
    )
    print(f"lost {p['lost']}, answered twice {p['answered_twice']}\n")
    lat = p["latency"]
    print("3. Update-to-reply latency, one user in turn")
    for name in ("webhook", "polling"):
        p50, p95, n = lat[name]["p50_ms"], lat[name]["p95_ms"], lat[name]["n"]
        print(f"{name:>8} | p50 {p50:>6.1f} ms, p95 {p95:>6.1f} ms ({n})")
    print(f"webhook / polling p50: {p['webhook_vs_polling_p50']:.2f}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis:
        overhead = await state_overhead(redis, args.overhead_questions, Path(tmp))
        measured = await processes(redis, args, Path(tmp))
    return {
        "users": args.users,
        "questions": args.questions,
        "torch_threads": args.torch_threads,
        "load_average": os.getloadavg(),
        "overhead": overhead,
        "processes": measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--questions", type=int, default=600, help="photo questions per throughput run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overhead-questions", type=int, default=300, help="per state, for part 1")
    parser.add_argument("--latency-questions", type=int, default=60, help="per transport, for part 3")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="TORCH_THREADS of every bot process (0: torch's default)"
    )
    parser.add_argument("--output", type=Path, default=result_path("shared_state"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
