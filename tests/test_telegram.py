"""The Telegram adapter end to end: real python-telegram-bot 22.8, the real engine and bundled model,
and the loopback Bot API fake (``tests/fake_telegram.py``) on 127.0.0.1.

Each test checks what a user would see (the reply, what it quotes, "typing…") and the line the
request left in the prediction log. Nothing sleeps: the fake's wait helpers carry deadlines, and
``Bot.finish()`` stops the adapter (which answers everything in flight) and flushes the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image

from bots import replies
from bots.core import ChatCore
from bots.prediction_log import PredictionLog
from bots.telegram_bot import TelegramAdapter
from config.log import QUIET_LOGGERS, RedactSecrets
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.core_builder import build_test_core
from tests.fake_telegram import FakeTelegram, SentMessage
from vqa_engine import Candidate, Prediction, VQAEngine
from vqa_engine.modular.package import ModelPackage, load_package
from vqa_engine.serving.model_facts import describe

TOKEN = "5550123:AAF-fake-SECRET-t0ken_xyz"  # distinctive: a test greps every log for it
ADMIN = 1001
USER = 42
OTHER = 43
GROUP = -4001
SUPERGROUP = -1004002
COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is it?"
EXAMPLES = ROOT / "examples"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
HELP = replies.help_text("telegram", max_image_bytes=20 * 2**20, facts=describe(BUNDLED_MODEL))
DOWNLOAD_FAILED = replies.DOWNLOAD_FAILED

Entry = dict[str, Any]


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.png").read_bytes()


def resized(name: str, side: int) -> bytes:
    """The example at ``side`` × ``side`` px: every PhotoSize of a photo has its own bytes."""
    buf = io.BytesIO()
    with Image.open(EXAMPLES / f"{name}.png") as image:
        image.resize((side, side)).save(buf, format="PNG")
    return buf.getvalue()


def log_lines(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def answer_text(entry: Entry) -> str:
    """The reply the user must have seen for an answered log line (answer, confidence, top-k)."""
    candidates = tuple(Candidate(answer, confidence) for answer, confidence in entry["top_k"])
    return replies.format_prediction(Prediction(entry["answer"], entry["confidence"], candidates))


def typed_before(fake: FakeTelegram, reply: SentMessage) -> bool:
    """A "typing…" action went to the reply's chat before the reply itself."""
    return any(
        c.params["chat_id"] == reply.chat_id and c.params["action"] == "typing" and c.at <= reply.at
        for c in fake.calls_of("sendChatAction")
        if c.status == 200
    )


# -- the bot under test ------------------------------------------------------------------------


@dataclass
class Bot:
    """The fake Bot API and a started TelegramAdapter polling it."""

    fake: FakeTelegram
    core: ChatCore
    adapter: TelegramAdapter
    log_path: Path
    stopped: bool = False

    async def finish(self) -> list[Entry]:
        """Stop the adapter (it answers what is in flight first), flush the log; its lines."""
        if not self.stopped:
            self.stopped = True
            async with asyncio.timeout(10):
                await self.adapter.stop()
            self.core.prediction_log.close()
        return log_lines(self.log_path)

    async def reply(self, chat_id: int) -> SentMessage:
        [reply] = await self.fake.wait_for_reply(chat_id, timeout=10)
        return reply


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, *, loader: Callable[[], ModelPackage] | None = None
) -> AsyncIterator[Bot]:
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(30):
            fake = await FakeTelegram(TOKEN).start()
            stack.push_async_callback(fake.stop)  # last: the adapter stops before the fake
            engine = VQAEngine(loader or (lambda: load_package(BUNDLED_MODEL)))
            await engine.start()
            stack.push_async_callback(engine.close)
            log_path = tmp_path / "predictions.jsonl"
            adapters: list[TelegramAdapter] = []
            core = build_test_core(
                engine,
                PredictionLog(log_path, salt="test-salt"),
                admin_ids=f"telegram:{ADMIN}",
                platforms=lambda: ["telegram"] if adapters and adapters[0].connected else [],
            )
            adapter = TelegramAdapter(
                core,
                token=fake.token,
                base_url=fake.base_url,
                base_file_url=fake.base_file_url,
                poll_timeout=1,
            )
            adapters.append(adapter)
            bot = Bot(fake, core, adapter, log_path)
            stack.push_async_callback(bot.finish)
            await adapter.start()
        yield bot


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(tmp_path) as started:
        yield started


