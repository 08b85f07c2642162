"""The Telegram adapter (python-telegram-bot): updates in, the core's replies out.

It translates a Telegram message into a ``ChatEvent`` (who, where, whether the bot was
addressed, the text without the bot's @mention, the photo or image file, the replied-to photo)
and delivers the ``Reply`` the core returns. Nothing about the conversation is decided here.

Updates come by long polling (the default), or by webhook (``TELEGRAM_WEBHOOK_URL``): then the
HTTP server's route (``bots.web.telegram_webhook``) hands each update to :meth:`TelegramAdapter.receive`,
which puts it on the application's ``update_queue`` — python-telegram-bot's own webhook path,
without its webhook server. Several replicas may receive the same update (Telegram retries, a
load balancer); ``Once`` lets exactly one of them handle it.

Delivery: ``AIORateLimiter`` keeps the bot under Telegram's flood limits and retries a 429 after
its ``retry_after``; dropped connections, timeouts and 5xx answers are retried with backoff; a
reply whose question was deleted meanwhile is sent without the quote; the apology after an
unexpected error never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Conflict, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots import replies
from bots.core import ChatCore
from bots.delivery import with_retries
from bots.events import Button, ChatEvent, Command, ImageRef, Platform, Press, Reply
from bots.options import DEFAULT_SHUTDOWN_TIMEOUT_S, DEFAULT_TELEGRAM_FLOOD_LIMIT
from bots.state.once import MemoryOnce, Once
from bots.telegram_http import AiohttpRequest
from bots.telegram_reading import addressed, image_of
from bots.typing_indicator import typing_while_slow

log = logging.getLogger(__name__)

T = TypeVar("T")
PLATFORM: Platform = "telegram"
MAX_CHARS = 4096
MAX_CAPTION = 1024
#: an album arrives as one update per photo; wait this long after the last one before answering
ALBUM_WAIT_S = 0.8
#: how often a 429 is retried (after Telegram's ``retry_after``) before giving up
FLOOD_RETRIES = 3
COMMANDS = [BotCommand(name, text) for name, text in replies.COMMANDS["telegram"].items()]
_COMMANDS = {
    "start": Command.START,
    "help": Command.HELP,
    "about": Command.ABOUT,
    "new": Command.NEW,
    "health": Command.HEALTH,
    "stats": Command.STATS,
}
#: callback data of the buttons under an answer: "chart:<request id>", "good:…", "bad:…"
_BUTTON_DATA = re.compile(r"^(chart|good|bad):([0-9a-f]{1,32})$")
#: the updates the handlers below use: Telegram sends no others
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


@dataclass(frozen=True)
class Webhook:
    """Where Telegram posts updates, and the secret token it sends with each."""

    url: str
    secret: str = field(repr=False)


class NotReceiving(Exception):
    """The adapter is not started, or stopping: the update should come again later (503)."""


class BadUpdate(ValueError):
    """A webhook body that is not an update python-telegram-bot can read."""


@dataclass
class _Album:
    messages: list[Message] = field(default_factory=list)
    flush: asyncio.TimerHandle | None = None


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the network or Telegram failed, not our request (a 400 is ours)."""
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


