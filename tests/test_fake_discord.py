"""The loopback Discord fake works with the real, unmodified discord.py 2.7.1.

The adapter's tests, ``python main.py`` as a child process and the benchmarks trust this fake, so
each behaviour they rely on (and each fault a test may inject) is shown here once, with
discord.py itself doing the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fake_discord import (
    CALLBACK,
    CLOSE,
    CREATE_MESSAGE,
    GATEWAY,
    HEARTBEAT,
    IDENTIFY,
    READY,
    RESUME,
    RESUMED,
    TYPING,
    FakeDiscord,
)
from tests.loopback import HELD

GUILD, CHANNEL = 500, 501
ALICE, BOB = 7001, 7002
MAX_DOWNLOAD = 20 * 1024 * 1024


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with asyncio.timeout(5), FakeDiscord() as server:
        server.add_guild(GUILD, "Shapes", channels=[(CHANNEL, "general")])
        server.add_user(ALICE, "alice")
        server.add_user(BOB, "bob")
        with server.patch_discord():
            yield server


class EchoBot(discord.Client):
    """Replies to what it may see (DMs, mentions, with the intent every guild message), reading the
    attachment (or the replied-to message's) unless it declares more than 20 MB."""

    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[discord.Message] = []

    async def on_message(self, message: discord.Message) -> None:
        if message.author == self.user:
            return  # Discord echoes the bot's own messages back to it
        self.seen.append(message)
        if message.guild is not None and self.user not in message.mentions and not message.content:
            return  # what a bot without the message-content intent gets for others' messages
        async with message.channel.typing():
            await message.reply(await self.describe(message), mention_author=False)

    async def describe(self, message: discord.Message) -> str:
        attachments = list(message.attachments)
        resolved = message.reference.resolved if message.reference else None
        if not attachments and isinstance(resolved, discord.Message):
            attachments = list(resolved.attachments)
        assert self.user is not None
        text = message.content.replace(f"<@{self.user.id}>", "").strip()
        if not attachments:
            return f"echo: {text}"
        if attachments[0].size > MAX_DOWNLOAD:
            return f"too big: {attachments[0].size}"
        return f"{text}: {len(await attachments[0].read())} bytes of {attachments[0].content_type}"


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: discord.Client) -> AsyncIterator[discord.Client]:
    """A started bot connected to the fake; teardown is bounded so a bug cannot hang the suite."""
    task = asyncio.create_task(bot.start(fake.token))
    ready = asyncio.ensure_future(fake.wait_for_calls(READY, len(fake.calls_of(READY)) + 1))
    try:
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what start() raised
            raise AssertionError("bot.start() returned before READY")
        await asyncio.wait_for(bot.wait_until_ready(), 5)  # closing before on_ready logs an error
        yield bot
    finally:
        ready.cancel()
        await asyncio.wait_for(bot.close(), 5)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


# -- connecting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_content", [False, True])
async def test_the_bot_connects_with_its_intents(fake: FakeDiscord, message_content: bool) -> None:
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot):
        [identify] = fake.calls_of(IDENTIFY)
        assert identify.params["intents"] == bot.intents.value
        assert bot.user is not None and bot.user.id == fake.bot_id and bot.application_id == fake.bot_id
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.name == "Shapes" and guild.me is not None
        general = guild.get_channel(CHANNEL)
        assert isinstance(general, discord.TextChannel) and general.name == "general"
    routes = [c.route for c in fake.calls]
    assert routes[:3] == ["GET /users/@me", "GET /oauth2/applications/@me", GATEWAY]
    assert [c.params for c in fake.calls_of(GATEWAY)] == ["/"] and fake.calls_of(HEARTBEAT)
    assert all(c.status < 400 for c in fake.calls)


async def test_a_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    bot = EchoBot()
    try:
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(bot.login("not-the-token"), 5)
    finally:
        await asyncio.wait_for(bot.close(), 5)
    assert [(c.route, c.status) for c in fake.calls] == [("GET /users/@me", 401)]


