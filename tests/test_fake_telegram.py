"""The loopback Telegram fake works with the real, unmodified python-telegram-bot.

Other tests (the Telegram adapter, ``python main.py`` as a child process, the end-to-end benchmark)
trust this fake, so each behaviour they rely on is shown here with PTB itself doing the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import FakeTelegram, check_markup, detect_entities

MAX_DOWNLOAD = 20 * 1024 * 1024


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with asyncio.timeout(5), FakeTelegram() as server:
        yield server


def build_app(fake: FakeTelegram, token: str | None = None, concurrency: bool | int = True) -> Application:
    return (
        ApplicationBuilder()
        .token(token or fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .concurrent_updates(concurrency)
        .build()
    )


@contextlib.asynccontextmanager
async def polling(
    fake: FakeTelegram, *handlers: BaseHandler, concurrency: bool | int = True
) -> AsyncIterator[Application]:
    """A started Application polling the fake; teardown is bounded so a bug cannot hang the suite."""
    app = build_app(fake, concurrency=concurrency)
    for handler in handlers:
        app.add_handler(handler)
    async with asyncio.timeout(5):
        await app.initialize()
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, poll_interval=0)
    try:
        yield app
    finally:
        async with asyncio.timeout(5):
            await app.updater.stop()
            await app.stop()
            await app.shutdown()


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Reply with the same text, quoting the message."""
    assert update.message is not None and update.message.text is not None
    await update.message.reply_text(update.message.text, do_quote=True)


async def photo_size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Download the largest size of a photo and reply with its byte length."""
    assert update.message is not None
    await context.bot.send_chat_action(update.message.chat_id, ChatAction.TYPING)
    file = await update.message.photo[-1].get_file()
    data = await file.download_as_bytearray()
    await update.message.reply_text(f"{len(data)} bytes")


async def document_size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Refuse a document over the download limit without fetching it; else download it."""
    assert update.message is not None and update.message.document is not None
    document = update.message.document
    if (document.file_size or 0) > MAX_DOWNLOAD:
        await update.message.reply_text("too big")
        return
    data = await (await document.get_file()).download_as_bytearray()
    await update.message.reply_text(f"{document.file_name}: {len(data)} bytes")


ECHO = MessageHandler(filters.TEXT & ~filters.COMMAND, echo)
PHOTO = MessageHandler(filters.PHOTO, photo_size)
DOCUMENT = MessageHandler(filters.Document.ALL, document_size)


# -- through a polling Application ----------------------------------------------------------------


async def test_echo_replies_to_the_message(fake: FakeTelegram) -> None:
    async with polling(fake, ECHO):
        first = fake.send_text(42, 42, "hello")
        second = fake.send_text(42, 42, "again")
        replies = await fake.wait_for_reply(42, count=2, timeout=5)
    by_reply = {r.reply_to_message_id: r for r in replies}
    assert by_reply[first["message_id"]].text == "hello"
    assert by_reply[second["message_id"]].text == "again"
    returned = by_reply[first["message_id"]].message
    assert returned["from"]["id"] == fake.bot_id and returned["reply_to_message"]["text"] == "hello"
    # PTB sends the quote as reply_parameters JSON, never reply_to_message_id
    params = by_reply[first["message_id"]].params
    assert params["reply_parameters"] == {"message_id": first["message_id"]}
    assert "reply_to_message_id" not in params and params["chat_id"] == 42


async def test_injection_from_a_thread_wakes_the_long_poll(fake: FakeTelegram) -> None:
    hand_built = {
        "message_id": 77,
        "date": 0,
        "chat": {"id": 43, "type": "private", "first_name": "Ann"},
        "from": {"id": 43, "is_bot": False, "first_name": "Ann"},
        "text": "hand-built",
    }
    async with polling(fake, ECHO):
        await fake.wait_for_calls("getUpdates", 1, timeout=5)  # a 1 s long poll is pending now
        started = time.monotonic()
        await asyncio.to_thread(fake.send_text, 42, 42, "from a thread")
        [from_thread] = await fake.wait_for_reply(42, timeout=5)
        assert time.monotonic() - started < 0.9  # woken, not answered by the poll's timeout
        fake.inject_update({"message": hand_built})
        [reply] = await fake.wait_for_reply(43, timeout=5)
    assert from_thread.text == "from a thread"
    assert reply.reply_to_message_id == 77 and reply.message_id == 78