# -- photos and files --------------------------------------------------------------------------


async def test_a_captioned_photo_is_answered_from_its_smallest_usable_size(bot: Bot) -> None:
    fake = bot.fake
    sizes = {(side, side): resized("blue_circle", side) for side in (32, 90, 320, 800)}
    message = fake.send_photo(USER, USER, sizes, caption=COLOR_Q)
    reply = await bot.reply(USER)
    [entry] = await bot.finish()

    assert reply.reply_to_message_id == message["message_id"]
    assert reply.text is not None and reply.text.startswith("blue — ")
    assert reply.text == answer_text(entry)
    assert fake.calls_of("sendChatAction") == []  # a quick answer: no "typing…" (a request fewer)
    # one download, of the 90 x 90 size: the smallest that covers the model's 64 px input
    [small, covering, *_] = message["photo"]
    assert (covering["width"], covering["height"]) == (90, 90)
    assert fake.downloads == [covering["file_id"]]
    assert len(fake.calls_of("getFile")) == 1
    assert entry["image_bytes"] == len(sizes[(90, 90)])
    assert small["file_id"] not in fake.downloads
    assert (entry["platform"], entry["chat_type"], entry["outcome"]) == ("telegram", "private", "answered")
    assert (entry["question"], entry["answer"]) == (COLOR_Q, "blue")
    assert entry["user"] == bot.core.prediction_log.user_hash("telegram", str(USER))


async def test_documents_an_image_is_answered_a_pdf_and_a_huge_file_are_refused_unread(bot: Bot) -> None:
    fake = bot.fake
    png = fake.send_document(
        USER, USER, example("red_triangle"), file_name="shape.png", mime_type="image/png", caption=SHAPE_Q
    )
    answered = await bot.reply(USER)
    fake.send_document(USER, USER, PDF, file_name="scan.pdf", mime_type="application/pdf", caption=COLOR_Q)
    pdf = await bot.reply(USER)
    fake.send_document(
        USER, USER, b"x", file_name="huge.png", mime_type="image/png", caption=COLOR_Q, file_size=30 * 2**20
    )
    huge = await bot.reply(USER)
    entries = await bot.finish()

    assert answered.text is not None and answered.text.startswith("triangle — ")
    assert answered.text == answer_text(entries[0])
    assert answered.reply_to_message_id == png["message_id"]
    assert pdf.text == (
        "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image."
    )
    assert huge.text == "That image is larger than 20.0 MB (30.0 MB); please send a smaller one."
    # only the PNG was fetched: the others were refused from what Telegram declared
    assert fake.downloads == [png["document"]["file_id"]]
    assert [c.params["file_id"] for c in fake.calls_of("getFile")] == [png["document"]["file_id"]]
    assert [e["outcome"] for e in entries] == ["answered", "rejected:not_image", "rejected:too_large"]
    assert [e["image_bytes"] for e in entries] == [len(example("red_triangle")), len(PDF), 30 * 2**20]


async def test_a_pdf_without_a_caption_is_refused_not_kept(bot: Bot) -> None:
    bot.fake.send_document(USER, USER, PDF, file_name="scan.pdf", mime_type="application/pdf")
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text is not None and reply.text.startswith("That file is a PDF, not an image I can read")
    assert bot.fake.downloads == []
    assert (entry["outcome"], entry["question"]) == ("rejected:not_image", "")


