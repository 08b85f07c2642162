"""Telegram end to end: simulated users sending photo questions through the real
python-telegram-bot and a loopback Bot API, against the engine alone, in one run.

    python benchmarks/telegram_e2e.py [--users 200] [--questions 1000]

Each user sends its next photo (with the question as caption) when the previous answer arrives.
Every photo's bytes are unique (same pixels, a different PNG text chunk), so neither the
prediction cache nor anything else can skip work. Measured:

- answered per second through Telegram, and through ``engine.answer`` alone with the same
  concurrency and inputs (the limit);
- latency from the update being queued at the fake Bot API to the reply arriving there, and the
  bot's overhead: that latency minus the time spent inside ``engine.answer`` for that question;
- replies per question: every message must get exactly one.

Prints a table; writes ``benchmarks/results/telegram_e2e.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import easy_vqa  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

from bots.core import ChatCore  # noqa: E402
from bots.memory import ImageMemory  # noqa: E402
from bots.prediction_log import PredictionLog  # noqa: E402
from bots.ratelimit import MemoryRateLimiter  # noqa: E402
from bots.telegram_bot import TelegramAdapter  # noqa: E402
from bots.user_queue import UserQueue  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from vqa_engine import Prediction  # noqa: E402
from vqa_engine.modular.package import load_package  # noqa: E402
from vqa_engine.serving.engine import EngineOptions, EngineStats, VQAEngine  # noqa: E402

MODEL = ROOT / "models" / "easy-vqa-film"


class TimedEngine:
    """The engine, recording how long each question spent inside ``answer`` (by image digest)."""

    def __init__(self, engine: VQAEngine) -> None:
        self.engine = engine
        self.inside: dict[str, float] = {}

    async def answer(self, image: bytes, question: str, *, top_k: int | None = None) -> Prediction:
        started = time.perf_counter()
        try:
            return await self.engine.answer(image, question, top_k=top_k)
        finally:
            self.inside[digest(image)] = time.perf_counter() - started

    def stats(self) -> EngineStats:
        return self.engine.stats()


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def workload(n: int) -> list[tuple[bytes, str]]:
    """``n`` (unique PNG bytes, question) pairs from the easy-VQA test split."""
    questions, _, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    jobs = []
    for i in range(n):
        image = Image.open(paths[ids[i % len(ids)]]).convert("RGB")
        info = PngImagePlugin.PngInfo()
        info.add_text("n", str(i))  # unique bytes, same pixels
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info)
        jobs.append((buf.getvalue(), questions[i % len(questions)]))
    return jobs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def simulate_users(users: int, questions: int) -> None:
    """Child process: the fake Bot API and the users, apart from the bot's process (as Telegram's
    servers and users would be). Prints the fake's address, waits for "go" on stdin, then prints
    one JSON line with every question's latency and reply count."""
    jobs = workload(questions)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeTelegram() as fake:
        fake.validate_updates = False  # the same well-formed photo update each time; saves CPU
        print(
            json.dumps({"token": fake.token, "base_url": fake.base_url, "base_file_url": fake.base_file_url})
        )
        sys.stdout.flush()
        await reader.readline()  # "go": the bot is polling
        sent: list[tuple[int, int, str]] = []  # (chat, message id, image digest)
        latency: dict[str, float] = {}  # image digest -> seconds from queued update to reply
        per_user = [jobs[u::users] for u in range(users)]

        async def user(number: int) -> None:
            chat = 10_000 + number
            for image, question in per_user[number]:
                message = fake.send_photo(chat, chat, image, caption=question, sizes=((64, 64),))
                sent.append((chat, message["message_id"], digest(image)))
                [reply] = await fake.wait_for_reply(chat, timeout=120)
                latency[digest(image)] = reply.at - fake.injected_at(chat, message["message_id"])

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(user(u) for u in range(users)))
        elapsed = time.perf_counter() - started
        print(json.dumps({"done": True}))
        sys.stdout.flush()
        await reader.readline()  # "stopped": every reply the bot will ever send is in
        replies = Counter((s.chat_id, s.reply_to_message_id) for s in fake.sent)
        counts = Counter(replies.get((chat, mid), 0) for chat, mid, _ in sent)
        cpu_s = time.process_time() - cpu_started
        print(json.dumps({"elapsed": elapsed, "latency": latency, "reply_counts": counts, "cpu_s": cpu_s}))
        sys.stdout.flush()