async def test_teardown_is_quick(fake: FakeTelegram) -> None:
    async with polling(fake, ECHO):
        await fake.wait_for_calls("getUpdates", 1, timeout=5)  # a 1 s long poll is pending now
        started = time.monotonic()
    assert time.monotonic() - started < 1.0


async def test_photo_largest_size_is_downloaded(fake: FakeTelegram) -> None:
    sizes = {(90, 90): b"s" * 10, (320, 320): b"m" * 100, (800, 600): b"L" * 1000}
    async with polling(fake, PHOTO):
        message = fake.send_photo(7, 7, sizes, caption="what colour?")
        [reply] = await fake.wait_for_reply(7, timeout=5)
    assert reply.text == "1000 bytes"
    assert [p["width"] for p in message["photo"]] == [90, 320, 800]
    assert fake.downloads == [message["photo"][-1]["file_id"]]
    assert [(a.chat_id, a.action) for a in fake.chat_actions] == [(7, "typing")]
    [call] = fake.calls_of("sendChatAction")
    assert call.params == {"chat_id": 7, "action": "typing"}


async def test_document_is_fetched_with_get_file(fake: FakeTelegram) -> None:
    async with polling(fake, DOCUMENT):
        message = fake.send_document(5, 5, b"%PDF-1" * 10, file_name="a.pdf", mime_type="application/pdf")
        [reply] = await fake.wait_for_reply(5, timeout=5)
    assert reply.text == "a.pdf: 60 bytes"
    assert fake.downloads == [message["document"]["file_id"]]
    assert len(fake.calls_of("getFile")) == 1


async def test_huge_document_is_never_downloaded(fake: FakeTelegram) -> None:
    async with polling(fake, DOCUMENT) as app:
        message = fake.send_document(
            5, 5, b"x", file_name="big.png", mime_type="image/png", file_size=30 * 1024 * 1024
        )
        [reply] = await fake.wait_for_reply(5, timeout=5)
        assert reply.text == "too big"
        file_id = message["document"]["file_id"]
        assert message["document"]["file_size"] == 30 * 1024 * 1024
        assert fake.downloads == [] and fake.calls_of("getFile") == []
        with pytest.raises(BadRequest, match="too big"):  # as the real API says above 20 MB
            await app.bot.get_file(file_id)
    assert file_id not in fake.downloads


async def test_group_command_reaches_command_handler(fake: FakeTelegram) -> None:
    seen: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        seen.append(list(context.args or []))
        await update.message.reply_text("started")  # no do_quote: groups quote by default

    async with polling(fake, CommandHandler("start", start), ECHO):
        message = fake.send_text(-1001, 7, "/start@vqa_test_bot now", chat_type="supergroup")
        [reply] = await fake.wait_for_reply(-1001, timeout=5)
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 19}]
    assert message["chat"] == {"id": -1001, "type": "supergroup", "title": "Group 1001"}
    assert seen == [["now"]]
    assert reply.text == "started" and reply.reply_to_message_id == message["message_id"]