async def test_a_reply_to_a_photo_asks_about_that_photo(bot: Bot) -> None:
    fake = bot.fake
    red = fake.send_photo(USER, USER, example("red_triangle"))
    assert (await bot.reply(USER)).text == replies.ASK_WHAT
    fake.send_photo(USER, USER, example("blue_circle"))  # the latest image: not the one asked about
    assert (await bot.reply(USER)).text == replies.ASK_WHAT
    question = fake.send_text(USER, USER, COLOR_Q, reply_to=red["message_id"])
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.reply_to_message_id == question["message_id"]
    assert reply.text is not None and reply.text.startswith("red — ")
    assert reply.text == answer_text(entry)
    assert (entry["outcome"], entry["answer"], entry["question"]) == ("answered", "red", COLOR_Q)


async def test_a_photo_without_a_caption_then_follow_up_questions(bot: Bot) -> None:
    fake = bot.fake
    photo = fake.send_photo(USER, USER, example("green_rectangle"))
    first = await bot.reply(USER)
    fake.send_text(USER, USER, COLOR_Q)
    colour = await bot.reply(USER)
    fake.send_text(USER, USER, SHAPE_Q)
    shape = await bot.reply(USER)
    entries = await bot.finish()

    assert (first.text, first.reply_to_message_id) == (replies.ASK_WHAT, photo["message_id"])
    assert fake.downloads == [photo["photo"][0]["file_id"]] * 2  # the 90 x 90 size, once a question
    assert colour.text is not None and colour.text.startswith("green — ")
    assert shape.text is not None and shape.text.startswith("rectangle — ")
    assert [colour.text, shape.text] == [answer_text(e) for e in entries]
    assert [(e["question"], e["answer"], e["outcome"]) for e in entries] == [
        (COLOR_Q, "green", "answered"),
        (SHAPE_Q, "rectangle", "answered"),
    ]


async def test_a_question_without_any_image(bot: Bot) -> None:
    message = bot.fake.send_text(USER, USER, COLOR_Q)
    reply = await bot.reply(USER)
    assert (reply.text, reply.reply_to_message_id) == (replies.NO_IMAGE, message["message_id"])
    assert await bot.finish() == []  # nothing was asked of the model
    assert bot.fake.calls_of("getFile") == []


async def test_an_album_gets_one_reply_numbering_every_photo(bot: Bot) -> None:
    fake = bot.fake
    album = fake.send_media_group(
        USER,
        USER,
        [example("blue_circle"), example("red_triangle"), example("green_rectangle")],
        caption=COLOR_Q,
    )
    reply = await bot.reply(USER)
    entries = await bot.finish()

    assert fake.replies(USER) == [reply]  # one reply for the whole album
    assert reply.reply_to_message_id == album[0]["message_id"]  # the message with the caption
    assert reply.text is not None
    assert reply.text.startswith("1. blue — ")
    assert "\n2. red — " in reply.text and "\n3. green — " in reply.text
    expected = [f"{n}. " + answer_text(e).replace("\n", "\n    ") for n, e in enumerate(entries, start=1)]
    assert reply.text == "\n".join(expected)
    assert [(e["answer"], e["outcome"]) for e in entries] == [
        ("blue", "answered"),
        ("red", "answered"),
        ("green", "answered"),
    ]


# -- groups ------------------------------------------------------------------------------------


