"""``main.py webhook info|delete``: what Telegram knows of the bot's webhook, or remove it (the bot
then gets no updates until a process starts polling, or registers the webhook again)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from service.exit_codes import EXIT_FAILURE, EXIT_USAGE

if TYPE_CHECKING:
    from telegram import Bot

    from config import Settings


def webhook(settings: Settings, action: str) -> int:
    """Run ``action`` (``info`` or ``delete``) against Telegram and print what it answered; the
    process's exit code (2: no token, 1: Telegram refused)."""
    from telegram import Bot
    from telegram.error import TelegramError

    if settings.telegram_token is None:
        print("error: set TELEGRAM_TOKEN (in the environment or in .env)", file=sys.stderr)
        return EXIT_USAGE
    bot = Bot(
        settings.telegram_token.get_secret_value(),
        base_url=settings.telegram_base_url or "https://api.telegram.org/bot",
        base_file_url=settings.telegram_base_file_url or "https://api.telegram.org/file/bot",
    )
    try:
        lines = asyncio.run(call(bot, action))
    except TelegramError as exc:
        print(f"error: Telegram answered: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print("\n".join(lines))
    return 0


async def call(bot: Bot, action: str) -> list[str]:
    """Delete the webhook, or the lines that describe it."""
    async with bot:
        if action == "delete":
            await bot.delete_webhook(drop_pending_updates=False)
            return ["webhook deleted: updates wait at Telegram until a bot polls or sets a webhook"]
        info = await bot.get_webhook_info()
    lines = [f"url: {info.url or 'none (long polling)'}", f"pending updates: {info.pending_update_count}"]
    if info.last_error_date is not None:
        when = f"{info.last_error_date:%Y-%m-%d %H:%M:%S} UTC"
        lines.append(f"last error: {when}: {info.last_error_message}")
    return lines