async def test_media_group_arrives_as_separate_updates(fake: FakeTelegram) -> None:
    received: list[tuple[str | None, str | None, int]] = []
    done = asyncio.Event()

    async def collect(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        received.append((update.message.media_group_id, update.message.caption, update.message.message_id))
        if len(received) == 2:
            done.set()

    async with polling(fake, MessageHandler(filters.PHOTO, collect)):
        messages = fake.send_media_group(9, 9, [b"one", b"two"], caption="which is red?")
        await asyncio.wait_for(done.wait(), 5)
    group_id = messages[0]["media_group_id"]
    assert sorted(received, key=lambda r: r[2]) == [
        (group_id, "which is red?", messages[0]["message_id"]),
        (group_id, None, messages[1]["message_id"]),
    ]
    assert fake.sent == [] and fake.downloads == []


async def test_many_concurrent_chats_answered_exactly_once(fake: FakeTelegram) -> None:
    chats = range(1000, 1050)
    # 32, not True (256): httpcore's connection pool is quadratic in concurrent requests, and 200
    # replies at once take ~3x longer on a small machine (the fake itself answers ~2000 calls/s)
    async with polling(fake, ECHO, concurrency=32):
        injected = {chat: [fake.send_text(chat, chat, f"{chat}-{i}") for i in range(4)] for chat in chats}
        for chat in chats:
            await fake.wait_for_reply(chat, count=4, timeout=5)
        await fake.wait_until_confirmed(timeout=5)
    # the Application has stopped: nothing more can come
    assert len(fake.sent) == 200
    for chat in chats:
        replies = fake.replies(chat)
        assert sorted(r.reply_to_message_id for r in replies) == [m["message_id"] for m in injected[chat]]
        assert sorted(r.text for r in replies) == [f"{chat}-{i}" for i in range(4)]


async def test_wrong_token_fails_initialize(fake: FakeTelegram) -> None:
    app = build_app(fake, token="999:WRONG")
    with pytest.raises(InvalidToken):
        await asyncio.wait_for(app.initialize(), 5)
    assert fake.calls[-1].method == "getMe" and fake.calls[-1].status == 401


# -- through the Bot alone ------------------------------------------------------------------------


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator:
    app = build_app(fake)
    async with asyncio.timeout(5):
        await app.initialize()
    yield app.bot
    async with asyncio.timeout(5):
        await app.shutdown()


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.retry_after
async def test_injected_errors(fake: FakeTelegram, bot) -> None:
    fake.send_text(3, 3, "hi")
    fake.fail_next("sendMessage", error_code=429, retry_after=2)
    with pytest.raises(RetryAfter):
        await bot.send_message(3, "one")
    fake.fail_next("sendMessage", error_code=500)
    with pytest.raises(NetworkError):
        await bot.send_message(3, "two")
    assert (await bot.send_message(3, "three")).text == "three"
    assert [s.text for s in fake.sent] == ["three"]
    assert [c.status for c in fake.calls_of("sendmessage")] == [429, 500, 200]


async def test_realistic_bad_requests(fake: FakeTelegram, bot) -> None:
    fake.send_text(3, 3, "hi")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(4, "nobody wrote from here")
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(3, "x", reply_to_message_id=99)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(3, " ")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(3, "x" * 4097)
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(3, "1 < 2 <b>yes</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="reserved"):
        await bot.send_message(3, "*red*.", parse_mode=ParseMode.MARKDOWN_V2)
    ok = await bot.send_message(3, "1 &lt; 2 <b>yes</b>", parse_mode=ParseMode.HTML)
    assert ok.text == "1 &lt; 2 <b>yes</b>" and fake.sent[-1].parse_mode == "HTML"
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(3, "dancing")
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("nope")
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("fooBar")


async def test_edit_and_commands(fake: FakeTelegram, bot) -> None:
    fake.send_text(3, 3, "hi")
    sent = await bot.send_message(3, "thinking…")
    edited = await bot.edit_message_text("red", chat_id=3, message_id=sent.message_id)
    assert edited.text == "red" and fake.edits[-1].text == "red"
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text("red", chat_id=3, message_id=sent.message_id)
    assert await bot.set_my_commands([("ask", "Ask about the last photo"), ("help", "How to use")])
    assert [c.command for c in await bot.get_my_commands()] == ["ask", "help"]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Bad Command", "x")])


async def test_user_can_reply_to_the_bot(fake: FakeTelegram, bot) -> None:
    question = fake.send_photo(8, 8, b"img", caption="what shape?")
    answer = await bot.send_message(8, "circle", reply_to_message_id=question["message_id"])
    follow_up = fake.send_text(8, 8, "and colour?", reply_to=answer.message_id)
    assert follow_up["reply_to_message"]["from"]["is_bot"] is True
    assert follow_up["message_id"] == answer.message_id + 1  # ids are shared per chat
    assert "reply_to_message" not in follow_up["reply_to_message"]  # one level, as Telegram does


# -- raw HTTP: long polling semantics ---------------------------------------------------------------


async def test_long_poll_offset_wake_and_conflict(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{fake.token}/getUpdates"
    async with aiohttp.ClientSession() as http:

        async def poll(**params: int) -> dict:
            async with http.post(url, json=params) as response:
                return await response.json()

        assert (await poll(timeout=0))["result"] == []
        fake.send_text(1, 1, "a")
        b = fake.send_text(1, 1, "b")
        got = (await poll(timeout=0, limit=1))["result"]
        assert [u["message"]["text"] for u in got] == ["a"]
        first_id = got[0]["update_id"]
        got = (await poll(timeout=0, offset=first_id + 1))["result"]  # confirms "a"
        assert [u["message"]["message_id"] for u in got] == [b["message_id"]]
        assert fake.pending_updates == 1

        waiting = asyncio.create_task(poll(timeout=5, offset=first_id + 2))  # confirms "b", then waits
        await fake.wait_for_calls("getUpdates", 4, timeout=5)
        started = time.monotonic()
        fake.send_text(1, 1, "c")
        got = (await asyncio.wait_for(waiting, 2))["result"]
        assert [u["message"]["text"] for u in got] == ["c"] and time.monotonic() - started < 1

        older = asyncio.create_task(poll(timeout=5, offset=got[0]["update_id"] + 1))
        await fake.wait_for_calls("getUpdates", 5, timeout=5)
        assert (await poll(timeout=0))["result"] == []  # a second poller ends the first with 409
        assert (await asyncio.wait_for(older, 2))["error_code"] == 409

        pending = asyncio.create_task(poll(timeout=30))
        await fake.wait_for_calls("getUpdates", 7, timeout=5)
        started = time.monotonic()
        await fake.stop()
        assert (await asyncio.wait_for(pending, 2))["result"] == []
        assert time.monotonic() - started < 1.5


async def test_wrong_token_and_downloads_over_http(fake: FakeTelegram) -> None:
    file_id = fake.add_file(b"abc")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}0:BAD/getMe") as response:
            assert response.status == 401
            assert await response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with http.post(f"{fake.base_url}{fake.token}/nope") as response:
            assert (await response.json())["description"] == "Not Found: method not found"
        async with http.post(f"{fake.base_url}{fake.token}/getFile", data={"file_id": file_id}) as response:
            path = (await response.json())["result"]["file_path"]
        async with http.get(f"{fake.base_file_url}0:BAD/{path}") as response:
            assert response.status == 401
        assert fake.downloads == []
        async with http.get(f"{fake.base_file_url}{fake.token}/{path}") as response:
            assert await response.read() == b"abc"
    assert fake.downloads == [file_id]


# -- the pieces -------------------------------------------------------------------------------------


def test_unparseable_update_is_refused() -> None:
    fake = FakeTelegram()
    with pytest.raises(ValueError, match="cannot parse"):
        fake.inject_update({"message": {"message_id": 1, "chat": {"id": 1}}})
    assert fake.pending_updates == 0


def test_realistic_ids_are_enforced() -> None:
    fake = FakeTelegram()
    with pytest.raises(ValueError, match="private chat"):
        fake.send_text(1, 2, "hi")
    with pytest.raises(ValueError, match="negative"):
        fake.send_text(5, 1, "hi", chat_type="group")


def test_entities_use_utf16_offsets() -> None:
    assert detect_entities("/ask what?") == [{"type": "bot_command", "offset": 0, "length": 4}]
    assert detect_entities("🙂 @vqa_test_bot hi") == [{"type": "mention", "offset": 3, "length": 13}]
    assert detect_entities("mail a@example.com, not /start") == []


@pytest.mark.parametrize(
    ("text", "mode", "ok"),
    [
        ("<b>red</b> &amp; <i>blue</i>", "HTML", True),
        ("<b>red", "HTML", False),
        ("<div>x</div>", "HTML", False),
        ("a < b", "HTML", False),
        ("*red* \\.", "MarkdownV2", True),
        ("[link](http://x.y/a.b)", "MarkdownV2", True),
        ("`a.b`", "MarkdownV2", True),
        ("red!", "MarkdownV2", False),
        ("red!", None, True),
    ],
)
def test_markup_check(text: str, mode: str | None, ok: bool) -> None:
    assert (check_markup(text, mode)[0] is None) is ok