async def test_in_groups_only_messages_addressed_to_the_bot_are_answered(bot: Bot) -> None:
    fake = bot.fake
    ignored = fake.send_photo(GROUP, USER, example("red_triangle"), caption=COLOR_Q, chat_type="group")
    chatter = fake.send_text(GROUP, OTHER, "nice triangle", reply_to=ignored["message_id"])
    by_command = fake.send_photo(GROUP, OTHER, example("blue_circle"), caption="/ask " + COLOR_Q)
    command_reply = await bot.reply(GROUP)
    mention = fake.send_photo(
        SUPERGROUP, USER, example("yellow_circle"), caption="@vqa_test_bot " + COLOR_Q, chat_type="supergroup"
    )
    mention_reply = await bot.reply(SUPERGROUP)
    # a follow-up in reply to the bot's answer: about the image this user sent in this chat
    follow_up = fake.send_text(SUPERGROUP, USER, SHAPE_Q, reply_to=mention_reply.message_id)
    follow_up_reply = await bot.reply(SUPERGROUP)
    entries = await bot.finish()

    assert command_reply.reply_to_message_id == by_command["message_id"]
    assert command_reply.text is not None and command_reply.text.startswith("blue — ")
    assert mention_reply.reply_to_message_id == mention["message_id"]
    assert mention_reply.text is not None and mention_reply.text.startswith("yellow — ")
    assert follow_up_reply.reply_to_message_id == follow_up["message_id"]
    assert follow_up_reply.text is not None and follow_up_reply.text.startswith("circle — ")
    # the group photo and the chatter not addressed to the bot: no reply, no download, no log line
    assert fake.replies(GROUP) == [command_reply]
    assert fake.replies(SUPERGROUP) == [mention_reply, follow_up_reply]
    assert chatter["message_id"] not in {r.reply_to_message_id for r in fake.replies(GROUP)}
    assert not {p["file_id"] for p in ignored["photo"]} & set(fake.downloads)
    assert [command_reply.text, mention_reply.text, follow_up_reply.text] == [answer_text(e) for e in entries]
    assert [(e["chat_type"], e["question"], e["answer"]) for e in entries] == [
        ("group", COLOR_Q, "blue"),
        ("supergroup", COLOR_Q, "yellow"),
        ("supergroup", SHAPE_Q, "circle"),
    ]
    assert {e["outcome"] for e in entries} == {"answered"}


async def test_in_a_group_ask_in_reply_to_someones_photo(bot: Bot) -> None:
    fake = bot.fake
    photo = fake.send_photo(GROUP, USER, example("green_rectangle"), chat_type="group")  # no caption
    question = fake.send_text(GROUP, OTHER, "/ask " + SHAPE_Q, reply_to=photo["message_id"])
    reply = await bot.reply(GROUP)
    [entry] = await bot.finish()
    assert fake.replies(GROUP) == [reply]  # the uncaptioned photo got no "what would you like…"
    assert reply.reply_to_message_id == question["message_id"]
    assert reply.text == answer_text(entry) and entry["answer"] == "rectangle"
    assert entry["user"] == bot.core.prediction_log.user_hash("telegram", str(OTHER))  # who asked


# -- commands ----------------------------------------------------------------------------------


async def test_start_and_help(bot: Bot) -> None:
    for command in ("/start", "/help"):
        message = bot.fake.send_text(USER, USER, command)
        reply = await bot.reply(USER)
        assert (reply.text, reply.reply_to_message_id) == (HELP, message["message_id"])
    assert "up to 20 MB" in HELP
    assert await bot.finish() == []


