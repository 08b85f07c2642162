"""The discord.py client: messages, slash commands and button presses in, the core's replies out.

It receives the chat core and its options as keyword arguments, as discord.py's
``advanced_startup`` example does; its async set-up (the answer buttons, the slash commands)
runs in ``setup_hook``. Each event becomes a ``ChatEvent``; nothing about the conversation is
decided here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
from discord import app_commands

from bots import replies
from bots.core import ChatCore
from bots.delivery import with_retries
from bots.discord_bot import commands
from bots.discord_bot.endpoints import Endpoints, RoutedHTTPClient, RoutedWebhookAdapter, webhooks_via
from bots.discord_bot.log import log
from bots.discord_bot.reading import image_ref, images_of, replied_image
from bots.discord_bot.sending import is_transient, respond, send_reply
from bots.events import Button, ChatEvent, Command, ImageRef, Outcome, Platform, Press, Reply
from bots.typing_indicator import typing_while_slow

PLATFORM: Platform = "discord"


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"vqa:(?P<button>chart|good|bad):(?P<request_id>[0-9a-f]{1,32})",
):
    """A button under an answer. Its custom id says what it is for, so a click is understood
    even after a restart, and nothing is kept per message."""

    def __init__(self, button: Button, request_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=replies.BUTTON_LABELS[button.value],
                style=discord.ButtonStyle.secondary,
                custom_id=f"vqa:{button.value}:{request_id}",
            )
        )
        self.press = Press(button, request_id)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> AnswerButton:
        return cls(Button(match["button"]), match["request_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        """A chart, or a 👍/👎 (acknowledged to the presser only)."""
        if isinstance(interaction.client, VQAClient):
            await interaction.client.answer(interaction, press=self.press)


def answer_view(reply: Reply) -> discord.ui.View | None:
    if not reply.buttons or reply.request_id is None:
        return None
    view = discord.ui.View(timeout=None)
    for button in reply.buttons:
        view.add_item(AnswerButton(button, reply.request_id))
    return view


class VQAClient(discord.Client):
    """Sends each message, slash command and button press to ``core`` and delivers its reply.

    A slash command or press is answered at once if the core answers within ``defer_after_s``,
    else deferred ("thinking…") and followed up. ``endpoints`` moves this client's REST calls
    and gateway connections elsewhere (a proxy, a test's loopback Discord);
    ``identify_delay_s`` is the wait between shards' IDENTIFYs.
    """

    def __init__(
        self,
        *,
        core: ChatCore,
        intents: discord.Intents,
        sync_commands: bool,
        guild_ready_timeout: float,
        defer_after_s: float,
        identify_delay_s: float,
        endpoints: Endpoints,
        **sharding: Any,
    ) -> None:
        with _without_voice_warnings():
            super().__init__(
                intents=intents,
                guild_ready_timeout=guild_ready_timeout,
                allowed_mentions=discord.AllowedMentions.none(),
                **sharding,
            )
        # (this client passes discord.py no proxy or connector, so none is lost here)
        self.http = self._connection.http = RoutedHTTPClient(self.loop, endpoints=endpoints)
        self._webhooks = RoutedWebhookAdapter(endpoints)
        self.core = core
        self.sync_commands = sync_commands
        self.defer_after_s = defer_after_s
        self.identify_delay_s = identify_delay_s
        self.turns: set[asyncio.Task[Any]] = set()  # handlers running now: stop() waits for them
        self.tree = app_commands.CommandTree(self)
        commands.declare(self.tree, ask=self._ask, run=self._run, on_error=self._command_failed)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AnswerButton)
        await commands.register(self.tree, always=self.sync_commands)

    async def connect(self, *, reconnect: bool = True) -> None:
        with webhooks_via(self._webhooks):  # (every event handler runs in a task started here)
            await super().connect(reconnect=reconnect)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord allows one IDENTIFY every 5 s (``max_concurrency`` 1): wait that long between
        shards, as discord.py does (a test's loopback gateway has no such limit)."""
        if not initial:
            await asyncio.sleep(self.identify_delay_s)

    async def on_error(self, event_method: str, /, *args: object, **kwargs: object) -> None:
        log.exception("discord: error in %s", event_method)

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or message.author.bot:
            return
        in_dm = isinstance(message.channel, discord.DMChannel)
        image, hidden = await replied_image(message, me, content_intent=self.intents.message_content)
        event = ChatEvent(
            platform=PLATFORM,
            chat_id=str(message.channel.id),
            chat_type="dm" if in_dm else "guild",
            private=in_dm,
            user_id=str(message.author.id),
            addressed=in_dm or any(user.id == me.id for user in message.mentions),
            fetch=self._fetch,
            text=re.sub(rf"<@!?{me.id}>", " ", message.content or ""),
            images=images_of(message),
            replied_image=image,
            replied_hidden=hidden,
        )
        async with self._turn():
            if not event.addressed:
                await self.core.handle(event)  # remembers the image, answers nothing
                return
            async with typing_while_slow(message.channel.typing):
                reply = await self.core.handle(event)
            if reply is not None:
                await send_reply(message, reply, answer_view(reply))

    async def _fetch(self, image: ImageRef) -> bytes:
        return await with_retries(
            lambda: self.http.get_from_cdn(image.source),
            transient=is_transient,
            what="discord: downloading an image",
        )

    # -- slash commands and buttons -----------------------------------------------------------

    async def _ask(self, interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
        await self.answer(interaction, images=(image_ref(image),), text=question)

    async def _run(self, interaction: discord.Interaction, command: Command) -> None:
        await self.answer(interaction, command=command)

    async def _command_failed(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        log.error("discord: error in a slash command", exc_info=error)
        with contextlib.suppress(Exception):
            await respond(interaction, Reply(replies.ERROR, Outcome.ERROR, private=True), None)

    async def answer(
        self,
        interaction: discord.Interaction,
        *,
        images: tuple[ImageRef, ...] = (),
        text: str = "",
        command: Command | None = None,
        press: Press | None = None,
    ) -> None:
        """A slash command or a button press: answered at once when quick, else deferred."""
        in_dm = interaction.guild_id is None
        event = ChatEvent(
            platform=PLATFORM,
            chat_id=str(interaction.channel_id),
            chat_type="dm" if in_dm else "guild",
            private=in_dm,
            user_id=str(interaction.user.id),
            addressed=True,
            fetch=self._fetch,
            text=text,
            images=images,
            command=command,
            press=press,
        )
        async with self._turn():
            handling = asyncio.ensure_future(self.core.handle(event))
            try:
                reply = await asyncio.wait_for(asyncio.shield(handling), self.defer_after_s)
            except TimeoutError:  # acknowledge within Discord's 3 s, answer when ready
                with contextlib.suppress(discord.HTTPException):
                    await interaction.response.defer(thinking=True)
                reply = await handling
            if reply is not None:
                await respond(interaction, reply, answer_view(reply))

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Track the handler, so that ``stop()`` can wait for it."""
        task = asyncio.current_task()
        assert task is not None
        self.turns.add(task)
        try:
            yield
        finally:
            self.turns.discard(task)


class ShardedVQAClient(VQAClient, discord.AutoShardedClient):
    """The same client, sharded: ``shard_count`` (None: Discord's recommendation) and the
    ``shard_ids`` this process runs (None: all of them), one gateway connection per shard."""


class _NoVoiceWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


@contextlib.contextmanager
def _without_voice_warnings() -> Iterator[None]:
    """We never join voice channels: discord.py's warning, while a client is built, that voice
    needs PyNaCl or davey is noise here (it is dropped for that moment only)."""
    logger, quiet = logging.getLogger("discord.client"), _NoVoiceWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
