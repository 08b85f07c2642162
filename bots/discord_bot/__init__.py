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

The modules: ``adapter`` (``DiscordAdapter``, the front end the service starts and stops),
``client`` (the discord.py client: events in, replies out), ``commands`` (the slash commands),
``reading`` (a message's images), ``sending`` (replies out, retried), ``endpoints`` (another API
base or gateway, for this client only), ``log``.
"""

from bots.discord_bot.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