async def through_telegram(
    engine: VQAEngine,
    users: int,
    questions: int,
    concurrency: int,
    pool: int,
    log_dir: Path,
    flood_limit: float = 30.0,
) -> dict[str, object]:
    timed = TimedEngine(engine)
    prediction_log = PredictionLog(log_dir / "predictions.jsonl", salt="bench")
    core = ChatCore(
        timed,  # type: ignore[arg-type]
        limiter=MemoryRateLimiter("100000/minute"),
        queue=UserQueue(),  # the benchmark measures throughput, not the limit
        prediction_log=prediction_log,
        memory=ImageMemory(),
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--simulate-users",
        "--users",
        str(users),
        "--questions",
        str(questions),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    fake = json.loads(await child.stdout.readline())
    adapter = TelegramAdapter(
        core,
        token=fake["token"],
        base_url=fake["base_url"],
        base_file_url=fake["base_file_url"],
        poll_timeout=1,
        concurrent_updates=concurrency,
        connection_pool_size=pool,
        flood_limit=flood_limit,
    )
    await adapter.start()
    loop_cpu, process_cpu = time.thread_time(), time.process_time()
    child.stdin.write(b"go\n")
    await child.stdin.drain()
    await child.stdout.readline()  # {"done": true}: every user has had every answer
    loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
    await adapter.stop()
    child.stdin.write(b"stopped\n")
    await child.stdin.drain()
    result = json.loads(await child.stdout.readline())
    await child.wait()
    prediction_log.close()
    overhead = [seconds - timed.inside[d] for d, seconds in result["latency"].items() if d in timed.inside]
    counts = {int(k): v for k, v in result["reply_counts"].items()}
    outcomes = Counter(
        json.loads(line)["outcome"] for line in (log_dir / "predictions.jsonl").read_text().splitlines()
    )
    e2e = list(result["latency"].values())
    answered = sum(v for k, v in counts.items() if k >= 1)
    return {
        "answered_per_s": answered / result["elapsed"],
        "questions": sum(counts.values()),
        "latency_p50_ms": percentile(e2e, 0.5) * 1000,
        "latency_p95_ms": percentile(e2e, 0.95) * 1000,
        "overhead_p50_ms": percentile(overhead, 0.5) * 1000,
        "overhead_p95_ms": percentile(overhead, 0.95) * 1000,
        "inside_engine_p50_ms": statistics.median(timed.inside.values()) * 1000,
        "replies_per_question": {str(k): v for k, v in sorted(counts.items())},
        "lost": counts.get(0, 0),
        "duplicated": sum(v for k, v in counts.items() if k > 1),
        "log_outcomes": dict(outcomes),
        # CPU seconds per question: the bot's event loop (PTB, aiohttp, our handlers), the rest
        # of the bot's process (decode and inference threads), the fake Bot API and its users
        "cpu_ms_per_question": {
            "bot_event_loop": loop_cpu / len(e2e) * 1000,
            "bot_engine_threads": (process_cpu - loop_cpu) / len(e2e) * 1000,
            "fake_bot_api_and_users": result["cpu_s"] / len(e2e) * 1000,
        },
    }


async def engine_alone(engine: VQAEngine, jobs: list[tuple[bytes, str]], users: int) -> dict[str, object]:
    per_user = [jobs[u::users] for u in range(users)]
    latencies: list[float] = []

    async def user(number: int) -> None:
        for image, question in per_user[number]:
            started = time.perf_counter()
            await engine.answer(image, question)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(users)))
    elapsed = time.perf_counter() - started
    return {
        "answered_per_s": len(latencies) / elapsed,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p95_ms": percentile(latencies, 0.95) * 1000,
    }


