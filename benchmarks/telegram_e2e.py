"""Telegram end to end: simulated users sending photo questions through the real
python-telegram-bot and a loopback Bot API, against the engine alone, in one run.

    python -m benchmarks.telegram_e2e [--users 200] [--questions 1000]

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
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.chat import TimedEngine, chat_core
from benchmarks.common import BUNDLED_MODEL, Jobs, percentile, result_path, write_result
from benchmarks.load import answer_all
from benchmarks.processes import Helper, Parent
from benchmarks.workloads import digest, unique_jobs
from bots.prediction_log import PredictionLog
from bots.telegram_bot import TelegramAdapter
from tests.fake_telegram import FakeTelegram
from vqa_engine.modular.package import load_package
from vqa_engine.serving.engine import EngineOptions, VQAEngine


async def simulate_users(users: int, questions: int) -> None:
    """Helper process: the fake Bot API and the users, apart from the bot's process (as Telegram's
    servers and users would be). Tells the fake's address, waits for "go", then, once the bot has
    stopped, tells every question's latency and reply count."""
    jobs = unique_jobs(questions)
    parent = await Parent.connect()
    async with FakeTelegram() as fake:
        fake.validate_updates = False  # the same well-formed photo update each time; saves CPU
        parent.tell({"token": fake.token, "base_url": fake.base_url, "base_file_url": fake.base_file_url})
        await parent.wait()  # "go": the bot is polling
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
        parent.tell({"done": True})
        await parent.wait()  # "stopped": every reply the bot will ever send is in
        replies = Counter((s.chat_id, s.reply_to_message_id) for s in fake.sent)
        counts = Counter(replies.get((chat, mid), 0) for chat, mid, _ in sent)
        cpu_s = time.process_time() - cpu_started
        parent.tell({"elapsed": elapsed, "latency": latency, "reply_counts": counts, "cpu_s": cpu_s})


async def through_telegram(
    engine: VQAEngine,
    users: int,
    questions: int,
    concurrency: int,
    pool: int,
    log_dir: Path,
    flood_limit: float = 30.0,
) -> dict[str, object]:
    """The questions of ``users`` helper-process users through the bot; its figures."""
    timed = TimedEngine(engine)
    prediction_log = PredictionLog(log_dir / "predictions.jsonl", salt="bench")
    helper = await Helper.start(
        "benchmarks.telegram_e2e", "--simulate-users", "--users", str(users), "--questions", str(questions)
    )
    fake = await helper.read()
    adapter = TelegramAdapter(
        chat_core(timed, prediction_log),
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
    await helper.say("go")
    await helper.read()  # {"done": true}: every user has had every answer
    loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
    await adapter.stop()
    await helper.say("stopped")
    result = await helper.last()
    prediction_log.close()
    return summarise(result, timed, log_dir / "predictions.jsonl", loop_cpu, process_cpu)


def summarise(
    result: dict[str, Any], timed: TimedEngine, log: Path, loop_cpu: float, process_cpu: float
) -> dict[str, object]:
    """One run's figures from the helper's latencies and reply counts, the time inside the engine
    and the prediction log."""
    overhead = [seconds - timed.inside[d] for d, seconds in result["latency"].items() if d in timed.inside]
    counts = {int(k): v for k, v in result["reply_counts"].items()}
    outcomes = Counter(json.loads(line)["outcome"] for line in log.read_text().splitlines())
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


async def engine_alone(engine: VQAEngine, jobs: Jobs, users: int) -> dict[str, object]:
    load = await answer_all(engine.answer, jobs, users)
    return {
        "answered_per_s": load.per_s,
        "latency_p50_ms": load.latency_ms(0.5),
        "latency_p95_ms": load.latency_ms(0.95),
    }


async def run(
    users: int, questions: int, concurrency: int, rounds: int, pool: int = 32, flood_limit: float = 30.0
) -> dict[str, object]:
    jobs = unique_jobs(questions)
    options = EngineOptions(cache_size=0, max_queue=4096)
    results: list[tuple[dict[str, object], dict[str, object]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options) as engine:
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


def report(result: dict[str, Any]) -> None:
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
    parser.add_argument("--output", type=Path, default=result_path("telegram_e2e"))
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
    write_result(args.output, result)


if __name__ == "__main__":
    main()