def _keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The buttons under an answer, as an inline keyboard."""
    if not reply.buttons or reply.request_id is None:
        return None
    row = [
        InlineKeyboardButton(replies.BUTTON_LABELS[b.value], callback_data=f"{b.value}:{reply.request_id}")
        for b in reply.buttons
    ]
    return InlineKeyboardMarkup([row])


def _reply_target_gone(exc: BadRequest) -> bool:
    return "repl" in exc.message.lower() and "not found" in exc.message.lower()


class TelegramAdapter:
    """Owns one python-telegram-bot ``Application``; ``start()``/``stop()`` from ``service.app``."""

    def __init__(
        self,
        core: ChatCore,
        *,
        token: str,
        base_url: str | None = None,
        base_file_url: str | None = None,
        min_image_side: int = 64,
        poll_timeout: int = 30,
        concurrent_updates: int = 64,
        connection_pool_size: int = 32,
        drain_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
        flood_limit: float = DEFAULT_TELEGRAM_FLOOD_LIMIT,
        webhook: Webhook | None = None,
        once: Once | None = None,
    ) -> None:
        self.core = core
        self.drain_s = drain_s
        self.min_image_side = min_image_side
        self.poll_timeout = poll_timeout
        self.webhook = webhook  # None: long polling
        self.once = once if once is not None else MemoryOnce()  # each update handled once
        self.receiving = False  # webhook updates are taken (started, not stopping)
        self._receipts = 0  # webhook updates being received (claimed, not yet queued)
        self._received = asyncio.Event()  # none is
        self._received.set()
        self._conflict_said = False
        # updates are handled concurrently (bounded), over aiohttp (see bots/telegram_http.py)
        self._requests = (AiohttpRequest(connection_pool_size=connection_pool_size), AiohttpRequest())
        builder = (
            ApplicationBuilder()
            .token(token)
            .concurrent_updates(concurrent_updates)
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .rate_limiter(AIORateLimiter(overall_max_rate=flood_limit, max_retries=FLOOD_RETRIES))
        )
        if base_url:
            builder = builder.base_url(base_url)
        if base_file_url:
            builder = builder.base_file_url(base_file_url)
        self.app: Application = builder.build()
        self._albums: dict[str, _Album] = {}
        self._album_tasks: set[asyncio.Task[None]] = set()
        self._username_re: re.Pattern[str] | None = None
        self.connected = False
        self._register()

    def _register(self) -> None:
        app = self.app
        new = filters.UpdateType.MESSAGE  # an edited message is not a new question
        app.add_handler(CommandHandler(list(_COMMANDS), self.on_command, filters=new))
        app.add_handler(CommandHandler("ask", self.on_message, filters=new))
        app.add_handler(MessageHandler(new & (filters.PHOTO | filters.Document.ALL), self.on_message))
        app.add_handler(MessageHandler(new & filters.TEXT & ~filters.COMMAND, self.on_message))
        app.add_handler(CallbackQueryHandler(self.on_button, pattern=_BUTTON_DATA))
        app.add_error_handler(self.on_error)

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (``getMe``), publish the command list, then start long polling, or register the
        webhook (``setWebhook`` with its secret) and take the updates its route receives.

        Cancelling it (a SIGTERM during a login that hangs) leaves nothing open.
        """
        log.info("telegram: logging in")
        try:
            await self.app.initialize()
            username = self.app.bot.username or ""
            self._username_re = re.compile(rf"@{re.escape(username)}\b", re.IGNORECASE)
            with contextlib.suppress(TelegramError):  # a cosmetic nicety: never fatal
                await self.app.bot.set_my_commands(COMMANDS)
            await self.app.start()
            if self.webhook is not None:
                self.receiving = True  # (before setWebhook: Telegram may post at once)
                await self.app.bot.set_webhook(
                    self.webhook.url,
                    secret_token=self.webhook.secret,
                    allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=False,
                )
            else:
                assert self.app.updater is not None
                await self.app.updater.start_polling(
                    timeout=self.poll_timeout,
                    poll_interval=0,
                    drop_pending_updates=False,
                    error_callback=self._polling_failed,
                )
        except BaseException:
            self.receiving = False
            await self._close()
            raise
        self.connected = True
        if self.webhook is not None:
            log.info("telegram: receiving updates by webhook as @%s", username)
        else:
            log.info("telegram: polling as @%s", username)

    def health(self) -> list[str]:
        return []

    def _polling_failed(self, exc: TelegramError) -> None:
        """python-telegram-bot retries a failed poll itself; say what went wrong, and once (not
        every retry) when another process polls the same bot."""
        if isinstance(exc, Conflict):
            if not self._conflict_said:
                self._conflict_said = True
                log.error(
                    "telegram: another process is polling this bot (%s); several replicas must "
                    "receive updates by webhook (TELEGRAM_WEBHOOK_URL)",
                    exc.message,
                )
            return
        log.warning("telegram: polling failed (%s); retrying", exc)

    async def receive(self, data: dict[str, object]) -> bool:
        """One update posted to the webhook route: queued for the handlers (True), or left alone
        because this or another replica received it already (False).

        Raises ``NotReceiving`` before start and from the moment ``stop()`` begins (Telegram then
        sends it again, maybe to another replica), ``BadUpdate`` for a body that is no update.
        """
        if not self.receiving:
            raise NotReceiving
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):  # (a bool is an int)
            raise BadUpdate("no update_id")
        try:
            update = Update.de_json(data, self.app.bot)
        except Exception as exc:
            raise BadUpdate(f"not a Telegram update ({type(exc).__name__})") from exc
        self._receipts += 1
        self._received.clear()
        try:  # (stop() waits for this: a claimed update must reach the queue before it closes)
            if not await self.once.first(f"telegram-update:{self.app.bot.id}:{update.update_id}"):
                log.info(
                    "telegram: update %d was received already (a retry or another replica); skipped",
                    update.update_id,
                )
                return False
            await self.app.update_queue.put(update)
            return True
        finally:
            self._receipts -= 1
            if not self._receipts:
                self._received.set()

    async def stop(self) -> bool:
        """Stop fetching updates, answer what is already in progress (for up to ``drain_s``),
        then close; True when all of it was answered. Updates not fetched yet stay with Telegram
        for the next start (by webhook: Telegram sends them again, to this or another replica).
        The webhook stays registered: other replicas may still be serving it."""
        self.connected = False
        self.receiving = False
        drained = True
        try:
            async with asyncio.timeout(self.drain_s):
                if self.app.updater is not None and self.app.updater.running:
                    await self.app.updater.stop()
                await self._received.wait()  # webhook updates claimed a moment ago are queued
                for key in list(self._albums):
                    self._flush_album(key)
                if self._album_tasks:
                    await asyncio.gather(*self._album_tasks, return_exceptions=True)
                if self.app.running:
                    await self.app.stop()  # waits for the handlers still running
        except TimeoutError:
            log.warning("telegram: questions still unanswered after %.0f s; stopping anyway", self.drain_s)
            drained = False
        await self._close()
        log.info("telegram: stopped")
        return drained

    async def _close(self) -> None:
        """Stop the application (it waits for running handlers) and close every HTTP session.

        PTB's ``shutdown()`` does nothing for an application whose ``initialize()`` failed, so the
        sessions are closed here too: no "Unclosed client session" on any path.
        """
        with contextlib.suppress(Exception):
            if self.app.running:
                await self.app.stop()
        with contextlib.suppress(Exception):
            await self.app.shutdown()
        for request in self._requests:
            await request.shutdown()

    # -- handlers ---------------------------------------------------------------------------

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start, /help, /about, /new, /health, /stats."""
        message = update.effective_message
        if message is None or message.from_user is None or not message.text:
            return
        name = message.text[1:].split(maxsplit=1)[0].split("@")[0].lower()
        event = self._event(message, command=_COMMANDS.get(name))
        await self._deliver(message, await self.core.handle(event))

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo, image file, sticker or text: a question, an image, or both. Albums are gathered."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        if message.media_group_id:
            self._add_to_album(message)
            return
        await self._turn(message, self._event(message))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button under an answer: the chart (sent as a photo) or a 👍/👎 (a toast)."""
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        match = _BUTTON_DATA.match(query.data)
        assert match is not None  # the handler's pattern
        message = query.message
        event = ChatEvent(
            platform=PLATFORM,
            chat_id=str(message.chat_id),
            chat_type=message.chat.type,
            private=message.chat.type == ChatType.PRIVATE,
            user_id=str(query.from_user.id),
            addressed=True,
            fetch=self._fetch,
            press=Press(Button(match[1]), match[2]),
        )
        reply = await self.core.handle(event)
        if reply is None:
            return
        if reply.image is None:  # a toast for the one who pressed; nothing in the chat
            await self._retrying(lambda: query.answer(replies.clip(reply.text, 200)))
            return
        await self._retrying(query.answer)
        await self._deliver(message, reply)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One place for whatever a handler did not expect: log it, then apologise (never raises)."""
        log.error("telegram: error while handling an update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            message = update.effective_message
            try:
                await self._send(lambda quote: message.reply_text(replies.ERROR, do_quote=quote))
            except Exception as exc:
                log.error("telegram: could not send the apology either: %s", exc)

    # -- one turn ---------------------------------------------------------------------------

    async def _turn(self, message: Message, event: ChatEvent) -> None:
        async with typing_while_slow(lambda: self._typing(message)):
            reply = await self.core.handle(event)
        await self._deliver(message, reply)

    def _event(
        self, message: Message, *, command: Command | None = None, images: tuple[ImageRef, ...] | None = None
    ) -> ChatEvent:
        assert message.from_user is not None
        private = message.chat.type == ChatType.PRIVATE
        if message.caption is not None:
            text, entities = message.caption, message.parse_caption_entities()
        else:
            text, entities = message.text or "", message.parse_entities()
        replied = message.reply_to_message
        if images is None:
            image = self._image_of(message)
            images = (image,) if image is not None else ()
        bot = self.app.bot
        to_bot = private or addressed(message, entities, bot_id=bot.id, username=bot.username or "")
        return ChatEvent(
            platform=PLATFORM,
            chat_id=str(message.chat_id),
            chat_type=message.chat.type,
            private=private,
            user_id=str(message.from_user.id),
            addressed=to_bot,
            fetch=self._fetch,
            text=self._username_re.sub(" ", text) if self._username_re else text,
            images=images,
            replied_image=self._image_of(replied) if replied is not None else None,
            command=command,
        )

    def _image_of(self, message: Message) -> ImageRef | None:
        return image_of(message, min_side=self.min_image_side)

    async def _fetch(self, image: ImageRef) -> bytes:
        async def download() -> bytes:
            file = await self.app.bot.get_file(image.source)
            return bytes(await file.download_as_bytearray())

        return await with_retries(download, transient=is_transient, what="telegram: downloading an image")

    async def _typing(self, message: Message) -> None:
        thread = message.message_thread_id if message.is_topic_message else None
        await self.app.bot.send_chat_action(message.chat_id, ChatAction.TYPING, message_thread_id=thread)

    # -- delivery ---------------------------------------------------------------------------

    async def _deliver(self, message: Message, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.image is not None:
            photo, caption = reply.image, replies.clip(reply.text, MAX_CAPTION)
            await self._send(
                lambda quote: message.reply_photo(
                    InputFile(photo, filename="chart.png"), caption=caption, do_quote=quote
                )
            )
            return
        text, markup = replies.clip(reply.text, MAX_CHARS), _keyboard(reply)
        await self._send(lambda quote: message.reply_text(text, do_quote=quote, reply_markup=markup))

    async def _send(self, send: Callable[[bool], Awaitable[Message]]) -> None:
        """Reply quoting the question; without the quote when the question is gone."""
        try:
            await self._retrying(lambda: send(True))
        except BadRequest as exc:
            if not _reply_target_gone(exc):
                raise
            log.info("telegram: the question was deleted before its answer; sending it without the quote")
            await self._retrying(lambda: send(False))

    @staticmethod
    async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, transient=is_transient, what="telegram: sending a reply")

    # -- albums -----------------------------------------------------------------------------

    def _add_to_album(self, message: Message) -> None:
        key = f"{message.chat_id}:{message.media_group_id}"
        album = self._albums.setdefault(key, _Album())
        album.messages.append(message)
        if album.flush is not None:
            album.flush.cancel()
        album.flush = asyncio.get_running_loop().call_later(ALBUM_WAIT_S, self._flush_album, key)

    def _flush_album(self, key: str) -> None:
        album = self._albums.pop(key, None)
        if album is None:
            return
        if album.flush is not None:
            album.flush.cancel()
        messages = sorted(album.messages, key=lambda m: m.message_id)
        captioned = next((m for m in messages if m.caption), messages[0])
        images = tuple(image for image in map(self._image_of, messages) if image is not None)
        event = self._event(captioned, images=images)
        # run by the Application like a handler: what it raises reaches on_error, which
        # apologises in reply to the captioned photo (the one the album's answer quotes)
        update = Update(update_id=0, message=captioned)
        task = self.app.create_task(self._turn(captioned, event), update=update)
        self._album_tasks.add(task)
        task.add_done_callback(self._album_tasks.discard)
