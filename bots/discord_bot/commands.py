"""The slash commands: declared on a command tree, and registered with Discord only when they
changed (registering is rate-limited, and every start would otherwise do it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import discord
from discord import app_commands

from bots import replies
from bots.discord_bot.log import log
from bots.events import Command

Ask = Callable[[discord.Interaction, discord.Attachment, str], Awaitable[None]]
Run = Callable[[discord.Interaction, Command], Awaitable[None]]
OnError = Callable[[discord.Interaction[Any], app_commands.AppCommandError], Coroutine[Any, Any, None]]

#: the slash commands other than /ask, and the core's command each one is
PLAIN_COMMANDS = {
    "help": Command.HELP,
    "about": Command.ABOUT,
    "new": Command.NEW,
    "health": Command.HEALTH,
    "stats": Command.STATS,
}


def declare(tree: app_commands.CommandTree[Any], *, ask: Ask, run: Run, on_error: OnError) -> None:
    """/ask (an image and a question) calls ``ask``; the others call ``run`` with their command."""
    menu = replies.COMMANDS["discord"]

    @tree.command(name="ask", description=menu["ask"])
    @app_commands.describe(**replies.ASK_OPTIONS)
    async def ask_(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
        await ask(interaction, image, question)

    for name, command in PLAIN_COMMANDS.items():
        tree.add_command(_plain(name, menu[name], command, run))
    tree.error(on_error)


def _plain(name: str, description: str, command: Command, run: Run) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction) -> None:
        await run(interaction, command)

    return app_commands.Command(name=name, description=description, callback=callback)


async def register(tree: app_commands.CommandTree[Any], *, always: bool) -> None:
    """Register the commands with Discord, unless it has them already (``always``: in any case).
    A failure is logged, not raised: the bot still answers messages without them."""
    try:
        local = sorted(_shape(c.to_dict(tree)) for c in tree.get_commands())
        if not always:
            remote = sorted(_shape(c.to_dict()) for c in await tree.fetch_commands())
            if remote == local:
                log.info("discord: the slash commands are registered already")
                return
        await tree.sync()
        log.info("discord: registered the slash commands")
    except discord.HTTPException as exc:
        log.warning("discord: could not register the slash commands: %s", exc)


def _shape(command: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes two registrations of a slash command the same, as Discord stores it."""
    options = tuple(
        (o["name"], o["type"], o.get("description", ""), bool(o.get("required", False)))
        for o in command.get("options", [])
    )
    return command["name"], command.get("type", 1), command.get("description", ""), options