async def test_health_and_stats_for_admins_only(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bots.core")
    fake = bot.fake
    fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    await bot.reply(USER)
    fake.send_text(ADMIN, ADMIN, "/health")
    health = await bot.reply(ADMIN)
    fake.send_text(ADMIN, ADMIN, "/stats")
    stats = await bot.reply(ADMIN)
    refusals = []
    for command in ("/health", "/stats"):
        fake.send_text(USER, USER, command)
        refusals.append(await bot.reply(USER))
    entries = await bot.finish()

    assert health.text is not None and health.text.startswith("OK — up ")
    assert "platforms: telegram" in health.text
    assert stats.text is not None and "chat requests since start-up:" in stats.text
    assert "telegram: 1 (answered 1)" in stats.text
    assert [r.text for r in refusals] == [replies.NOT_ADMIN, replies.NOT_ADMIN]
    refused = [r for r in caplog.records if "from a non-admin" in r.getMessage()]
    assert len(refused) == 2 and all(r.levelno == logging.INFO for r in refused)
    assert [e["outcome"] for e in entries] == ["answered"]  # commands are not questions


# -- limits and errors -------------------------------------------------------------------------


async def test_the_eleventh_question_in_a_minute_is_refused(bot: Bot) -> None:
    fake = bot.fake
    texts = []
    for _ in range(11):  # one at a time: a user may have only two questions in flight
        fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
        texts.append((await bot.reply(USER)).text)
    entries = await bot.finish()

    assert all(t is not None and t.startswith("red — ") for t in texts[:10])
    prefix = "You're asking faster than I can keep up (10 per 1 minute). Please try again in "
    last = texts[10]
    assert last is not None and last.startswith(prefix) and last.endswith(" seconds.")
    assert 1 <= int(last.removeprefix(prefix).split()[0]) <= 60
    assert [e["outcome"] for e in entries] == ["answered"] * 10 + ["rate_limited"]
    assert len(fake.downloads) == 10  # refused before downloading


async def test_a_failed_download_asks_to_send_again(bot: Bot) -> None:
    fake = bot.fake
    fake.fail_next("getFile", status=400, message="Bad Request: file is too big")
    message = fake.send_document(
        USER, USER, example("blue_circle"), file_name="a.png", mime_type="image/png", caption=COLOR_Q
    )
    reply = await bot.reply(USER)
    fake.send_text(USER, USER, COLOR_Q)  # the image is still remembered: asking again works
    again = await bot.reply(USER)
    entries = await bot.finish()
    assert (reply.text, reply.reply_to_message_id) == (DOWNLOAD_FAILED, message["message_id"])
    assert again.text is not None and again.text.startswith("blue — ")
    assert [(e["outcome"], e["answer"]) for e in entries] == [("error", None), ("answered", "blue")]


async def test_an_unexpected_error_reaches_the_error_handler(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    fake = bot.fake
    # a refusal no retry can mend: the handler raises, the error handler apologises
    fake.fail_next("sendMessage", status=400, message="Bad Request: message is too long")
    message = fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    reply = await bot.reply(USER)
    [entry] = await bot.finish()

    assert (reply.text, reply.reply_to_message_id) == (replies.ERROR, message["message_id"])
    [failed] = [c for c in fake.calls_of("sendMessage") if c.status == 400]
    assert failed.params["text"].startswith("blue — ")  # the answer it tried to send
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "bots.telegram_bot" and record.getMessage().startswith("telegram: error")
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert "BadRequest: Message is too long" in caplog.text
    assert entry["outcome"] == "answered"  # the model did answer; sending it failed


async def test_no_token_in_any_log_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in QUIET_LOGGERS:  # an earlier setup_logging() in this process may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    redact = RedactSecrets([TOKEN])
    caplog.handler.addFilter(redact)  # what config.log.setup_logging installs on the app's handler
    try:
        async with running_bot(tmp_path) as bot:
            fake = bot.fake
            fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
            answer = await bot.reply(USER)
            fake.fail_next("getFile", status=400, message="Bad Request: file is too big")
            fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
            failed = await bot.reply(USER)
            # a traceback through the error handler
            fake.fail_next("sendMessage", status=400, message="Bad Request: can't parse")
            fake.send_text(USER, USER, "/help")
            apology = await bot.reply(USER)
            entries = await bot.finish()
    finally:
        caplog.handler.removeFilter(redact)
    assert answer.text is not None and answer.text.startswith("blue — ")
    assert failed.text == DOWNLOAD_FAILED
    assert apology.text == replies.ERROR
    assert [e["outcome"] for e in entries] == ["answered", "error"]
    # What the handler wrote, formatted when each record was emitted. (Not record.getMessage()
    # afterwards: PTB logs getFile's result dict lazily, then adds the token-bearing URL to it.)
    written = caplog.text
    assert "Call to Bot API endpoint `getFile`" in written  # DEBUG records from PTB were captured
    assert "Traceback (most recent call last)" in written
    assert TOKEN not in written
    assert TOKEN.split(":", 1)[1] not in written  # not even the secret half, percent-encoded or not
    assert quote(TOKEN, safe="") not in written


# -- python main.py ----------------------------------------------------------------------------


def child_env(fake: FakeTelegram, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment a deployment would give ``python main.py``, pointed at the fake."""
    ours = ("MODEL_", "TELEGRAM_", "DISCORD_", "ADMIN_IDS", "RATE_LIMIT", "PREDICTION_LOG", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN") and not k.startswith(ours)}
    env |= fake.env()
    env |= {"PREDICTION_LOG": str(tmp_path / "child.jsonl"), "LOG_LEVEL": "INFO", "DEVICE": "cpu"}
    env |= extra
    return env


async def start_child(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "main.py"),
        env=env,
        cwd=ROOT / "tests",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float) -> None:
    """Read lines into ``seen`` until one contains ``needle``."""
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode(errors="replace")
            if not line:
                raise AssertionError(f"stream ended before {needle!r}: {''.join(seen)}")
            seen.append(line)
            if needle in line:
                return


async def test_main_serves_telegram_and_drains_on_sigterm(tmp_path: Path) -> None:
    async with FakeTelegram(TOKEN) as fake:
        child = await start_child(child_env(fake, tmp_path))
        try:
            assert child.stderr is not None
            stderr: list[str] = []
            await fake.wait_for_calls("getUpdates", timeout=60)  # imports torch, loads the model
            first = fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
            answered = await fake.wait_for_reply(USER, timeout=20)

            fake.hold_downloads()
            second = fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
            await fake.wait_for_held_downloads(1, timeout=20)  # the question is in flight
            child.send_signal(signal.SIGTERM)
            await read_until(child.stderr, "stopping: answering the questions already received", stderr, 20)
            fake.release_downloads()
            drained = await fake.wait_for_reply(USER, timeout=20)
            async with asyncio.timeout(20):
                out, rest = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    err = "".join(stderr) + rest.decode(errors="replace")

    assert answered[0].reply_to_message_id == first["message_id"]
    assert answered[0].text is not None and answered[0].text.startswith("blue — ")
    assert drained[0].reply_to_message_id == second["message_id"]
    assert drained[0].text is not None and drained[0].text.startswith("red — ")
    assert child.returncode == 0, err
    assert "telegram: stopped" in err and err.rstrip().endswith("stopped")
    assert TOKEN not in err and TOKEN not in out.decode(errors="replace")
    assert TOKEN.split(":", 1)[1] not in err
    entries = log_lines(tmp_path / "child.jsonl")
    assert [(e["answer"], e["outcome"]) for e in entries] == [("blue", "answered"), ("red", "answered")]


async def test_main_with_a_rejected_token_exits_non_zero_naming_telegram(tmp_path: Path) -> None:
    wrong = "5550123:AAF-wrong-SECRET-t0ken_abc"
    async with FakeTelegram(TOKEN) as fake:
        child = await start_child(child_env(fake, tmp_path, TELEGRAM_TOKEN=wrong))
        try:
            async with asyncio.timeout(60):
                out, err_bytes = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    err = err_bytes.decode(errors="replace")
    assert child.returncode not in (0, None), err
    assert [c.status for c in fake.calls_of("getMe")] == [401]
    assert "telegram could not start" in err
    assert "error: no chat platform could start" in err
    assert "Unclosed" not in err  # every HTTP session of the failed start was closed
    assert wrong not in err and wrong not in out.decode(errors="replace")
    assert wrong.split(":", 1)[1] not in err


# -- found while writing these tests -----------------------------------------------------------


async def test_a_mention_after_an_emoji_still_addresses_the_bot(bot: Bot) -> None:
    # entity offsets count UTF-16 code units: an emoji before the mention shifts them by one
    message = bot.fake.send_photo(
        GROUP, USER, example("blue_circle"), caption="🔵 @vqa_test_bot " + COLOR_Q, chat_type="group"
    )
    reply = await bot.reply(GROUP)
    [entry] = await bot.finish()
    assert reply.reply_to_message_id == message["message_id"]
    assert reply.text == answer_text(entry) and entry["answer"] == "blue"
    assert entry["question"] == "🔵 " + COLOR_Q


async def test_a_file_without_a_declared_type_is_read_by_its_content(bot: Bot) -> None:
    fake = bot.fake
    fake.send_document(USER, USER, example("red_triangle"), file_name="img", mime_type=None, caption=COLOR_Q)
    image = await bot.reply(USER)
    fake.send_document(USER, USER, PDF, file_name="scan", mime_type=None, caption=COLOR_Q)
    pdf = await bot.reply(USER)
    entries = await bot.finish()
    assert image.text is not None and image.text.startswith("red — ")
    assert pdf.text is not None and pdf.text.startswith("That file is a PDF, not an image I can read")
    assert [e["outcome"] for e in entries] == ["answered", "rejected:not_image"]


async def test_the_answer_still_arrives_when_the_question_was_deleted(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    fake = bot.fake
    fake.hold_downloads()
    message = fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    await fake.wait_for_held_downloads(1)
    fake.delete_message(USER, message["message_id"])  # e.g. a group's anti-spam bot, or the user
    fake.release_downloads()
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text == answer_text(entry) and entry["answer"] == "blue"
    assert "reply_to_message" not in reply.message  # sent without the quote
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_album_whose_answer_cannot_be_sent_reaches_the_error_handler(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    fake = bot.fake
    fake.fail_next("sendMessage", status=400, message="Bad Request: message is too long")
    album = fake.send_media_group(
        USER, USER, [example("blue_circle"), example("red_triangle")], caption=COLOR_Q
    )
    reply = await bot.reply(USER)
    entries = await bot.finish()
    assert (reply.text, reply.reply_to_message_id) == (replies.ERROR, album[0]["message_id"])
    [failed] = [c for c in fake.calls_of("sendMessage") if c.status == 400]
    assert failed.params["text"].startswith("1. blue — ")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "bots.telegram_bot" and record.exc_info is not None
    assert [e["outcome"] for e in entries] == ["answered", "answered"]


async def test_an_album_still_waiting_for_its_last_photo_is_answered_on_stop(bot: Bot) -> None:
    fake = bot.fake
    fake.send_media_group(USER, USER, [example("yellow_circle"), example("green_rectangle")], caption=COLOR_Q)
    await fake.wait_until_confirmed()  # received: the album waits ALBUM_WAIT_S for more photos
    entries = await bot.finish()  # stop does not wait that long: it answers the album now
    [reply] = fake.replies(USER)
    assert reply.text is not None
    assert reply.text.startswith("1. yellow — ") and "\n2. green — " in reply.text
    assert [e["outcome"] for e in entries] == ["answered", "answered"]


async def test_an_edited_message_is_not_a_new_question(bot: Bot) -> None:
    fake = bot.fake
    photo = fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    first = await bot.reply(USER)
    edited = {**photo, "caption": SHAPE_Q, "edit_date": photo["date"] + 5}
    edited.pop("caption_entities", None)
    fake.inject_update({"edited_message": edited})
    await fake.wait_until_confirmed()
    fake.send_text(USER, USER, "is there a circle?")  # something after it, to be sure it was seen
    after = await bot.reply(USER)
    entries = await bot.finish()
    assert first.text is not None and first.text.startswith("blue — ")
    assert after.text is not None and after.text.startswith("yes — ")
    assert [e["question"] for e in entries] == [COLOR_Q, "is there a circle?"]  # the edit: no answer


async def test_a_refused_file_does_not_replace_the_last_photo(bot: Bot) -> None:
    fake = bot.fake
    fake.send_photo(USER, USER, example("yellow_circle"))
    assert (await bot.reply(USER)).text == replies.ASK_WHAT
    fake.send_document(USER, USER, PDF, file_name="scan.pdf", mime_type="application/pdf")
    refused = await bot.reply(USER)
    fake.send_text(USER, USER, COLOR_Q)
    follow_up = await bot.reply(USER)
    await bot.finish()
    assert refused.text is not None and refused.text.startswith("That file is a PDF")
    assert follow_up.text is not None and follow_up.text.startswith("yellow — ")  # about the photo


async def test_in_a_group_a_photo_with_only_ask_says_how_to_follow_up(bot: Bot) -> None:
    fake = bot.fake
    fake.send_photo(GROUP, USER, example("green_rectangle"), caption="/ask", chat_type="group")
    prompt = await bot.reply(GROUP)
    fake.send_text(GROUP, USER, SHAPE_Q, reply_to=prompt.message_id)  # as the prompt says
    answer = await bot.reply(GROUP)
    await bot.finish()
    assert prompt.text == replies.ASK_WHAT_GROUP["telegram"]
    assert answer.text is not None and answer.text.startswith("rectangle — ")


# -- the buttons under an answer ---------------------------------------------------------------


async def test_an_answer_has_a_chart_button_and_feedback_buttons(bot: Bot) -> None:
    fake = bot.fake
    fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    answer = await bot.reply(USER)
    [row] = answer.params["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in row] == ["📊 Chart", "👍", "👎"]
    chart_data, good_data, bad_data = (b["callback_data"] for b in row)

    fake.click(USER, USER, answer.message_id, chart_data)
    chart = await bot.reply(USER)
    fake.click(USER, USER, answer.message_id, good_data)
    fake.click(USER, USER, answer.message_id, bad_data)  # changed their mind
    answered_queries = await fake.wait_for_calls("answerCallbackQuery", 3)
    toasts = [c.params.get("text") for c in answered_queries]
    fake.send_text(ADMIN, ADMIN, "/stats")
    stats = await bot.reply(ADMIN)
    entries = await bot.finish()

    assert chart.method == "sendPhoto" and chart.reply_to_message_id == answer.message_id
    assert chart.text == f"Top answers for “{COLOR_Q}”"
    assert chart.photo is not None
    with Image.open(io.BytesIO(chart.photo)) as picture:
        assert picture.format == "PNG" and picture.width == 640
    assert toasts == [None, "Thanks for the 👍!", "Changed to 👎, thanks."]
    assert stats.text is not None and f"telegram, model {BUNDLED_MODEL}: 0% of 1 votes" in stats.text
    answered, good, bad = entries
    assert answered["outcome"] == "answered" and answered["request_id"] == chart_data.split(":")[1]
    assert [(e["outcome"], e["feedback"], e["request_id"]) for e in (good, bad)] == [
        ("feedback", "good", answered["request_id"]),
        ("feedback", "bad", answered["request_id"]),
    ]
    assert good["user"] == answered["user"]


async def test_a_button_under_a_forgotten_answer_says_so(bot: Bot) -> None:
    fake = bot.fake
    fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    answer = await bot.reply(USER)
    bot.core.feedback = type(bot.core.feedback)()  # as after a restart: the answer is not remembered
    [row] = answer.params["reply_markup"]["inline_keyboard"]
    fake.click(USER, USER, answer.message_id, row[0]["callback_data"])
    [toast] = await fake.wait_for_calls("answerCallbackQuery")
    await bot.finish()
    assert toast.params["text"] == replies.BUTTON_EXPIRED
    assert fake.replies(USER) == [answer]  # nothing sent to the chat


# -- honest answers and /about -----------------------------------------------------------------


async def test_a_photo_unlike_the_training_pictures_gets_a_guess_not_an_answer(bot: Bot) -> None:
    cat = (ROOT / "benchmarks" / "ood" / "photos" / "chelsea.jpg").read_bytes()
    bot.fake.send_photo(USER, USER, {(90, 90): cat, (320, 320): cat}, caption="what animal is this?")
    reply = await bot.reply(USER)
    fake_about = bot.fake.send_text(USER, USER, "/about")
    about = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text is not None
    assert reply.text.startswith("This picture doesn't look like the ones I was trained on (one coloured")
    assert reply.text.endswith(f"My best guess: {entry['answer']}.")
    assert (entry["abstain"], entry["reason"]) == (True, "unfamiliar_image")
    assert about.reply_to_message_id == fake_about["message_id"]
    assert about.text is not None and about.text.startswith("About the model: easy-vqa-film")
