"""The Telegram adapter (python-telegram-bot, long polling): Telegram updates in, ``ChatCore`` replies out.

Thin on purpose: it finds the image and the question in an update, says "typing…", and sends
back the one reply the core produces. Handlers run concurrently, so a slow answer for one user
never holds up another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from telegram import BotCommand, Document, Message, MessageEntity, PhotoSize, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots import replies
from bots.core import ChatCore, extract_question
from bots.requests import ChatRequest, ImageRef, Platform, Reply
from bots.telegram_http import AiohttpRequest

log = logging.getLogger(__name__)

PLATFORM: Platform = "telegram"
#: an album arrives as one update per photo; wait this long after the last one before answering
ALBUM_WAIT_S = 0.8
#: Telegram shows "typing…" for about 5 s; repeat it while the answer takes longer
TYPING_EVERY_S = 4.5
COMMANDS = [
    BotCommand("ask", "ask about a photo (reply to it, or put /ask in its caption)"),
    BotCommand("help", "how to use this bot"),
    BotCommand("start", "what this bot does"),
]


@dataclass
class _Album:
    updates: list[Update] = field(default_factory=list)
    flush: asyncio.TimerHandle | None = None


def pick_photo(sizes: tuple[PhotoSize, ...], min_side: int) -> PhotoSize:
    """The smallest size that still covers the model's input (cheaper to fetch and decode)."""
    ordered = sorted(sizes, key=lambda s: s.width * s.height)
    for size in ordered:
        if min(size.width, size.height) >= min_side:
            return size
    return ordered[-1]