async def test_a_privileged_intent_not_granted_closes_with_4014() -> None:
    async with FakeDiscord(privileged=()) as fake:
        with fake.patch_discord():
            bot = EchoBot(message_content=True)
            try:
                with pytest.raises(discord.PrivilegedIntentsRequired):
                    await asyncio.wait_for(bot.start(fake.token), 5)
            finally:
                await asyncio.wait_for(bot.close(), 5)
            assert [c.params for c in fake.calls_of(CLOSE)] == [4014]
            async with running(fake, EchoBot(message_content=False)):  # without it, it connects
                assert len(fake.calls_of(IDENTIFY)) == 2


async def test_a_login_that_never_returns(fake: FakeDiscord) -> None:
    fake.hang("GET /users/@me")
    bot = EchoBot()
    login = asyncio.ensure_future(bot.login(fake.token))
    try:
        [held] = await fake.wait_for_calls("GET /users/@me")
        assert held.status == HELD and not login.done()
    finally:
        login.cancel()
        await asyncio.wait_for(bot.close(), 5)


async def test_a_gateway_that_accepts_and_never_says_hello(fake: FakeDiscord) -> None:
    fake.hang(GATEWAY)
    bot = EchoBot()
    connecting = asyncio.ensure_future(bot.start(fake.token))
    try:
        [held] = await fake.wait_for_calls(GATEWAY)
        assert held.status == HELD and not connecting.done() and not bot.is_ready()
        assert fake.calls_of(IDENTIFY) == []
        fake.clear_failures()  # a late HELLO: the client carries on
        await asyncio.wait_for(bot.wait_until_ready(), 5)
    finally:
        await asyncio.wait_for(bot.close(), 5)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(connecting, 5)
    assert [c.status for c in fake.calls_of(GATEWAY)] == [HELD, 101]


# -- messages ---------------------------------------------------------------------------------------


async def test_a_dm_is_answered_with_a_reply_while_typing(fake: FakeDiscord) -> None:
    dm = fake.dm_channel(ALICE)
    async with running(fake, EchoBot(message_content=False)):
        message = fake.send_message(dm, ALICE, "hello")
        [reply] = await fake.wait_for_message(dm)
    assert reply.content == "echo: hello"  # DMs carry content without the privileged intent
    assert reply.reply_to == int(message["id"])
    assert reply.message_reference is not None
    assert isinstance(reply.message_reference["message_id"], int)  # discord.py sends integer ids
    assert reply.message_reference.get("fail_if_not_exists", True)  # Discord's default: refuse
    assert reply.payload["allowed_mentions"]["replied_user"] is False
    assert reply.message["referenced_message"]["content"] == "hello"
    [typing] = fake.calls_of(TYPING)
    assert fake.typing == [dm] and typing.at <= fake.calls_of(CREATE_MESSAGE)[0].at


@pytest.mark.parametrize("message_content", [False, True])
async def test_guild_messages_and_the_content_intent(fake: FakeDiscord, message_content: bool) -> None:
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot):
        plain = fake.send_message(CHANNEL, BOB, "just chatting")
        mention = fake.send_message(CHANNEL, ALICE, "what shape?", mentions_bot=True)
        replies = await fake.wait_for_message(CHANNEL, 2 if message_content else 1)
    seen = {m.id: m for m in bot.seen}
    assert seen[int(plain["id"])].content == ("just chatting" if message_content else "")
    assert seen[int(mention["id"])].content == f"<@{fake.bot_id}> what shape?"  # a mention always shows
    assert isinstance(seen[int(mention["id"])].author, discord.Member)
    answered = {r.reply_to: r.content for r in replies}
    assert answered[int(mention["id"])] == "echo: what shape?"
    assert (int(plain["id"]) in answered) is message_content


async def test_an_attachment_is_downloaded_and_a_huge_one_never(fake: FakeDiscord) -> None:
    image = fake.attachment(b"\x89PNG" + b"x" * 96, filename="red.png", width=8, height=8)
    huge = fake.attachment(b"tiny", filename="big.png", size=30 * 1024 * 1024)
    dm = fake.dm_channel(ALICE)
    async with running(fake, EchoBot(message_content=False)):
        fake.send_message(dm, ALICE, "what colour?", attachments=[image])
        fake.send_message(dm, ALICE, "and this?", attachments=[huge])
        replies = await fake.wait_for_message(dm, 2)
    assert sorted(r.content or "" for r in replies) == [
        f"too big: {30 * 1024 * 1024}",
        "what colour?: 100 bytes of image/png",
    ]
    assert fake.downloads == [int(image["id"])]


