"""The adapter's one logger: its lines read ``bots.discord_bot``, whichever module writes them."""

import logging

log = logging.getLogger("bots.discord_bot")
