"""The loopback Telegram fake works with the real, unmodified python-telegram-bot.

The adapter's tests, ``python main.py`` as a child process and the benchmarks trust this fake, so
each behaviour they rely on (and each fault a test may inject) is shown here once, with PTB
itself doing the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import FakeTelegram, detect_entities
from tests.loopback import DOWNLOAD

MAX_DOWNLOAD = 20 * 1024 * 1024


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with asyncio.timeout(5), FakeTelegram() as server:
        yield server


def build_app(fake: FakeTelegram, token: str | None = None) -> Application:
    return (
        ApplicationBuilder()
        .token(token or fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .concurrent_updates(True)
        .build()
    )


@contextlib.asynccontextmanager
async def polling(fake: FakeTelegram, *handlers: BaseHandler) -> AsyncIterator[Application]:
    """A started Application polling the fake; teardown is bounded so a bug cannot hang the suite."""
    app = build_app(fake)
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


async def file_size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Download a photo's largest size, or a document unless it declares more than 20 MB."""
    message = update.message
    assert message is not None
    await context.bot.send_chat_action(message.chat_id, ChatAction.TYPING)
    attachment = message.photo[-1] if message.photo else message.document
    assert attachment is not None
    if (attachment.file_size or 0) > MAX_DOWNLOAD:
        await message.reply_text("too big")
        return
    data = await (await attachment.get_file()).download_as_bytearray()
    await message.reply_text(f"{len(data)} bytes")


ECHO = MessageHandler(filters.TEXT & ~filters.COMMAND, echo)
FILES = MessageHandler(filters.PHOTO | filters.Document.ALL, file_size)


# -- through a polling Application -----------------------------------------------------------------


async def test_start_up_and_an_echo_that_quotes(fake: FakeTelegram) -> None:
    async with polling(fake, ECHO) as app:
        assert await app.bot.set_my_commands([("ask", "Ask about the last photo")])
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await app.bot.set_my_commands([("Bad Command", "x")])
        first = fake.send_text(42, 42, "hello")
        second = fake.send_text(42, 42, "again")
        replies = await fake.wait_for_reply(42, count=2)
    assert [c.route for c in fake.calls[:2]] == ["getMe", "deleteWebhook"] and fake.calls_of("getUpdates")
    assert [c.status for c in fake.calls_of("setMyCommands")] == [200, 400]
    assert fake.pending_updates == 0
    by_reply = {r.reply_to_message_id: r for r in replies}
    assert (by_reply[first["message_id"]].text, by_reply[second["message_id"]].text) == ("hello", "again")
    returned = by_reply[first["message_id"]].message
    assert returned["from"]["id"] == fake.bot_id and returned["reply_to_message"]["text"] == "hello"
    # PTB 22 quotes with reply_parameters JSON, never reply_to_message_id
    params = by_reply[first["message_id"]].params
    assert params["reply_parameters"] == {"message_id": first["message_id"]} and params["chat_id"] == 42


async def test_the_largest_photo_size_is_downloaded_and_a_huge_file_never(fake: FakeTelegram) -> None:
    sizes = {(90, 90): b"s" * 10, (320, 320): b"m" * 100, (800, 600): b"L" * 1000}
    async with polling(fake, FILES) as app:
        photo = fake.send_photo(7, 7, sizes, caption="what colour?")
        [photo_reply] = await fake.wait_for_reply(7)
        huge = fake.send_document(7, 7, b"x", file_name="big.png", mime_type="image/png", file_size=30 << 20)
        [huge_reply] = await fake.wait_for_reply(7)
        with pytest.raises(BadRequest, match="File is too big"):  # as the real API says above 20 MB
            await app.bot.get_file(huge["document"]["file_id"])
    assert (photo_reply.text, huge_reply.text) == ("1000 bytes", "too big")
    assert [p["width"] for p in photo["photo"]] == [90, 320, 800]
    assert fake.downloads == [photo["photo"][-1]["file_id"]]
    assert [c.params for c in fake.calls_of("sendChatAction")] == [{"chat_id": 7, "action": "typing"}] * 2


async def test_a_group_command_with_the_bots_name(fake: FakeTelegram) -> None:
    seen: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        seen.append(list(context.args or []))
        await update.message.reply_text("started")  # groups quote by default

    async with polling(fake, CommandHandler("start", start)):
        message = fake.send_text(-1001, 7, "/start@vqa_test_bot now", chat_type="supergroup")
        [reply] = await fake.wait_for_reply(-1001)
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 19}]
    assert message["chat"] == {"id": -1001, "type": "supergroup", "title": "Group 1001"}
    assert seen == [["now"]]
    assert reply.reply_to_message_id == message["message_id"]


