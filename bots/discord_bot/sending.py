"""The core's replies out to Discord: clipped to its limit, retried when the network failed,
quoting the question even if it was deleted meanwhile (``fail_if_not_exists=False``), and in
the interaction's channel when the interaction expired. Replies never ping anyone."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import discord

from bots import replies
from bots.delivery import with_retries
from bots.discord_bot.log import log
from bots.events import Reply

T = TypeVar("T")
MAX_CHARS = 2000


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the connection failed, or a 5xx that discord.py did not retry itself
    (it retries its API calls' 429 and 5xx, raising ``DiscordServerError`` when they persist; a
    download from the CDN it does not retry)."""
    if isinstance(exc, discord.DiscordServerError):
        return False
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def expired(exc: discord.HTTPException) -> bool:
    """The interaction is over: 10062 Unknown interaction, 10015 Unknown webhook (its token
    lives 15 minutes), 50027 Invalid webhook token."""
    return exc.code in (10062, 10015, 50027) or exc.status in (401, 404)


async def retrying(call: Callable[[], Awaitable[T]]) -> T:
    return await with_retries(call, transient=is_transient, what="discord: sending a reply")


async def send_reply(message: discord.Message, reply: Reply, view: discord.ui.View | None) -> None:
    """Reply to the question; if it was deleted meanwhile, Discord sends it without the quote."""
    reference = message.to_reference(fail_if_not_exists=False)
    text = replies.clip(reply.text, MAX_CHARS)
    if view is None:  # (discord.py's send() refuses view=None)
        await retrying(lambda: message.channel.send(text, reference=reference, mention_author=False))
        return
    await retrying(lambda: message.channel.send(text, reference=reference, mention_author=False, view=view))


async def respond(interaction: discord.Interaction, reply: Reply, view: discord.ui.View | None) -> None:
    """Answer the interaction; when its token has expired, post in its channel instead."""
    text = replies.clip(reply.text, MAX_CHARS)
    extra: dict[str, Any] = {}
    if reply.image is not None:
        extra["file"] = discord.File(io.BytesIO(reply.image), filename="chart.png")
    if view is not None:
        extra["view"] = view
    try:
        if interaction.response.is_done():
            await retrying(lambda: interaction.followup.send(text, ephemeral=reply.private, **extra))
        else:
            await retrying(lambda: interaction.response.send_message(text, ephemeral=reply.private, **extra))
    except discord.HTTPException as exc:
        channel = interaction.channel
        if not expired(exc) or reply.private or not isinstance(channel, discord.abc.Messageable):
            raise
        log.info("discord: the interaction expired (%s); answering in its channel", exc.text)
        await retrying(lambda: channel.send(f"{interaction.user.mention} {text}"[:MAX_CHARS]))
