"""``DiscordAdapter``: the front end the service starts and stops; it builds and owns one
``VQAClient`` (sharded or not) and keeps Discord's 3-second rule for interactions."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

import discord

from bots.core import ChatCore
from bots.discord_bot.client import ShardedVQAClient, VQAClient
from bots.discord_bot.endpoints import Endpoints
from bots.discord_bot.log import log
from bots.options import DEFAULT_SHUTDOWN_TIMEOUT_S

#: an interaction must be acknowledged within 3 s: answer at once if the answer is this quick,
#: otherwise defer ("thinking…") and follow up
DEFER_AFTER_S = 2.0


class DiscordAdapter:
    """Owns one ``VQAClient``; ``start()``/``stop()`` from the service.

    ``api_base`` and ``gateway_url`` (``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL``) point this
    client, and no other in the process, at another Discord API and gateway.
    """

    def __init__(
        self,
        core: ChatCore,
        *,
        token: str,
        message_content: bool = False,
        sync_commands: bool = False,
        guild_ready_timeout: float = 2.0,
        defer_after_s: float = DEFER_AFTER_S,
        drain_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
        shard_count: int | Literal["auto"] | None = None,
        shard_ids: list[int] | None = None,
        identify_delay_s: float = 5.0,
        api_base: str | None = None,
        gateway_url: str | None = None,
    ) -> None:
        self.core = core
        self.drain_s = drain_s
        self._token = token
        intents = discord.Intents.default()
        intents.message_content = message_content
        options: dict[str, Any] = {
            "core": core,
            "intents": intents,
            "sync_commands": sync_commands,
            "guild_ready_timeout": guild_ready_timeout,
            "defer_after_s": defer_after_s,
            "identify_delay_s": identify_delay_s,
            "endpoints": Endpoints(api_base, gateway_url),
        }
        self.client: VQAClient
        if shard_count is None:
            self.client = VQAClient(**options)
        else:
            count = None if shard_count == "auto" else shard_count
            self.client = ShardedVQAClient(shard_count=count, shard_ids=shard_ids, **options)
        self._runner: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

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
        if self.client.turns:
            _, pending = await asyncio.wait(set(self.client.turns), timeout=self.drain_s)
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


def _ms(latency: float) -> str:
    """A heartbeat latency as /health shows it (none measured yet: infinite or NaN)."""
    if latency != latency or latency == float("inf"):
        return "no heartbeat yet"
    return f"{latency * 1000:.0f} ms"
