"""The Discord adapter (discord.py): messages and slash commands in, the core's replies out.

It translates a Discord message or interaction into a ``ChatEvent`` and delivers the ``Reply``
the core returns; nothing about the conversation is decided here. Works without the privileged
message-content intent: Discord still delivers the content of messages that mention the bot, of
DMs and of slash commands. With the intent (``DISCORD_MESSAGE_CONTENT=true``) the bot can also
see the image of a message someone replies to.

Delivery: discord.py retries 429 and 5xx itself; dropped connections are retried here; a reply
whose question was deleted is still sent (``fail_if_not_exists=False``); an interaction that
expired falls back to a message in its channel. Replies never ping anyone.

Shards (``DISCORD_SHARD_COUNT``, ``DISCORD_SHARD_IDS``): the client is then discord.py's
``AutoShardedClient``, running the given shards (or all of them) over one connection each in this
process; other processes run the other shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import aiohttp
import discord
import yarl
from discord import app_commands

from bots import replies
from bots.core import ChatCore
from bots.delivery import with_retries
from bots.events import Button, ChatEvent, Command, ImageRef, Outcome, Platform, Press, Reply
from bots.typing import typing_while_slow

log = logging.getLogger(__name__)

T = TypeVar("T")
PLATFORM: Platform = "discord"
MAX_CHARS = 2000
#: an interaction must be acknowledged within 3 s: answer at once if the answer is this quick,
#: otherwise defer ("thinking…") and follow up
DEFER_AFTER_S = 2.0


def point_at(api_base: str | None, gateway_url: str | None) -> None:
    """Talk to another Discord API/gateway (a proxy, or a test's loopback fake).

    discord.py keeps both as class attributes: this is the way it offers to change them.
    """
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the connection failed, or a 5xx that discord.py did not retry itself
    (it retries its API calls' 429 and 5xx, raising ``DiscordServerError`` when they persist; a
    download from the CDN it does not retry)."""
    if isinstance(exc, discord.DiscordServerError):
        return False
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def _expired(exc: discord.HTTPException) -> bool:
    """The interaction is over: 10062 Unknown interaction, 10015 Unknown webhook (its token
    lives 15 minutes), 50027 Invalid webhook token."""
    return exc.code in (10062, 10015, 50027) or exc.status in (401, 404)


def image_ref(attachment: discord.Attachment) -> ImageRef:
    return ImageRef(
        attachment.url,
        size=attachment.size,
        mime_type=(attachment.content_type or "").split(";")[0] or None,
        file_name=attachment.filename,
        width=attachment.width,
        height=attachment.height,
    )


def images_of(message: discord.Message) -> tuple[ImageRef, ...]:
    """The image attachments (an undeclared type may be one); else the others, for the core to refuse."""
    images = [a for a in message.attachments if a.content_type is None or a.content_type.startswith("image/")]
    return tuple(image_ref(a) for a in (images or message.attachments))


def _command_shape(command: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes two registrations of a slash command the same, as Discord stores it."""
    options = tuple(
        (o["name"], o["type"], o.get("description", ""), bool(o.get("required", False)))
        for o in command.get("options", [])
    )
    return command["name"], command.get("type", 1), command.get("description", ""), options


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
        adapter = getattr(interaction.client, "adapter", None)
        if isinstance(adapter, DiscordAdapter):
            await adapter.on_press(interaction, self.press)


def answer_view(reply: Reply) -> discord.ui.View | None:
    if not reply.buttons or reply.request_id is None:
        return None
    view = discord.ui.View(timeout=None)
    for button in reply.buttons:
        view.add_item(AnswerButton(button, reply.request_id))
    return view


class VQAClient(discord.Client):
    """A discord.py client that sends events to ``DiscordAdapter`` and registers the slash
    commands in ``setup_hook`` — only when they changed, since registering is rate-limited."""

    def __init__(
        self,
        adapter: DiscordAdapter,
        *,
        intents: discord.Intents,
        sync_commands: bool,
        guild_ready_timeout: float,
        identify_delay_s: float = 5.0,
        **sharding: Any,
    ) -> None:
        # we never join voice channels: no "voice will NOT be supported" warnings
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            intents=intents,
            guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
            **sharding,
        )
        self.adapter = adapter
        self.sync_commands = sync_commands
        self.identify_delay_s = identify_delay_s
        self.tree = app_commands.CommandTree(self)
        adapter.register(self.tree)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord allows one IDENTIFY every 5 s (``max_concurrency`` 1): wait that long between
        shards, as discord.py does (a test's loopback gateway has no such limit)."""
        if not initial:
            await asyncio.sleep(self.identify_delay_s)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AnswerButton)
        try:
            commands = self.tree.get_commands()
            local = sorted(_command_shape(c.to_dict(self.tree)) for c in commands)
            if not self.sync_commands:
                remote = sorted(_command_shape(c.to_dict()) for c in await self.tree.fetch_commands())
                if remote == local:
                    log.info("discord: the slash commands are registered already")
                    return
            await self.tree.sync()
            log.info("discord: registered the slash commands")
        except discord.HTTPException as exc:  # the bot still answers messages without them
            log.warning("discord: could not register the slash commands: %s", exc)

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.on_message(message)

    async def on_error(self, event_method: str, /, *args: object, **kwargs: object) -> None:
        log.exception("discord: error in %s", event_method)


class ShardedVQAClient(VQAClient, discord.AutoShardedClient):
    """The same client, sharded: ``shard_count`` (None: Discord's recommendation) and the
    ``shard_ids`` this process runs (None: all of them), one gateway connection per shard."""


class DiscordAdapter:
    """Owns one ``VQAClient``; ``start()``/``stop()`` from ``main.py``."""

    def __init__(
        self,
        core: ChatCore,
        *,
        token: str,
        message_content: bool = False,
        sync_commands: bool = False,
        guild_ready_timeout: float = 2.0,
        defer_after_s: float = DEFER_AFTER_S,
        drain_s: float = 8.0,
        shard_count: int | Literal["auto"] | None = None,
        shard_ids: list[int] | None = None,
        identify_delay_s: float = 5.0,
    ) -> None:
        self.core = core
        self.defer_after_s = defer_after_s
        self.drain_s = drain_s
        self._token = token
        intents = discord.Intents.default()
        intents.message_content = message_content
        options: dict[str, Any] = {
            "intents": intents,
            "sync_commands": sync_commands,
            "guild_ready_timeout": guild_ready_timeout,
            "identify_delay_s": identify_delay_s,
        }
        self.sharded = shard_count is not None
        self.client: VQAClient
        if shard_count is None:
            self.client = VQAClient(self, **options)
        else:
            count = None if shard_count == "auto" else shard_count
            self.client = ShardedVQAClient(self, shard_count=count, shard_ids=shard_ids, **options)
        self._runner: asyncio.Task[None] | None = None
        self._turns: set[asyncio.Task[Any]] = set()  # handlers running now, awaited on stop

    @property
    def connected(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    def register(self, tree: app_commands.CommandTree) -> None:
        menu = replies.COMMANDS["discord"]

        @tree.command(name="ask", description=menu["ask"])
        @app_commands.describe(**replies.ASK_OPTIONS)
        async def ask(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            await self._interaction(interaction, images=(image_ref(image),), text=question)

        @tree.command(name="help", description=menu["help"])
        async def help_(interaction: discord.Interaction) -> None:
            await self._interaction(interaction, command=Command.HELP)

        @tree.command(name="about", description=menu["about"])
        async def about(interaction: discord.Interaction) -> None:
            await self._interaction(interaction, command=Command.ABOUT)

        @tree.command(name="health", description=menu["health"])
        async def health(interaction: discord.Interaction) -> None:
            await self._interaction(interaction, command=Command.HEALTH)

        @tree.command(name="stats", description=menu["stats"])
        async def stats(interaction: discord.Interaction) -> None:
            await self._interaction(interaction, command=Command.STATS)

        @tree.error
        async def on_command_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            log.error("discord: error in a slash command", exc_info=error)
            with contextlib.suppress(Exception):
                await self._respond(interaction, Reply(replies.ERROR, Outcome.ERROR, private=True))

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (registering the slash commands if they changed), connect, wait until ready.

        Raises what stops it (a bad token, a missing intent); cancelling it (a login that hangs
        and a SIGTERM, or the login timeout) closes everything it opened.
        """
        ready: asyncio.Task[None] | None = None
        log.info("discord: logging in")
        try:
            await self.client.login(self._token)
            self._runner = asyncio.create_task(self.client.connect(reconnect=True))
            ready = asyncio.create_task(self.client.wait_until_ready())
            await asyncio.wait({self._runner, ready}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                self._runner.result()  # raises what stopped the gateway
                raise ConnectionError("discord: the gateway closed before the bot was ready")
        except BaseException:
            if ready is not None:
                ready.cancel()
            await self._close()
            raise
        user = self.client.user
        shards = ""
        if isinstance(self.client, discord.AutoShardedClient):
            ids = ",".join(str(i) for i in sorted(self.client.shards))
            shards = f" (shards {ids} of {self.client.shard_count})"
        log.info("discord: connected as %s%s", user.name if user else "?", shards)

    def health(self) -> list[str]:
        """A /health line for a sharded client: each shard of this process and its heartbeat
        latency (none for an unsharded one: its latency is the process's connection)."""
        client = self.client
        if not isinstance(client, discord.AutoShardedClient):
            return []
        parts = []
        for shard_id, latency in sorted(client.latencies):
            shard = client.get_shard(shard_id)
            state = "closed" if shard is None or shard.is_closed() else _ms(latency)
            parts.append(f"{shard_id} {state}")
        return [f"discord shards (of {client.shard_count}): {', '.join(parts) or 'none connected'}"]

    async def stop(self) -> bool:
        """Answer the questions already received (for up to ``drain_s``), then disconnect;
        True when all of them were answered."""
        pending: set[asyncio.Task[Any]] = set()
        if self._turns:
            _, pending = await asyncio.wait(set(self._turns), timeout=self.drain_s)
            if pending:
                log.warning("discord: %d questions still unanswered at shutdown", len(pending))
        await self._close()
        log.info("discord: stopped")
        return not pending

    async def _close(self) -> None:
        await self.client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot:
            return
        in_dm = isinstance(message.channel, discord.DMChannel)
        replied_image, replied_hidden = await self._replied(message, me)
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
            replied_image=replied_image,
            replied_hidden=replied_hidden,
        )
        async with self._turn():
            if not event.addressed:
                await self.core.handle(event)  # remembers the image, answers nothing
                return
            async with typing_while_slow(message.channel.typing):
                reply = await self.core.handle(event)
            if reply is not None:
                await self._send(message, reply)

    async def _replied(
        self, message: discord.Message, me: discord.ClientUser
    ) -> tuple[ImageRef | None, bool]:
        """The image of the message this one replies to; or whether Discord hides it from us."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None, False
        referenced = reference.resolved
        if not isinstance(referenced, discord.Message):
            with contextlib.suppress(discord.HTTPException):
                referenced = await message.channel.fetch_message(reference.message_id)
        if not isinstance(referenced, discord.Message):
            return None, False
        images = images_of(referenced)
        if images:
            return images[0], False
        # without the content intent, other people's messages arrive without their attachments
        hidden = not self.client.intents.message_content and referenced.author.id != me.id
        return None, hidden

    async def _fetch(self, image: ImageRef) -> bytes:
        return await with_retries(
            lambda: self.client.http.get_from_cdn(image.source),
            transient=is_transient,
            what="discord: downloading an image",
        )

    async def _send(self, message: discord.Message, reply: Reply) -> None:
        """Reply to the question; if it was deleted meanwhile, Discord sends it without the quote."""
        reference = message.to_reference(fail_if_not_exists=False)
        text, view = replies.clip(reply.text, MAX_CHARS), answer_view(reply)
        if view is None:  # (discord.py's send() refuses view=None)
            await self._retrying(
                lambda: message.channel.send(text, reference=reference, mention_author=False)
            )
            return
        await self._retrying(
            lambda: message.channel.send(text, reference=reference, mention_author=False, view=view)
        )

    # -- slash commands and buttons -----------------------------------------------------------

    async def on_press(self, interaction: discord.Interaction, press: Press) -> None:
        """A button under an answer: the chart, or a 👍/👎 (acknowledged to the presser only)."""
        await self._interaction(interaction, press=press)

    async def _interaction(
        self,
        interaction: discord.Interaction,
        *,
        images: tuple[ImageRef, ...] = (),
        text: str = "",
        command: Command | None = None,
        press: Press | None = None,
    ) -> None:
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
                await self._respond(interaction, reply)

    async def _respond(self, interaction: discord.Interaction, reply: Reply) -> None:
        """Answer the interaction; when its token has expired, post in its channel instead."""
        text = replies.clip(reply.text, MAX_CHARS)
        extra: dict[str, Any] = {}
        if reply.image is not None:
            extra["file"] = discord.File(io.BytesIO(reply.image), filename="chart.png")
        if (view := answer_view(reply)) is not None:
            extra["view"] = view
        try:
            if interaction.response.is_done():
                await self._retrying(
                    lambda: interaction.followup.send(text, ephemeral=reply.private, **extra)
                )
            else:
                await self._retrying(
                    lambda: interaction.response.send_message(text, ephemeral=reply.private, **extra)
                )
        except discord.HTTPException as exc:
            channel = interaction.channel
            if not _expired(exc) or reply.private or not isinstance(channel, discord.abc.Messageable):
                raise
            log.info("discord: the interaction expired (%s); answering in its channel", exc.text)
            await self._retrying(lambda: channel.send(f"{interaction.user.mention} {text}"[:MAX_CHARS]))

    # -- the pieces -------------------------------------------------------------------------

    @staticmethod
    async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, transient=is_transient, what="discord: sending a reply")

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Track the handler, so that ``stop()`` can wait for it."""
        task = asyncio.current_task()
        assert task is not None
        self._turns.add(task)
        try:
            yield
        finally:
            self._turns.discard(task)


def _ms(latency: float) -> str:
    """A heartbeat latency as /health shows it (none measured yet: infinite or NaN)."""
    if latency != latency or latency == float("inf"):
        return "no heartbeat yet"
    return f"{latency * 1000:.0f} ms"
