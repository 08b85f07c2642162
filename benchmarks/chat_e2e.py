"""Discord and Telegram together on one engine: mixed load through both real client libraries.

    python benchmarks/chat_e2e.py [--users 100] [--questions 500]

Half the users are on Telegram (photo + caption), half on Discord (a DM with an attachment).
The loopback Bot API, the loopback Discord gateway/REST/CDN and all users run in a child
process; both bots and the one engine in this one. Reported per platform: questions answered
per second, latency, the bots' overhead (latency minus the time inside ``engine.answer``) and
the count of questions left unanswered (goal 0). Writes ``benchmarks/results/chat_e2e.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from telegram_e2e import TimedEngine, digest, percentile, workload  # noqa: E402

from bots.core import ChatCore  # noqa: E402
from bots.discord_bot import DiscordAdapter, point_at  # noqa: E402
from bots.memory import ImageMemory  # noqa: E402
from bots.prediction_log import PredictionLog  # noqa: E402
from bots.ratelimit import MemoryRateLimiter  # noqa: E402
from bots.telegram_bot import TelegramAdapter  # noqa: E402
from bots.user_queue import UserQueue  # noqa: E402
from tests.fake_discord import FakeDiscord  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from vqa_engine.modular.package import load_package  # noqa: E402
from vqa_engine.serving.engine import EngineOptions, VQAEngine  # noqa: E402

MODEL = ROOT / "models" / "easy-vqa-film"


async def simulate_users(users: int, questions: int) -> None:
    """Child process: both fakes and every user; prints addresses, then results (JSON lines)."""
    jobs = workload(questions)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeTelegram() as telegram, FakeDiscord() as discord_fake:
        telegram.validate_updates = False
        for u in range(users // 2, users):
            discord_fake.add_user(20_000 + u)
        print(json.dumps({"telegram": telegram.env(), "discord": discord_fake.env()}))
        sys.stdout.flush()
        await reader.readline()  # "go"
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
        print(json.dumps({"done": True}))
        sys.stdout.flush()
        await reader.readline()  # "stopped"
        unanswered = Counter(platform for platform, d in asked if d not in latency)
        print(json.dumps({"elapsed": elapsed, "latency": latency, "asked": asked, "unanswered": unanswered}))
        sys.stdout.flush()


async def run(users: int, questions: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        options = EngineOptions(cache_size=0, max_queue=4096)
        async with VQAEngine(lambda: load_package(MODEL), options=options) as engine:
            timed = TimedEngine(engine)
            log = PredictionLog(Path(tmp) / "predictions.jsonl", salt="bench")
            core = ChatCore(
                timed,  # type: ignore[arg-type]
                limiter=MemoryRateLimiter("100000/minute"),
                queue=UserQueue(),
                prediction_log=log,
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
            fakes = json.loads(await child.stdout.readline())
            tg, dc = fakes["telegram"], fakes["discord"]
            point_at(dc["DISCORD_API_BASE"], dc["DISCORD_GATEWAY_URL"])
            adapters: list[TelegramAdapter | DiscordAdapter] = [
                TelegramAdapter(
                    core,
                    token=tg["TELEGRAM_TOKEN"],
                    base_url=tg["TELEGRAM_BASE_URL"],
                    base_file_url=tg["TELEGRAM_BASE_FILE_URL"],
                    poll_timeout=1,
                ),
                DiscordAdapter(core, token=dc["DISCORD_TOKEN"], guild_ready_timeout=0.05),
            ]
            for adapter in adapters:
                await adapter.start()
            child.stdin.write(b"go\n")
            await child.stdin.drain()
            await child.stdout.readline()  # done
            for adapter in adapters:
                await adapter.stop()
            child.stdin.write(b"stopped\n")
            await child.stdin.drain()
            result = json.loads(await child.stdout.readline())
            await child.wait()
            log.close()
    rows = {}
    for platform in ("telegram", "discord"):
        mine = {d: s for d, (p, s) in result["latency"].items() if p == platform}
        overhead = [s - timed.inside[d] for d, s in mine.items() if d in timed.inside]
        asked = sum(1 for p, _ in result["asked"] if p == platform)
        rows[platform] = {
            "questions": asked,
            "answered_per_s": len(mine) / result["elapsed"],
            "latency_p50_ms": percentile(list(mine.values()), 0.5) * 1000,
            "latency_p95_ms": percentile(list(mine.values()), 0.95) * 1000,
            "overhead_p50_ms": percentile(overhead, 0.5) * 1000,
            "overhead_p95_ms": percentile(overhead, 0.95) * 1000,
            "unanswered": result["unanswered"].get(platform, 0),
        }
    answered = len(result["latency"])
    return {
        "users": users,
        "questions": questions,
        "answered_per_s": answered / result["elapsed"],
        "platforms": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--simulate-users", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "chat_e2e.json")
    args = parser.parse_args()
    if args.simulate_users:
        asyncio.run(simulate_users(args.users, args.questions))
        return
    import uvloop

    result = uvloop.run(run(args.users, args.questions))
    print(f"{result['users']} users (half per platform), {result['questions']} questions, one engine")
    print(
        f"{'platform':>9} | {'questions':>9} {'answered/s':>10} | {'p50 ms':>7} {'p95 ms':>7} | "
        f"{'overhead p50':>12} {'p95':>7} | {'unanswered':>10}"
    )
    for platform, row in result["platforms"].items():  # type: ignore[attr-defined]
        print(
            f"{platform:>9} | {row['questions']:>9} {row['answered_per_s']:>10.0f} | "
            f"{row['latency_p50_ms']:>7.0f} {row['latency_p95_ms']:>7.0f} | "
            f"{row['overhead_p50_ms']:>9.1f} ms {row['overhead_p95_ms']:>7.1f} | {row['unanswered']:>10}"
        )
    print(f"both: {result['answered_per_s']:.0f} questions/s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
