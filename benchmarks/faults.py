"""The fault table: what a user gets when the platform pushes back, and how long recovery takes.

    python -m benchmarks.faults [--output benchmarks/results/faults.json]

Each fault is injected into the loopback fakes and met by the real client libraries (the same
adapters, core and engine as ``python main.py``); the first few also by ``python main.py`` itself
as a child process. For each: what the user received, and the time from the fault (or from the
question, when the fault is on the way to its answer) to the user's reply, beside the same
question's latency without the fault in the same run.

Prints a table; writes ``benchmarks/results/faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.chat import chat_core
from benchmarks.common import BUNDLED_MODEL, ROOT, result_path, write_result
from benchmarks.processes import inherited_env, read_until, start_main
from bots.core import ChatCore
from bots.discord_bot import DiscordAdapter
from bots.prediction_log import PredictionLog
from bots.telegram_bot import TelegramAdapter
from tests.fake_discord import CREATE_MESSAGE, FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.loopback import DOWNLOAD
from vqa_engine.modular.package import load_package
from vqa_engine.serving.engine import VQAEngine

QUESTION = "what color is the shape?"
IMAGE = (ROOT / "examples" / "blue_circle.png").read_bytes()
USER = 42


@dataclass
class Row:
    fault: str
    user_got: str
    recovery_s: float | None  # fault (or question) to the user's reply; None: not applicable
    baseline_s: float | None = None  # the same, without the fault
    note: str = ""


def core_for(engine: VQAEngine, log_dir: Path) -> ChatCore:
    log = PredictionLog(log_dir / "predictions.jsonl", salt="faults")
    return chat_core(engine, log, rate_limit="1000/minute")


@contextlib.asynccontextmanager
async def telegram_bot(engine: VQAEngine, log_dir: Path) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        adapter = TelegramAdapter(
            core_for(engine, log_dir),
            token=fake.token,
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            poll_timeout=1,
        )
        await adapter.start()
        try:
            yield fake
        finally:
            await adapter.stop()


def describe(text: str | None, *, quoted: bool = True) -> str:
    first = (text or "").splitlines()[0] if text else "(nothing)"
    return f"{first}{'' if quoted else ' (without the quote)'}"


async def telegram_question(fake: FakeTelegram, chat: int = USER) -> tuple[float, str, bool]:
    """One photo question; seconds to the reply, its first line, whether it quotes the question."""
    started = time.monotonic()
    fake.send_photo(chat, chat, IMAGE, caption=QUESTION)
    [reply] = await fake.wait_for_reply(chat, timeout=60)
    return reply.at - started, reply.text or "", reply.reply_to_message_id is not None


async def telegram_faults(engine: VQAEngine, tmp: Path) -> list[Row]:
    rows = []
    async with telegram_bot(engine, tmp) as fake:
        baseline, _, _ = await telegram_question(fake)

        fake.fail_next("sendMessage", status=429, retry_after=1)
        seconds, text, quoted = await telegram_question(fake)
        rows.append(Row("Telegram 429 `retry after 1` on the answer", describe(text), seconds, baseline))

        fake.fail_next("sendMessage", status=400, message="Bad Request: message to be replied not found")
        seconds, text, quoted = await telegram_question(fake)
        rows.append(
            Row(
                "Telegram: the question deleted (reply target gone)",
                describe(text, quoted=quoted),
                seconds,
                baseline,
            )
        )

        fake.fail_next(DOWNLOAD, status=500)
        seconds, text, quoted = await telegram_question(fake)
        rows.append(Row("Telegram file download answers 500", describe(text), seconds, baseline))

        fake.fail_next("sendMessage", status=502)
        seconds, text, quoted = await telegram_question(fake)
        rows.append(Row("Telegram 502 on the answer", describe(text), seconds, baseline))

        # getUpdates fails for 3 s; a question sent meanwhile waits for the Bot API to come back
        fake.fail_next("getUpdates", status=502, times=None)
        await fake.wait_for_calls("getUpdates", status=502, timeout=30)
        outage_started = time.monotonic()
        fake.send_photo(USER, USER, IMAGE, caption=QUESTION)
        await asyncio.sleep(3 - (time.monotonic() - outage_started))
        fake.clear_failures()
        outage_ended = time.monotonic()
        [reply] = await fake.wait_for_reply(USER, timeout=60)
        rows.append(
            Row(
                "Telegram getUpdates answers 502 for 3 s",
                describe(reply.text),
                reply.at - outage_ended,
                None,
                "after the outage ends; python-telegram-bot backs off 1, 1.5, 2.25 s… between polls",
            )
        )
    return rows


async def discord_faults(engine: VQAEngine, tmp: Path) -> list[Row]:
    async with FakeDiscord() as fake:
        fake.add_user(7001, "alice")
        adapter = DiscordAdapter(
            core_for(engine, tmp),
            token=fake.token,
            guild_ready_timeout=0.05,
            api_base=fake.api_base,
            gateway_url=fake.gateway_url,
        )
        await adapter.start()
        try:
            dm = fake.dm_channel(7001)

            async def ask() -> tuple[float, str]:
                started = time.monotonic()
                fake.send_message(dm, 7001, QUESTION, attachments=[fake.attachment(IMAGE)])
                [sent] = await fake.wait_for_message(dm, timeout=60)
                return sent.at - started, sent.content or ""

            baseline, _ = await ask()
            fake.fail_next(CREATE_MESSAGE, status=502)
            seconds, text = await ask()
            five = Row(
                "Discord 502 on the answer",
                describe(text),
                seconds,
                baseline,
                "discord.py retries after 1 s",
            )
            fake.fail_next(DOWNLOAD, status=500)
            seconds, text = await ask()
            cdn = Row("Discord attachment download answers 500", describe(text), seconds, baseline)
        finally:
            await adapter.stop()
    return [five, cdn]


def base_env(tmp: Path) -> dict[str, str]:
    ours = ("MODEL_", "TELEGRAM_", "DISCORD_", "ADMIN_IDS", "RATE_LIMIT", "PREDICTION_LOG", "LOG_LEVEL")
    env = inherited_env(drop_prefixes=ours)
    return env | {"PREDICTION_LOG": str(tmp / "child.jsonl"), "DEVICE": "cpu", "NO_PROXY": "127.0.0.1"}


async def process_faults(tmp: Path) -> list[Row]:
    rows = []
    for platform, route in (("discord", "GET /users/@me"), ("telegram", "getMe")):
        fake: FakeDiscord | FakeTelegram = FakeDiscord() if platform == "discord" else FakeTelegram()
        async with fake:
            fake.hang(route)
            process = await start_main(env=base_env(tmp) | fake.env())
            assert process.stderr is not None
            await read_until(process.stderr, f"{platform}: logging in")
            await fake.wait_for_calls(route, timeout=60)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, err = await process.communicate()
            rows.append(
                Row(
                    f"SIGTERM while the {platform} login hangs",
                    f"exit {process.returncode}" + (" (no traceback)" if b"Traceback" not in err else ""),
                    time.monotonic() - sent,
                    None,
                    "SIGTERM to exit",
                )
            )
    blocker = tmp / "a-file"
    blocker.write_text("x")
    started = time.monotonic()
    process = await start_main(
        env=base_env(tmp) | {"TELEGRAM_TOKEN": "1:x", "PREDICTION_LOG": str(blocker / "p.jsonl")}
    )
    _, err = await process.communicate()
    rows.append(
        Row(
            "PREDICTION_LOG cannot be written",
            # the temporary folder as "…": the table names no folder of the machine it ran on
            f"exit {process.returncode}: {err.decode().strip().replace(str(tmp), '…')}",
            time.monotonic() - started,
            None,
            "process start to exit",
        )
    )
    return rows


async def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
            rows = await telegram_faults(engine, tmp)
            rows += await discord_faults(engine, tmp)
        rows += await process_faults(tmp)
    return rows


def report(rows: list[Row]) -> None:
    print(f"{'fault':<52} | {'time to the reply':>17} | {'without the fault':>17} | what the user got")
    for row in rows:
        recovery = f"{row.recovery_s:.2f} s" if row.recovery_s is not None else "–"
        baseline = f"{row.baseline_s:.3f} s" if row.baseline_s is not None else "–"
        print(f"{row.fault:<52} | {recovery:>17} | {baseline:>17} | {row.user_got}  {row.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=result_path("faults"))
    args = parser.parse_args()
    rows = asyncio.run(run())
    report(rows)
    write_result(args.output, [row.__dict__ for row in rows], ensure_ascii=False)


if __name__ == "__main__":
    main()