async def test_an_album_is_one_update_per_photo(fake: FakeTelegram) -> None:
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


async def test_many_chats_at_once_are_answered_exactly_once(fake: FakeTelegram) -> None:
    chats = range(1000, 1020)
    async with polling(fake, ECHO):
        injected = {chat: [fake.send_text(chat, chat, f"{chat}-{i}") for i in range(3)] for chat in chats}
        for chat in chats:
            await fake.wait_for_reply(chat, count=3)
        await fake.wait_until_confirmed()
    assert len(fake.sent) == 60  # the Application has stopped: nothing more can come
    for chat in chats:
        replies = fake.replies(chat)
        assert sorted(r.reply_to_message_id or 0 for r in replies) == [
            m["message_id"] for m in injected[chat]
        ]


async def test_an_inline_keyboard_button_press(fake: FakeTelegram) -> None:
    async def offer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Chart", callback_data="chart")]])
        await update.message.reply_text("blue", reply_markup=keyboard)

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer("drawing…")
        await context.bot.send_message(query.message.chat.id, f"{query.data} for {query.from_user.id}")

    async with polling(fake, MessageHandler(filters.TEXT, offer), CallbackQueryHandler(pressed)) as app:
        fake.send_text(5, 5, "what colour?")
        [offered] = await fake.wait_for_reply(5)
        query = fake.click(5, 5, offered.message_id, "chart")
        [answer] = await fake.wait_for_reply(5)
        with pytest.raises(BadRequest, match="Query is too old"):  # a query is answered once
            await app.bot.answer_callback_query(query["id"])
    assert offered.message["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "chart"
    assert answer.text == "chart for 5"
    assert [c.params for c in fake.calls_of("answerCallbackQuery") if c.status == 200] == [
        {"callback_query_id": query["id"], "text": "drawing…"}
    ]
    with pytest.raises(ValueError, match="no message"):
        fake.click(5, 5, offered.message_id, "nothing")


async def test_a_wrong_token_fails_initialize(fake: FakeTelegram) -> None:
    app = build_app(fake, token="999:WRONG")
    with pytest.raises(InvalidToken):
        await asyncio.wait_for(app.initialize(), 5)
    assert [(c.route, c.status) for c in fake.calls] == [("getMe", 401)]
    with pytest.raises(TimeoutError, match=r"a reply: not within .* the last: getMe 401"):
        await fake.wait_for(lambda calls: len(calls) > 1, timeout=0.01, what="a reply")


# -- through the Bot alone: uploads and faults ------------------------------------------------------


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    app = build_app(fake)
    async with asyncio.timeout(5):
        await app.initialize()
    yield app.bot
    async with asyncio.timeout(5):
        await app.shutdown()


async def test_a_chart_goes_up_as_multipart(fake: FakeTelegram, bot: Bot) -> None:
    question = fake.send_text(3, 3, "chart?")
    png = b"\x89PNG\r\n\x1a\n" + b"chart" * 20
    sent = await bot.send_photo(3, png, caption="top answers", reply_to_message_id=question["message_id"])
    [stored] = fake.sent
    assert (stored.method, stored.photo, stored.text, stored.reply_to_message_id) == (
        "sendPhoto",
        png,
        "top answers",
        question["message_id"],
    )
    assert sent.photo and sent.caption == "top answers"


async def test_bad_requests_a_bot_could_make(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_text(3, 3, "hi")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(4, "nobody wrote from here")
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(3, " ")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(3, "x" * 4097)
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("nope")
    assert fake.sent == []


async def test_a_quoted_message_that_is_gone(fake: FakeTelegram, bot: Bot) -> None:
    question = fake.send_text(3, 3, "what shape?")
    fake.delete_message(3, question["message_id"])
    quote = ReplyParameters(question["message_id"])
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(3, "circle", reply_parameters=quote)
    quote_if_there = ReplyParameters(question["message_id"], allow_sending_without_reply=True)
    sent = await bot.send_message(3, "circle", reply_parameters=quote_if_there)
    assert sent.reply_to_message is None and fake.sent[-1].reply_to_message_id == question["message_id"]
    assert [c.status for c in fake.calls_of("sendMessage")] == [400, 200]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.retry_after
async def test_rate_limited_then_a_server_error(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_text(3, 3, "hi")
    fake.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter) as limited:
        await bot.send_message(3, "one")
    assert limited.value.retry_after == 3
    fake.fail_next("sendMessage", status=500)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(3, "two")
    assert (await bot.send_message(3, "three")).text == "three"
    assert [s.text for s in fake.sent] == ["three"]
    assert [c.status for c in fake.calls_of("sendmessage")] == [429, 500, 200]


async def test_get_updates_fails_until_cleared(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("getUpdates", status=502, times=None)
    for _ in range(3):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.get_updates(timeout=0)
    await fake.wait_for_calls("getUpdates", 3, status=502)
    fake.clear_failures()
    message = fake.send_text(3, 3, "back?")
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None and update.message.message_id == message["message_id"]


async def test_a_failed_then_a_held_download(fake: FakeTelegram, bot: Bot) -> None:
    file_id = fake.add_file(b"abc")
    file = await bot.get_file(file_id)
    fake.fail_next(DOWNLOAD, status=500)
    with pytest.raises(NetworkError):
        await file.download_as_bytearray()
    fake.hold_downloads()
    download = asyncio.ensure_future(file.download_as_bytearray())
    assert await fake.wait_for_held_downloads(1) == [file_id]
    assert not download.done() and fake.downloads == []
    fake.release_downloads()
    assert await asyncio.wait_for(download, 5) == b"abc"
    assert [(c.params, c.status) for c in fake.calls_of(DOWNLOAD)] == [(file_id, 500), (file_id, 200)]


# -- raw HTTP: long polling and the token -----------------------------------------------------------


async def test_long_poll_offsets_and_wakes(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{fake.token}/getUpdates"
    async with aiohttp.ClientSession() as http:

        async def poll(**params: int) -> list[dict]:
            async with http.post(url, json=params) as response:
                return (await response.json())["result"]

        assert await poll(timeout=0) == []
        fake.send_text(1, 1, "a")
        b = fake.send_text(1, 1, "b")
        [first] = await poll(timeout=0, limit=1)
        assert first["message"]["text"] == "a"
        [second] = await poll(timeout=0, offset=first["update_id"] + 1)  # confirms "a"
        assert second["message"]["message_id"] == b["message_id"] and fake.pending_updates == 1
        # a long poll returns as soon as an update comes (the 5 s safety net is far below 30 s)
        waiting = asyncio.ensure_future(poll(timeout=30, offset=second["update_id"] + 1))
        await fake.wait_for_calls("getUpdates", 4)
        fake.send_text(1, 1, "c")
        [third] = await asyncio.wait_for(waiting, 5)
        assert third["message"]["text"] == "c"
        # and so does one pending when the fake stops
        pending = asyncio.ensure_future(poll(timeout=30, offset=third["update_id"] + 1))
        await fake.wait_for_calls("getUpdates", 5)
        await fake.stop()
        assert await asyncio.wait_for(pending, 5) == []


async def test_a_wrong_token_over_http(fake: FakeTelegram) -> None:
    file_id = fake.add_file(b"abc")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}0:BAD/getMe") as response:
            assert response.status == 401
            assert await response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with http.post(f"{fake.base_url}{fake.token}/editMessageText") as response:
            assert (await response.json())["description"] == "Not Found: method not found"
        async with http.post(f"{fake.base_url}{fake.token}/getFile", data={"file_id": file_id}) as response:
            path = (await response.json())["result"]["file_path"]
        async with http.get(f"{fake.base_file_url}0:BAD/{path}") as response:
            assert response.status == 401
    assert fake.downloads == []


# -- the pieces -------------------------------------------------------------------------------------


def test_an_unparseable_update_is_refused() -> None:
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


async def test_webhook_set_delivers_with_the_secret_and_getupdates_conflicts(fake: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []
    statuses = iter([500, 200])

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return aiohttp.web.Response(status=next(statuses))

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            assert await bot.set_webhook(url, secret_token="s3cret_-token")
            fake.send_text(42, 42, "first")  # the hook answers 500: it stays pending
            await fake.wait_for(lambda calls: [c for c in calls if c.route == "webhook"])
            fake.send_text(42, 42, "second")
            await fake.wait_for(lambda calls: len([c for c in calls if c.route == "webhook"]) == 2)
            info = await bot.get_webhook_info()
            with pytest.raises(Conflict, match="webhook is active"):
                await bot.get_updates()
            assert await bot.delete_webhook()
            pending = await bot.get_updates()  # after deleteWebhook, the undelivered one
    finally:
        await runner.cleanup()
    assert [(secret, update["message"]["text"]) for secret, update in received] == [  # type: ignore[index]
        ("s3cret_-token", "first"),
        ("s3cret_-token", "second"),
    ]
    assert info.url == url and info.pending_update_count == 1
    assert info.last_error_message == "Wrong response from the webhook: 500"
    assert [u.message.text for u in pending if u.message] == ["first"]