@pytest.mark.parametrize("message_content", [False, True])
async def test_a_reply_and_the_message_it_refers_to(fake: FakeDiscord, message_content: bool) -> None:
    image = fake.attachment(b"y" * 10, filename="shape.jpg", content_type="image/jpeg")
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot) as client:
        posted = fake.send_message(CHANNEL, BOB, "", attachments=[image])  # no mention: no answer
        question = fake.send_message(
            CHANNEL, ALICE, "what shape?", mentions_bot=True, reference=int(posted["id"])
        )
        [reply] = await fake.wait_for_message(CHANNEL)
        channel = client.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        fetched = await channel.fetch_message(int(posted["id"]))  # what an adapter does when it sees none
    seen = next(m for m in bot.seen if m.id == int(question["id"]))
    assert seen.reference is not None and seen.reference.message_id == int(posted["id"])
    resolved = seen.reference.resolved
    assert isinstance(resolved, discord.Message) and resolved.author.id == BOB
    # without the intent the referenced message arrives redacted; REST shows it to an application
    # that was granted the intent
    assert len(resolved.attachments) == (1 if message_content else 0)
    assert [a.id for a in fetched.attachments] == [int(image["id"])]
    expected = "what shape?: 10 bytes of image/jpeg" if message_content else "echo: what shape?"
    assert reply.content == expected


async def test_a_reply_to_the_bot_pings_it(fake: FakeDiscord) -> None:
    async with running(fake, EchoBot(message_content=False)):
        fake.send_message(CHANNEL, ALICE, "first", mentions_bot=True)
        [answer] = await fake.wait_for_message(CHANNEL)
        follow_up = fake.send_message(CHANNEL, ALICE, "and the colour?", reference=answer.id)
        [second] = await fake.wait_for_message(CHANNEL)
    assert [m["id"] for m in follow_up["mentions"]] == [str(fake.bot_id)]
    assert second.content == "echo: and the colour?" and second.reply_to == int(follow_up["id"])


async def test_rest_errors_reach_discord_py(fake: FakeDiscord) -> None:
    async with running(fake, EchoBot(message_content=False)) as bot:
        channel = bot.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035 and "2000 or fewer" in str(too_long.value)
        with pytest.raises(discord.NotFound) as unknown:
            await bot.http.send_message(999, params=discord.http.handle_message_parameters(content="hi"))
        assert unknown.value.code == 10003
        fake.fail_next(CREATE_MESSAGE, status=429, retry_after=0.01)  # discord.py waits and retries
        assert (await channel.send("after a rate limit")).content == "after a rate limit"
        fake.fail_next(CREATE_MESSAGE, status=503)
        with pytest.raises(discord.DiscordServerError):
            await channel.send("during an outage")
        question = fake.send_message(CHANNEL, ALICE, "gone soon")
        stored = await channel.fetch_message(int(question["id"]))
        fake.delete_message(int(question["id"]))
        with pytest.raises(discord.HTTPException) as gone:
            await stored.reply("too late")
        assert gone.value.code == 50035 and "Unknown message" in str(gone.value)
        sent = await channel.send("anyway", reference=stored.to_reference(fail_if_not_exists=False))
    assert sent.reference is None and fake.sent[-1].reply_to == int(question["id"])
    statuses = [c.status for c in fake.calls_of(CREATE_MESSAGE)]
    assert statuses == [400, 404, 429, 200, 503, 400, 200]


# -- slash commands and buttons ---------------------------------------------------------------------