class TelegramAdapter:
    """Owns one python-telegram-bot ``Application``; ``start()``/``stop()`` from ``main.py``."""

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
    ) -> None:
        self.core = core
        self.min_image_side = min_image_side
        self.poll_timeout = poll_timeout
        # Updates are handled concurrently (bounded), over aiohttp (see bots/telegram_http.py)
        builder = (
            ApplicationBuilder()
            .token(token)
            .concurrent_updates(concurrent_updates)
            .request(AiohttpRequest(connection_pool_size=connection_pool_size))
            .get_updates_request(AiohttpRequest(connection_pool_size=1))
        )
        if base_url:
            builder = builder.base_url(base_url)
        if base_file_url:
            builder = builder.base_file_url(base_file_url)
        self.app: Application = builder.build()
        self._albums: dict[str, _Album] = {}
        self._album_tasks: set[asyncio.Task[None]] = set()
        self._register()

    def _register(self) -> None:
        app = self.app
        new = filters.UpdateType.MESSAGE  # an edited message is not a new question
        app.add_handler(CommandHandler(["start", "help"], self.on_help, filters=new))
        app.add_handler(CommandHandler("health", self.on_health, filters=new))
        app.add_handler(CommandHandler("stats", self.on_stats, filters=new))
        app.add_handler(CommandHandler("ask", self.on_text, filters=new))
        app.add_handler(MessageHandler(new & (filters.PHOTO | filters.Document.ALL), self.on_image))
        app.add_handler(MessageHandler(new & filters.TEXT & ~filters.COMMAND, self.on_text))
        app.add_error_handler(self.on_error)

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (``getMe``), publish the command list, start long polling."""
        try:
            await self.app.initialize()
            with contextlib.suppress(TelegramError):  # a cosmetic nicety: never fatal
                await self.app.bot.set_my_commands(COMMANDS)
            await self.app.start()
            assert self.app.updater is not None
            await self.app.updater.start_polling(
                timeout=self.poll_timeout, poll_interval=0, drop_pending_updates=False
            )
        except BaseException:
            with contextlib.suppress(Exception):  # close what was opened; the caller reports
                if self.app.running:
                    await self.app.stop()
                await self.app.shutdown()
            raise
        self.core.platforms.append(PLATFORM)
        log.info("telegram: polling as @%s", self.app.bot.username)

    async def stop(self) -> None:
        """Stop fetching updates, answer what is already in progress, then close."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        for album in list(self._albums.values()):
            if album.flush is not None:
                album.flush.cancel()
            self._spawn_album(album)
        self._albums.clear()
        if self._album_tasks:
            await asyncio.gather(*self._album_tasks, return_exceptions=True)
        if self.app.running:
            await self.app.stop()  # waits for handlers still running
        await self.app.shutdown()
        if PLATFORM in self.core.platforms:
            self.core.platforms.remove(PLATFORM)
        log.info("telegram: stopped")

    # -- handlers ---------------------------------------------------------------------------

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start and /help."""
        max_mb = round(self.core.max_image_bytes / 2**20)
        await self._send(update.effective_message, replies.HELP.format(max_mb=max_mb))

    async def on_health(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/health, admins only."""
        await self._admin_only(update, self.core.health_text)

    async def on_stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stats, admins only."""
        await self._admin_only(update, self.core.stats_text)

    async def _admin_only(self, update: Update, text: object) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        if not self.core.is_admin(PLATFORM, str(user.id)):
            log.info("telegram: refused an admin command from a non-admin")
            await self._send(message, replies.NOT_ADMIN)
            return
        await self._send(message, text())  # type: ignore[operator]

    async def on_image(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo or a file, with or without a caption; albums are gathered first."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        image = self._image_of(message)
        if image is None:
            return
        # remember before any await: a follow-up right behind this update must find it
        # (a file we would refuse anyway does not replace the user's last usable image)
        if self.core.check_image(image) is None:
            self.core.memory.remember(PLATFORM, str(message.chat_id), str(message.from_user.id), image)
        if message.media_group_id:
            self._add_to_album(update, message)
            return
        question = self._question(message, message.caption, message.caption_entities)
        if question is None:
            return  # a group image that does not address the bot: kept for follow-ups, no reply
        refusal = self.core.check_image(image)
        if not question:
            if refusal is not None:
                await self._send(message, self.core.refuse(self._request(message, "", image), refusal).text)
            else:
                await self._send(message, self._ask_what(message))
            return
        await self._answer(message, question, image)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A question: in reply to an image, about the user's last image, or ``/ask ...``."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        question = self._question(message, message.text, message.entities)
        if question is None:
            return  # group chatter not addressed to the bot
        replied = message.reply_to_message
        image = self._image_of(replied) if replied is not None else None
        if image is None:
            image = self.core.memory.recall(PLATFORM, str(message.chat_id), str(message.from_user.id))
        if image is None:
            await self._send(message, replies.NO_IMAGE)
            return
        if not question:
            await self._send(message, replies.NEED_QUESTION)
            return
        await self._answer(message, question, image)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One place for whatever a handler did not expect: log it, then apologise."""
        log.error("telegram: error while handling an update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            with contextlib.suppress(TelegramError):
                await update.effective_message.reply_text(
                    replies.ERROR, do_quote=True, allow_sending_without_reply=True
                )

    # -- the pieces -------------------------------------------------------------------------

    def _question(
        self, message: Message, text: str | None, entities: tuple[MessageEntity, ...] | None
    ) -> str | None:
        """The question, or None when a group message is not addressed to the bot."""
        username = self.app.bot.username
        if message.chat.type != ChatType.PRIVATE and not self._addressed(message, text, entities or ()):
            return None
        return extract_question(text, bot_username=username)

    def _addressed(self, message: Message, text: str | None, entities: tuple[MessageEntity, ...]) -> bool:
        """In groups: an @mention, ``/ask`` (ours), or a reply to one of the bot's messages."""
        bot = self.app.bot
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        units = (text or "").encode("utf-16-le")  # entity offsets count UTF-16 code units
        for entity in entities:
            value = units[2 * entity.offset : 2 * (entity.offset + entity.length)].decode("utf-16-le")
            if entity.type == MessageEntity.MENTION and value[1:].lower() == (bot.username or "").lower():
                return True
            if (
                entity.type == MessageEntity.TEXT_MENTION
                and entity.user is not None
                and entity.user.id == bot.id
            ):
                return True
            if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
                command, _, target = value[1:].partition("@")
                if command.lower() == "ask" and (
                    not target or target.lower() == (bot.username or "").lower()
                ):
                    return True
        return False

    def _image_of(self, message: Message) -> ImageRef | None:
        """The image a message carries (best photo size, or an image file), not yet downloaded."""
        if message.photo:
            size = pick_photo(message.photo, self.min_image_side)
            return ImageRef(
                fetch=lambda: self._download(size.file_id),
                size=size.file_size,
                mime_type="image/jpeg",
                width=size.width,
                height=size.height,
            )
        document: Document | None = message.document
        if document is not None:
            return ImageRef(
                fetch=lambda: self._download(document.file_id),
                size=document.file_size,
                mime_type=document.mime_type,  # None: undeclared, the engine reads the content
                file_name=document.file_name,
            )
        if message.sticker is not None and not (message.sticker.is_animated or message.sticker.is_video):
            sticker = message.sticker
            return ImageRef(
                fetch=lambda: self._download(sticker.file_id), size=sticker.file_size, mime_type="image/webp"
            )
        return None

    @staticmethod
    def _ask_what(message: Message) -> str:
        """In a group, a plain follow-up is not addressed to the bot: say how to ask."""
        return replies.ASK_WHAT if message.chat.type == ChatType.PRIVATE else replies.ASK_WHAT_GROUP

    async def _download(self, file_id: str) -> bytes:
        file = await self.app.bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    def _request(self, message: Message, question: str, image: ImageRef) -> ChatRequest:
        assert message.from_user is not None
        return ChatRequest(
            PLATFORM, str(message.from_user.id), str(message.chat_id), message.chat.type, question, image
        )

    async def _answer(self, message: Message, question: str, image: ImageRef) -> None:
        async with self._typing(message):
            reply = await self.core.ask(self._request(message, question, image))
        await self._send(message, reply.text)

    async def _send(self, message: Message | None, text: str) -> None:
        if message is not None:
            # quote the question, but still answer if it was deleted meanwhile
            await message.reply_text(
                replies.clip(text, 4096), do_quote=True, allow_sending_without_reply=True
            )

    @contextlib.asynccontextmanager
    async def _typing(self, message: Message) -> AsyncIterator[None]:
        """Show "typing…" until the block ends (re-sent every few seconds)."""

        async def keep_typing() -> None:
            while True:
                with contextlib.suppress(TelegramError):
                    await message.get_bot().send_chat_action(
                        message.chat_id, ChatAction.TYPING, message_thread_id=message.message_thread_id
                    )
                await asyncio.sleep(TYPING_EVERY_S)

        task = asyncio.create_task(keep_typing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- albums -----------------------------------------------------------------------------

    def _add_to_album(self, update: Update, message: Message) -> None:
        key = f"{message.chat_id}:{message.media_group_id}"
        album = self._albums.setdefault(key, _Album())
        album.updates.append(update)
        if album.flush is not None:
            album.flush.cancel()
        loop = asyncio.get_running_loop()
        album.flush = loop.call_later(ALBUM_WAIT_S, self._flush_album, key)

    def _flush_album(self, key: str) -> None:
        album = self._albums.pop(key, None)
        if album is not None:
            self._spawn_album(album)

    def _spawn_album(self, album: _Album) -> None:
        messages = [u.effective_message for u in album.updates if u.effective_message is not None]
        captioned = [u for u in album.updates if u.effective_message and u.effective_message.caption]
        # run by the Application like a handler: what it raises reaches on_error, which apologises
        # in reply to this update (the captioned photo, which the album's answer quotes too)
        task = self.app.create_task(self._answer_album(messages), update=(captioned or album.updates)[0])
        self._album_tasks.add(task)
        task.add_done_callback(self._album_tasks.discard)

    async def _answer_album(self, messages: list[Message]) -> None:
        """Every photo of an album answered, in one reply to the message with the caption."""
        messages = sorted(messages, key=lambda m: m.message_id)
        captioned = next((m for m in messages if m.caption), messages[0])
        question = self._question(captioned, captioned.caption, captioned.caption_entities)
        if question is None:
            return
        if not question:
            await self._send(captioned, self._ask_what(captioned))
            return
        lines = []
        try:
            async with self._typing(captioned):
                for number, message in enumerate(messages, start=1):
                    image = self._image_of(message)
                    if image is None:
                        continue
                    reply: Reply = await self.core.ask(self._request(message, question, image))
                    text = reply.text.replace("\n", "\n    ")
                    lines.append(f"{number}. {text}")
        except Exception:
            log.exception("telegram: error while answering an album")
            lines.append(replies.ERROR)
        await self._send(captioned, "\n".join(lines) or replies.ERROR)
