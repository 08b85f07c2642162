"""Discord and Telegram together on one engine: mixed load through both real client libraries.

    python -m benchmarks.chat_e2e [--users 100] [--questions 500]

Half the users are on Telegram (photo + caption), half on Discord (a DM with an attachment).
The loopback Bot API, the loopback Discord gateway/REST/CDN and all users run in a helper
process; both bots and the one engine in this one. Reported per platform: questions answered
per second, latency, the bots' overhead (latency minus the time inside ``engine.answer``) and
the count of questions left unanswered (goal 0). Writes ``benchmarks/results/chat_e2e.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.chat import TimedEngine, chat_core
from benchmarks.common import BUNDLED_MODEL, percentile, result_path, write_result
from benchmarks.processes import Helper, Parent
from benchmarks.workloads import digest, unique_jobs
from bots.discord_bot import DiscordAdapter
from bots.prediction_log import PredictionLog
from bots.telegram_bot import TelegramAdapter
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from vqa_engine.modular.package import load_package
from vqa_engine.serving.engine import EngineOptions, VQAEngine


async def simulate_users(users: int, questions: int) -> None:
    """Helper process: both fakes and every user; tells their addresses, then the results."""
    jobs = unique_jobs(questions)
    parent = await Parent.connect()
    async with FakeTelegram() as telegram, FakeDiscord() as discord_fake:
        telegram.validate_updates = False
        for u in range(users // 2, users):
            discord_fake.add_user(20_000 + u)
        parent.tell({"telegram": telegram.env(), "discord": discord_fake.env()})
        await parent.wait()  # "go"
        latency: dict[str, tuple[str, float]] = {}  # digest -> (platform, seconds)
        asked: list[tuple[str, str]] = []  # (platform, digest)
        per_user = [jobs[u::users] for u in range(users)]

        async def telegram_user(number: int) -> None:
            chat = 10_000 + number
            for image, question in per_user[number]:
                asked.append(("telegram", digest(image)))
                message = telegram.send_photo(chat, chat, image, caption=question, sizes=((64, 64),))
                [reply] = await telegram.wait_for_reply(chat, timeout=120)
                seconds = reply.at - telegram.injected_at(chat, message["message_id"])
                latency[digest(image)] = ("telegram", seconds)

        async def discord_user(number: int) -> None:
            user = 20_000 + number
            dm = discord_fake.dm_channel(user)
            for image, question in per_user[number]:
                asked.append(("discord", digest(image)))
                sent_at = time.monotonic()
                discord_fake.send_message(dm, user, question, attachments=[discord_fake.attachment(image)])
                [reply] = await discord_fake.wait_for_message(dm, timeout=120)
                latency[digest(image)] = ("discord", reply.at - sent_at)

        started = time.perf_counter()
        await asyncio.gather(
            *(telegram_user(u) for u in range(users // 2)),
            *(discord_user(u) for u in range(users // 2, users)),
        )
        elapsed = time.perf_counter() - started
        parent.tell({"done": True})
        await parent.wait()  # "stopped"
        unanswered = Counter(platform for platform, d in asked if d not in latency)
        parent.tell({"elapsed": elapsed, "latency": latency, "asked": asked, "unanswered": unanswered})


def adapters(core: Any, fakes: dict[str, dict[str, str]]) -> list[TelegramAdapter | DiscordAdapter]:
    """Both bots, pointed at the helper's fakes."""
    tg, dc = fakes["telegram"], fakes["discord"]
    return [
        TelegramAdapter(
            core,
            token=tg["TELEGRAM_TOKEN"],
            base_url=tg["TELEGRAM_BASE_URL"],
            base_file_url=tg["TELEGRAM_BASE_FILE_URL"],
            poll_timeout=1,
        ),
        DiscordAdapter(
            core,
            token=dc["DISCORD_TOKEN"],
            guild_ready_timeout=0.05,
            api_base=dc["DISCORD_API_BASE"],
            gateway_url=dc["DISCORD_GATEWAY_URL"],
        ),
    ]


async def run(users: int, questions: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        options = EngineOptions(cache_size=0, max_queue=4096)
        async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options) as engine:
            timed = TimedEngine(engine)
            with PredictionLog(Path(tmp) / "predictions.jsonl", salt="bench") as log:
                helper = await Helper.start(
                    "benchmarks.chat_e2e",
                    "--simulate-users",
                    "--users",
                    str(users),
                    "--questions",
                    str(questions),
                )
                bots = adapters(chat_core(timed, log), await helper.read())
                for bot in bots:
                    await bot.start()
                await helper.say("go")
                await helper.read()  # done
                for bot in bots:
                    await bot.stop()
                await helper.say("stopped")
                result = await helper.last()
    return {
        "users": users,
        "questions": questions,
        "answered_per_s": len(result["latency"]) / result["elapsed"],
        "platforms": {
            platform: platform_row(result, timed, platform) for platform in ("telegram", "discord")
        },
    }


def platform_row(result: dict[str, Any], timed: TimedEngine, platform: str) -> dict[str, float]:
    """One platform's figures from the helper's latencies and the time inside the engine."""
    mine = {d: s for d, (p, s) in result["latency"].items() if p == platform}
    overhead = [s - timed.inside[d] for d, s in mine.items() if d in timed.inside]
    return {
        "questions": sum(1 for p, _ in result["asked"] if p == platform),
        "answered_per_s": len(mine) / result["elapsed"],
        "latency_p50_ms": percentile(list(mine.values()), 0.5) * 1000,
        "latency_p95_ms": percentile(list(mine.values()), 0.95) * 1000,
        "overhead_p50_ms": percentile(overhead, 0.5) * 1000,
        "overhead_p95_ms": percentile(overhead, 0.95) * 1000,
        "unanswered": result["unanswered"].get(platform, 0),
    }


def report(result: dict[str, Any]) -> None:
    print(f"{result['users']} users (half per platform), {result['questions']} questions, one engine")
    print(
        f"{'platform':>9} | {'questions':>9} {'answered/s':>10} | {'p50 ms':>7} {'p95 ms':>7} | "
        f"{'overhead p50':>12} {'p95':>7} | {'unanswered':>10}"
    )
    for platform, row in result["platforms"].items():
        print(
            f"{platform:>9} | {row['questions']:>9} {row['answered_per_s']:>10.0f} | "
            f"{row['latency_p50_ms']:>7.0f} {row['latency_p95_ms']:>7.0f} | "
            f"{row['overhead_p50_ms']:>9.1f} ms {row['overhead_p95_ms']:>7.1f} | {row['unanswered']:>10}"
        )
    print(f"both: {result['answered_per_s']:.0f} questions/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--simulate-users", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=result_path("chat_e2e"))
    args = parser.parse_args()
    if args.simulate_users:
        asyncio.run(simulate_users(args.users, args.questions))
        return
    import uvloop

    result = uvloop.run(run(args.users, args.questions))
    report(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
