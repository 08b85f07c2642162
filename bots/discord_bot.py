"""The Discord adapter (discord.py): messages and slash commands in, ``ChatCore`` replies out.

Works without the privileged message-content intent: Discord still delivers the content of
messages that mention the bot, of DMs, and of slash commands, which is all the bot answers.
With the intent granted (``DISCORD_MESSAGE_CONTENT=true``) nothing else changes: guild messages
that do not mention the bot are still ignored, never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

import discord
import yarl
from discord import app_commands

from bots import replies
from bots.core import ChatCore, extract_question
from bots.requests import ChatRequest, ImageRef, Platform

log = logging.getLogger(__name__)

PLATFORM: Platform = "discord"
MAX_CHARS = 2000
#: an interaction must be acknowledged within 3 s: answer at once if the answer is this quick,
#: otherwise defer ("thinking…") and follow up
DEFER_AFTER_S = 2.0
READY_TIMEOUT_S = 60.0
#: without the message-content intent Discord hides other messages' attachments from the bot
CANNOT_SEE_REFERENCE = (
    "I can't see the image in that message (this bot doesn't have Discord's message-content "
    "permission). Mention me in the message with the image, or use /ask."
)


def point_at(api_base: str | None, gateway_url: str | None) -> None:
    """Talk to another Discord API/gateway (a proxy, or a test's loopback fake)."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def image_of(message: discord.Message) -> discord.Attachment | None:
    """The first attachment that may be an image (an undeclared type is read by content)."""
    for attachment in message.attachments:
        if attachment.content_type is None or attachment.content_type.startswith("image/"):
            return attachment
    return message.attachments[0] if message.attachments else None


def image_ref(attachment: discord.Attachment) -> ImageRef:
    return ImageRef(
        fetch=attachment.read,
        size=attachment.size,
        mime_type=(attachment.content_type or "").split(";")[0] or None,
        file_name=attachment.filename,
        width=attachment.width,
        height=attachment.height,
    )


class DiscordAdapter:
    """Owns one ``discord.Client`` and its command tree; ``start()``/``stop()`` from ``main.py``."""

    def __init__(
        self,
        core: ChatCore,
        *,
        token: str,
        message_content: bool = False,
        guild_ready_timeout: float = 2.0,
        defer_after_s: float = DEFER_AFTER_S,
    ) -> None:
        self.core = core
        self.defer_after_s = defer_after_s
        self._token = token
        intents = discord.Intents.default()
        intents.message_content = message_content
        self.client = discord.Client(intents=intents, guild_ready_timeout=guild_ready_timeout)
        self.tree = app_commands.CommandTree(self.client)
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._register()

    # -- wiring -----------------------------------------------------------------------------

    def _register(self) -> None:
        client, tree = self.client, self.tree

        @client.event
        async def on_ready() -> None:
            self._ready.set()

        @client.event
        async def on_message(message: discord.Message) -> None:
            await self.on_message(message)

        @client.event
        async def on_error(event: str, *args: object, **kwargs: object) -> None:
            log.exception("discord: error in %s", event)

        @tree.command(name="ask", description="Ask a question about an image")
        @app_commands.describe(image="the picture", question="e.g. what color is the shape?")
        async def ask(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            await self.on_ask(interaction, image, question)

        @tree.command(name="health", description="Is the bot healthy? (admins)")
        async def health(interaction: discord.Interaction) -> None:
            await self._admin_only(interaction, self.core.health_text)

        @tree.command(name="stats", description="What has the bot been doing? (admins)")
        async def stats(interaction: discord.Interaction) -> None:
            await self._admin_only(interaction, self.core.stats_text)

        @tree.error
        async def on_command_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            log.error("discord: error in a slash command", exc_info=error)
            with contextlib.suppress(discord.HTTPException):
                if interaction.response.is_done():
                    await interaction.followup.send(replies.ERROR, ephemeral=True)
                else:
                    await interaction.response.send_message(replies.ERROR, ephemeral=True)

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, connect, register the slash commands; raises if Discord refuses us."""
        try:
            await self.client.login(self._token)  # discord.LoginFailure for a bad token
        except BaseException:
            await self.client.close()  # the HTTP session it opened
            raise
        self._runner = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait(
            {self._runner, ready}, timeout=READY_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if ready not in done:
            ready.cancel()
            if self._runner.done():
                await self.client.close()
                self._runner.result()  # raises what stopped the gateway (e.g. a missing intent)
            await self.client.close()
            raise TimeoutError(f"discord: not ready after {READY_TIMEOUT_S:.0f} s")
        try:
            await self.tree.sync()
        except discord.HTTPException as exc:  # the bot still answers messages without them
            log.warning("discord: could not register the slash commands: %s", exc)
        self.core.platforms.append(PLATFORM)
        user = self.client.user
        log.info("discord: connected as %s", user.name if user else "?")

    async def stop(self) -> None:
        """Stop taking events, let the handlers already running finish, then disconnect."""
        pending = [t for t in asyncio.all_tasks() if t.get_name().startswith("discord.py: on_")]
        if pending:
            await asyncio.wait(pending, timeout=30)
        await self.client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner
        if PLATFORM in self.core.platforms:
            self.core.platforms.remove(PLATFORM)
        log.info("discord: stopped")

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """DMs, and guild messages that mention the bot: a question about an image."""
        me = self.client.user
        if me is None or message.author.bot:
            return
        in_dm = isinstance(message.channel, discord.DMChannel)
        if not in_dm and not any(user.id == me.id for user in message.mentions):
            return  # guild chatter: never answered
        chat_type = "dm" if in_dm else "guild"
        user_id, channel_id = str(message.author.id), str(message.channel.id)
        question = extract_question(_without_mentions(message.content, me.id))
        attachment = image_of(message)
        if attachment is None and message.reference is not None:
            attachment = await self._referenced_image(message)
        image = image_ref(attachment) if attachment is not None else None
        if image is not None and self.core.check_image(image) is None:
            self.core.memory.remember(PLATFORM, channel_id, user_id, image)
        if image is None:
            image = self.core.memory.recall(PLATFORM, channel_id, user_id)
        if image is None and message.reference is not None and not self.client.intents.message_content:
            await self._reply(message, CANNOT_SEE_REFERENCE)
            return
        if image is None:
            if not in_dm and not question:
                return  # a bare mention with nothing to look at
            await self._reply(message, replies.NO_IMAGE)
            return
        request = ChatRequest(PLATFORM, user_id, channel_id, chat_type, question, image)
        if not question:
            refusal = self.core.check_image(image)
            text = self.core.refuse(request, refusal).text if refusal is not None else _ask_what(in_dm)
            await self._reply(message, text)
            return
        async with message.channel.typing():
            reply = await self.core.ask(request)
        await self._reply(message, reply.text)

    async def _referenced_image(self, message: discord.Message) -> discord.Attachment | None:
        reference = message.reference
        assert reference is not None
        referenced = reference.resolved
        if not isinstance(referenced, discord.Message) and reference.message_id is not None:
            with contextlib.suppress(discord.HTTPException):
                referenced = await message.channel.fetch_message(reference.message_id)
        return image_of(referenced) if isinstance(referenced, discord.Message) else None

    async def _reply(self, message: discord.Message, text: str) -> None:
        try:
            await message.reply(replies.clip(text, MAX_CHARS), mention_author=False)
        except discord.HTTPException:  # the question was deleted meanwhile: answer in the channel
            await message.channel.send(replies.clip(text, MAX_CHARS))

    # -- slash commands ---------------------------------------------------------------------

    async def on_ask(
        self, interaction: discord.Interaction, image: discord.Attachment, question: str
    ) -> None:
        """``/ask image question``: answer at once, or defer and follow up when it takes longer."""
        in_dm = interaction.guild_id is None
        ref = image_ref(image)
        user_id, channel_id = str(interaction.user.id), str(interaction.channel_id)
        if self.core.check_image(ref) is None:
            self.core.memory.remember(PLATFORM, channel_id, user_id, ref)
        request = ChatRequest(
            PLATFORM, user_id, channel_id, "dm" if in_dm else "guild", extract_question(question), ref
        )
        answering = asyncio.ensure_future(self.core.ask(request))
        try:
            reply = await asyncio.wait_for(asyncio.shield(answering), self.defer_after_s)
        except TimeoutError:
            await interaction.response.defer(thinking=True)
            reply = await answering
            await interaction.followup.send(replies.clip(reply.text, MAX_CHARS))
            return
        await interaction.response.send_message(replies.clip(reply.text, MAX_CHARS))

    async def _admin_only(self, interaction: discord.Interaction, text: Callable[[], str]) -> None:
        if not self.core.is_admin(PLATFORM, str(interaction.user.id)):
            log.info("discord: refused an admin command from a non-admin")
            await interaction.response.send_message(replies.NOT_ADMIN, ephemeral=True)
            return
        await interaction.response.send_message(replies.clip(text(), MAX_CHARS), ephemeral=True)


def _without_mentions(content: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", " ", content or "")


def _ask_what(in_dm: bool) -> str:
    if in_dm:
        return replies.ASK_WHAT
    return "Got the picture. Mention me with your question (e.g. “@me what shape is it?”)."
