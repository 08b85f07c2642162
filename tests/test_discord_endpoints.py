"""Another Discord API base and gateway (``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL``) apply to
one client only: two clients in one process talk to two Discords, and discord.py's class
attributes are never changed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.discord_bot import DiscordAdapter
from bots.discord_bot.endpoints import Endpoints
from tests.fake_discord import CALLBACK, CREATE_MESSAGE, IDENTIFY, FakeDiscord
from tests.test_discord import ALICE, CHANNEL, COLOR_Q, GUILD, example, running_bot

PROXY = Endpoints("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway")


def test_rest_urls_built_on_discords_base_move_to_ours() -> None:
    assert PROXY.rest("https://discord.com/api/v10/users/@me") == "http://127.0.0.1:9/api/v10/users/@me"
    assert PROXY.rest("https://discord.com/api/v10/channels/5/messages?limit=1") == (
        "http://127.0.0.1:9/api/v10/channels/5/messages?limit=1"
    )
    cdn = "https://cdn.discordapp.com/attachments/1/2/a.png"
    assert PROXY.rest(cdn) == cdn  # attachments are fetched where Discord says they are
    assert (
        Endpoints().rest("https://discord.com/api/v10/users/@me") == "https://discord.com/api/v10/users/@me"
    )


def test_the_default_gateway_moves_to_ours_with_its_query() -> None:
    query = "v=10&encoding=json&compress=zlib-stream"
    assert PROXY.gateway(f"wss://gateway.discord.gg/?{query}") == f"ws://127.0.0.1:9/gateway?{query}"
    resume = f"wss://gateway-us-east1-b.discord.gg/?{query}"
    assert PROXY.gateway(resume) == resume  # READY's resume_gateway_url is kept
    assert Endpoints().gateway(f"wss://gateway.discord.gg/?{query}") == f"wss://gateway.discord.gg/?{query}"


async def test_two_clients_in_one_process_talk_to_their_own_discord(tmp_path: Path) -> None:
    before = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with running_bot(tmp_path) as bot, FakeDiscord() as other:
        other.add_guild(GUILD, "Shapes", channels=[(CHANNEL, "general")])
        other.add_user(ALICE, "alice")
        second = DiscordAdapter(
            bot.core,
            token=other.token,
            guild_ready_timeout=0.05,
            defer_after_s=0,  # every slash command deferred, then followed up (webhook routes)
            api_base=other.api_base,
            gateway_url=other.gateway_url,
        )
        await second.start()
        try:
            assert before == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
            for fake in (bot.fake, other):
                dm = fake.dm_channel(ALICE)
                fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("blue_circle"))])
                [answer] = await fake.wait_for_message(dm)
                assert (answer.content or "").startswith("blue — ")
            about = other.interaction("about", ALICE, channel_id=CHANNEL)
            deferred = await other.wait_for_interaction_response(about["id"])
            [followup] = await other.wait_for_followup(about["id"])
        finally:
            await second.stop()
        await bot.finish()
    assert (deferred.type, bool(followup.content)) == (5, True)
    for fake in (bot.fake, other):  # each client logged in, identified and answered at its own
        assert fake.calls_of("GET /users/@me") and len(fake.calls_of(IDENTIFY)) == 1
        assert len(fake.calls_of(CREATE_MESSAGE)) == 1
    assert len(other.calls_of(CALLBACK)) == 1 and not bot.fake.calls_of(CALLBACK)
    assert before == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    assert before == ("https://discord.com/api/v10", yarl.URL("wss://gateway.discord.gg/"))


@pytest.mark.parametrize("shard_count", [None, 2])
def test_building_a_client_leaves_the_library_as_it_was(shard_count: int | None) -> None:
    """No process-wide change: the voice-warning filter is gone once the client is built."""
    logger = logging.getLogger("discord.client")
    filters = list(logger.filters)
    adapter = DiscordAdapter(
        None,  # type: ignore[arg-type]  # (no core needed to build it)
        token="t",
        shard_count=shard_count,
        api_base="http://127.0.0.1:9/api/v10",
        gateway_url="ws://127.0.0.1:9/",
    )
    assert logger.filters == filters
    assert adapter.client.http is adapter.client._connection.http  # the one routed HTTP client
    assert Route.BASE.startswith("https://discord.com/")