class AskBot(EchoBot):
    """``/ask image question`` answered at once, ``/slow`` deferred, then followed up and edited;
    a ``Chart`` button that updates its message."""

    def __init__(self) -> None:
        super().__init__(message_content=False)

        @self.tree.command(name="ask", description="Ask a question about an image")
        async def ask(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            data = await image.read()
            await interaction.response.send_message(f"{question} -> {len(data)} bytes", view=ChartView())

        @self.tree.command(name="slow", description="Think first, answer later")
        async def slow(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            await interaction.response.defer(thinking=True, ephemeral=True)
            data = await image.read()
            await interaction.followup.send(f"{question} -> {len(data)} bytes")
            await interaction.edit_original_response(content="edited")

    async def setup_hook(self) -> None:
        if [c.name for c in await self.tree.fetch_commands()] != ["ask", "slow"]:
            await self.tree.sync()


class ChartView(discord.ui.View):
    @discord.ui.button(label="Chart", custom_id="chart")
    async def chart(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="a chart", view=None)


async def test_a_synced_slash_command_answered_with_a_button(fake: FakeDiscord) -> None:
    image = fake.attachment(b"z" * 42, filename="q.png")
    async with running(fake, AskBot()):
        payload = fake.interaction(
            "ask",
            ALICE,
            channel_id=CHANNEL,
            options={"question": "what shape?"},
            attachments={"image": image},
        )
        response = await fake.wait_for_interaction_response(payload["id"])
        assert response.type == 4 and response.content == "what shape? -> 42 bytes"
        assert response.data["components"][0]["components"][0]["custom_id"] == "chart"
        answer = fake.interactions[int(payload["id"])].original
        assert answer is not None
        click = fake.click(CHANNEL, BOB, int(answer["id"]), "chart")
        update = await fake.wait_for_interaction_response(click["id"])
    assert (update.type, update.content, update.data["components"]) == (7, "a chart", [])
    assert fake.messages[int(answer["id"])]["content"] == "a chart"
    assert [(o["name"], o["type"]) for o in fake.commands[0]["options"]] == [("image", 11), ("question", 3)]
    assert [c.route for c in fake.calls if "commands" in c.route] == [
        "GET /applications/{app_id}/commands",
        "PUT /applications/{app_id}/commands",
    ]
    assert payload["data"]["options"][1] == {"name": "image", "type": 11, "value": image["id"]}
    assert fake.downloads == [int(image["id"])]


async def test_a_deferred_response_then_a_followup_and_an_edit(fake: FakeDiscord) -> None:
    image = fake.attachment(b"w" * 5, filename="w.png")
    dm = fake.dm_channel(BOB)
    async with running(fake, AskBot()):
        payload = fake.interaction(
            "slow", BOB, channel_id=dm, options={"question": "colour?"}, attachments={"image": image}
        )
        response = await fake.wait_for_interaction_response(payload["id"])
        followup, edit = await fake.wait_for_followup(payload["id"], count=2)
    assert response.type == 5 and response.ephemeral
    assert followup.content == "colour? -> 5 bytes" and followup.edit_of is None
    assert followup.ephemeral  # the first follow-up replaces the (ephemeral) "thinking..." message
    assert (edit.edit_of, edit.content, edit.message["id"]) == ("@original", "edited", followup.message["id"])
    assert "user" in payload and "member" not in payload  # a DM interaction has a user, no member


async def test_a_late_response_and_an_expired_token(fake: FakeDiscord) -> None:
    errors: list[BaseException] = []
    failed = asyncio.Event()
    bot = AskBot()

    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        errors.append(error.__cause__ or error)
        failed.set()

    bot.tree.on_error = on_error  # type: ignore[method-assign]
    image = fake.attachment(b"v", filename="v.png")
    fake.hold_downloads()  # a slow model: the image is held until the interaction has expired
    async with running(fake, bot):
        late = fake.interaction(
            "ask", ALICE, channel_id=CHANNEL, options={"question": "q"}, attachments={"image": image}
        )
        await fake.wait_for_held_downloads(1)
        fake.expire_interaction(late["id"])
        fake.release_downloads()
        await asyncio.wait_for(failed.wait(), 5)
        failed.clear()
        slow = fake.interaction(
            "slow", ALICE, channel_id=CHANNEL, options={"question": "q"}, attachments={"image": image}
        )
        await fake.wait_for_interaction_response(slow["id"])
        fake.expire_interaction(slow["id"], token=True)  # 15 minutes later: the follow-up is refused
        await asyncio.wait_for(failed.wait(), 5)
    assert isinstance(errors[0], discord.NotFound) and errors[0].code == 10062
    assert isinstance(errors[1], discord.HTTPException) and (errors[1].status, errors[1].code) == (401, 50027)
    assert [c.status for c in fake.calls_of(CALLBACK)] == [404, 200]


# -- reconnecting -----------------------------------------------------------------------------------


async def test_dropped_connections_resume_and_deliver_exactly_once(fake: FakeDiscord) -> None:
    bot = EchoBot()
    channels = [fake.dm_channel(user) for user in range(8000, 8005)]
    async with running(fake, bot):
        sent = []
        for i in range(30):
            if i in (10, 20):
                fake.drop_connection(4000)
            sent.append(fake.send_message(channels[i % 5], 8000 + i % 5, f"m{i}")["id"])
            if i in (10, 20):
                await fake.wait_for_calls(RESUMED, i // 10)  # a drop needs a live connection
        for channel in channels:
            await fake.wait_for_message(channel, 6)
    assert sorted(m.id for m in bot.seen) == sorted(int(i) for i in sent)  # none lost, none twice
    assert len(fake.sent) == 30 and len(fake.calls_of(IDENTIFY)) == 1
    assert [c.params for c in fake.calls_of(GATEWAY)] == ["/", "/resume", "/resume"]
    assert len({c.params["session_id"] for c in fake.calls_of(RESUME)}) == 1
    assert [c.params for c in fake.calls_of(CLOSE)] == [4000, 4000]


async def test_events_before_connecting_are_queued(fake: FakeDiscord) -> None:
    bot = EchoBot()
    dm = fake.dm_channel(BOB)
    early = fake.send_message(dm, BOB, "sent before the bot started")
    async with running(fake, bot):
        [reply] = await fake.wait_for_message(dm)
        joined = asyncio.ensure_future(bot.wait_for("guild_join", timeout=5))
        fake.add_guild(900, "Late guild", channels=[901])
        guild = await joined
    assert reply.reply_to == int(early["id"])
    assert guild.id == 900 and guild.get_channel(901) is not None


# -- raw HTTP and the pieces ------------------------------------------------------------------------


async def test_raw_http_content_type_auth_unknown_routes_and_the_cdn(fake: FakeDiscord) -> None:
    image = fake.attachment(b"abc", filename="a.png")
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {fake.token}"}
        async with http.get(f"{fake.api_base}/users/@me", headers=auth) as response:
            assert response.headers["Content-Type"] == "application/json"  # exactly: no charset
            assert (await response.json())["id"] == str(fake.bot_id)
        async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as response:
            assert (response.status, (await response.json())["code"]) == (401, 0)
        async with http.get(f"{fake.api_base}/guilds/1/members", headers=auth) as response:
            assert response.status == 404 and await response.json() == {
                "message": "404: Not Found",
                "code": 0,
            }
        async with http.get(image["proxy_url"]) as response:
            assert await response.read() == b"abc" and response.content_type == "image/png"
    assert fake.calls[-2].route == "GET /api/v10/guilds/1/members" and fake.downloads == [int(image["id"])]


async def test_env_and_patch() -> None:
    import discord.gateway
    import discord.http

    before = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        with fake.patch_discord():
            patched = discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        env = fake.env()
    assert patched == (env["DISCORD_API_BASE"], env["DISCORD_GATEWAY_URL"])
    assert patched == (f"http://127.0.0.1:{fake.port}/api/v10", f"ws://127.0.0.1:{fake.port}/")
    after = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    assert after == before
    assert env["DISCORD_TOKEN"] == fake.token and "127.0.0.1" in env["NO_PROXY"]


def test_injections_are_checked() -> None:
    fake = FakeDiscord()
    fake.add_guild(GUILD, channels=[CHANNEL])
    with pytest.raises(ValueError, match="unknown channel"):
        fake.send_message(12345, ALICE, "nowhere")
    with pytest.raises(ValueError, match="another user"):
        fake.send_message(fake.dm_channel(ALICE), BOB, "not my DM")
    with pytest.raises(ValueError, match="no message"):
        fake.send_message(CHANNEL, ALICE, "re", reference=1)
    with pytest.raises(ValueError, match="unknown privileged"):
        FakeDiscord(privileged=["everything"])