async def run(
    users: int, questions: int, concurrency: int, rounds: int, pool: int = 32, flood_limit: float = 30.0
) -> dict[str, object]:
    jobs = workload(questions)
    options = EngineOptions(cache_size=0, max_queue=4096)
    results: list[tuple[dict[str, object], dict[str, object]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with VQAEngine(lambda: load_package(MODEL), options=options) as engine:
            await engine_alone(engine, jobs[:100], 20)  # warm threads
            for number in range(rounds):  # interleaved
                alone = await engine_alone(engine, jobs, users)
                log_dir = Path(tmp) / str(number)
                log_dir.mkdir()
                telegram = await through_telegram(
                    engine, users, questions, concurrency, pool, log_dir, flood_limit
                )
                results.append((alone, telegram))
            # one user at a time: the bot's own overhead, with no queue anywhere
            (Path(tmp) / "unloaded").mkdir()
            unloaded = await through_telegram(
                engine, 1, 50, concurrency, pool, Path(tmp) / "unloaded", flood_limit
            )
    ratios = [float(t["answered_per_s"]) / float(a["answered_per_s"]) for a, t in results]  # type: ignore[arg-type]
    best = results[ratios.index(statistics.median(ratios))] if len(ratios) % 2 else results[0]
    return {
        "users": users,
        "questions": questions,
        "concurrent_updates": concurrency,
        "connection_pool_size": pool,
        "flood_limit_per_s": flood_limit,
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "rounds": [{"engine_alone": a, "telegram": t} for a, t in results],
        "telegram_vs_engine": statistics.median(ratios),
        "median_round": {"engine_alone": best[0], "telegram": best[1]},
        "one_user": unloaded,
    }


def report(result: dict) -> None:  # type: ignore[type-arg]
    print(
        f"{result['users']} users, {result['questions']} photo questions, concurrent updates "
        f"{result['concurrent_updates']}, flood limit {result['flood_limit_per_s']:g}/s"
    )
    print(
        f"{'round':>5} | {'engine/s':>8} {'p50 ms':>7} | {'telegram/s':>10} {'p50 ms':>7} {'p95 ms':>7} | "
        f"{'overhead p50':>12} {'p95':>6} | {'vs engine':>9} | {'lost':>4} {'dup':>4}"
    )
    for number, r in enumerate(result["rounds"], start=1):
        a, t = r["engine_alone"], r["telegram"]
        print(
            f"{number:>5} | {a['answered_per_s']:>8.0f} {a['latency_p50_ms']:>7.0f} | "
            f"{t['answered_per_s']:>10.0f} {t['latency_p50_ms']:>7.0f} {t['latency_p95_ms']:>7.0f} | "
            f"{t['overhead_p50_ms']:>9.1f} ms {t['overhead_p95_ms']:>6.1f} | "
            f"{t['answered_per_s'] / a['answered_per_s']:>8.0%} | {t['lost']:>4} {t['duplicated']:>4}"
        )
    print(f"telegram / engine alone (median of rounds): {result['telegram_vs_engine']:.0%}")
    one = result["one_user"]
    print(
        f"one user, 50 questions in turn: {one['answered_per_s']:.0f}/s, latency p50 "
        f"{one['latency_p50_ms']:.1f} ms, bot overhead p50 {one['overhead_p50_ms']:.1f} ms, "
        f"p95 {one['overhead_p95_ms']:.1f} ms, lost {one['lost']}"
    )
    cpu = result["median_round"]["telegram"]["cpu_ms_per_question"]
    print("CPU ms per question: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in cpu.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--concurrent-updates", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=32, help="HTTP connections to the Bot API")
    parser.add_argument(
        "--flood-limit",
        type=float,
        default=30.0,
        help="messages a second the bot allows itself (Telegram's limit: 30; a large value: none)",
    )
    parser.add_argument("--simulate-users", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the bot on uvloop, as main.py runs",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "telegram_e2e.json")
    args = parser.parse_args()
    if args.simulate_users:
        asyncio.run(simulate_users(args.users, args.questions))
        return
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(
        run(args.users, args.questions, args.concurrent_updates, args.rounds, args.pool, args.flood_limit)
    )
    report(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
