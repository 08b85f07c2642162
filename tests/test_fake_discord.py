"""The loopback Discord fake works with the real, unmodified discord.py 2.7.1.

Other tests (the Discord adapter, ``python main.py`` as a child process) will trust this fake, so
each behaviour they rely on is shown here with discord.py itself doing the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fake_discord import ADMINISTRATOR, FLAG_EPHEMERAL, FakeDiscord

GUILD, CHANNEL, OTHER_CHANNEL = 500, 501, 502
ALICE, BOB = 7001, 7002
MAX_DOWNLOAD = 20 * 1024 * 1024


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await asyncio.wait_for(server.start(), 5)
    server.add_guild(GUILD, "Shapes", channels=[(CHANNEL, "general"), OTHER_CHANNEL])
    server.add_user(ALICE, "alice")
    server.add_user(BOB, "bob")
    try:
        with server.patch_discord():
            yield server
    finally:
        await asyncio.wait_for(server.stop(), 5)


class EchoBot(commands.Bot):
    """Replies to what it may see: DMs, mentions, and (with the intent) every guild message.

    Attachments are read unless they declare more than 20 MB; a reply to a message with an
    attachment reads the referenced message's attachment.
    """

    def __init__(self, *, message_content: bool = True, typing: bool = False) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.05)
        self.typing_replies = typing
        self.seen: list[discord.Message] = []
        self.own: list[discord.Message] = []
        self.edited: list[tuple[str, str]] = []
        self.ready = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s wait before a re-IDENTIFY."""

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        self.edited.append((before.content, after.content))

    async def on_message(self, message: discord.Message) -> None:
        if message.author == self.user:
            self.own.append(message)  # Discord echoes the bot's own messages back to it
            return
        self.seen.append(message)
        mentioned = self.user in message.mentions
        if message.guild is not None and not mentioned and not message.content:
            return  # what a bot without the message-content intent gets for others' messages
        if self.typing_replies:
            async with message.channel.typing():
                await message.reply(await self.describe(message))
        else:
            await message.reply(await self.describe(message))

    async def describe(self, message: discord.Message) -> str:
        attachments = list(message.attachments)
        resolved = message.reference.resolved if message.reference else None
        if not attachments and isinstance(resolved, discord.Message):
            attachments = list(resolved.attachments)
        text = message.content.replace(f"<@{self.user.id}>", "").strip() if self.user else message.content
        if not attachments:
            return f"echo: {text}"
        attachment = attachments[0]
        if attachment.size > MAX_DOWNLOAD:
            return f"too big: {attachment.size}"
        data = await attachment.read()
        return f"{text}: {len(data)} bytes of {attachment.content_type}"


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot) -> AsyncIterator[commands.Bot]:
    """A started bot connected to the fake; teardown is bounded so a bug cannot hang the suite."""
    task = asyncio.create_task(bot.start(fake.token))
    ready = asyncio.create_task(fake.wait_until_ready(timeout=5))
    try:
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what start() raised
            raise AssertionError("bot.start() returned before READY")
        ready.result()
        # closing before on_ready makes discord.py log "Task exception was never retrieved"
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        yield bot
    finally:
        ready.cancel()
        await asyncio.wait_for(bot.close(), 5)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


# -- connecting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_content", [False, True])
async def test_bot_connects_with_its_intents(fake: FakeDiscord, message_content: bool) -> None:
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot):
        await asyncio.wait_for(bot.ready.wait(), 5)
        [identify] = fake.identifies
        assert identify["intents"] == bot.intents.value
        assert bool(identify["intents"] & (1 << 15)) is message_content
        assert (
            bot.user is not None and bot.user.id == fake.bot_id and bot.application_id == fake.application_id
        )
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.name == "Shapes" and guild.me is not None
        general = guild.get_channel(CHANNEL)
        assert isinstance(general, discord.TextChannel) and general.name == "general"
        assert await bot.is_owner(discord.Object(fake.owner_id))  # type: ignore[arg-type]
    startup = [r.route for r in fake.requests]
    assert startup[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert fake.unknown_routes == [] and fake.gateway_connections == ["/"]
    assert fake.heartbeats  # discord.py beats once right after HELLO


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    bot = EchoBot()
    try:
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(bot.login("not-the-token"), 5)
    finally:
        await asyncio.wait_for(bot.close(), 5)
    assert [(r.route, r.status) for r in fake.requests] == [("GET /users/@me", 401)]
    assert fake.identifies == []


async def test_privileged_intent_not_granted_closes_with_4014() -> None:
    async with FakeDiscord(privileged=()) as fake:
        with fake.patch_discord():
            bot = EchoBot(message_content=True)
            try:
                with pytest.raises(discord.PrivilegedIntentsRequired):
                    await asyncio.wait_for(bot.start(fake.token), 5)
            finally:
                await asyncio.wait_for(bot.close(), 5)
            assert fake.close_codes == [4014]
            # without the privileged intent the same bot connects
            bot = EchoBot(message_content=False)
            async with running(fake, bot):
                assert len(fake.identifies) == 2


async def test_close_is_fast_and_clean(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running(fake, bot):
        await asyncio.wait_for(bot.ready.wait(), 5)
        started = time.monotonic()
        await asyncio.wait_for(bot.close(), 5)
        assert time.monotonic() - started < 1.0
    assert bot.is_closed()
    await fake.wait_until(lambda: not fake.connected, 5, "the gateway connection to close")


# -- messages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_content", [False, True])
async def test_dm_is_answered_with_a_reply(fake: FakeDiscord, message_content: bool) -> None:
    dm = fake.dm_channel(ALICE)
    async with running(fake, EchoBot(message_content=message_content)):
        message = fake.send_message(dm, ALICE, "hello")
        [reply] = await fake.wait_for_message(dm, timeout=5)
    assert reply.content == "echo: hello"  # DMs carry content without the privileged intent
    assert reply.reply_to == int(message["id"])
    assert reply.message_reference is not None
    assert isinstance(reply.message_reference["message_id"], int)  # discord.py sends integer ids
    assert reply.payload["enforce_nonce"] and reply.message["nonce"] == reply.payload["nonce"]
    assert reply.message["author"]["id"] == str(fake.bot_id) and "guild_id" not in reply.message
    assert reply.message["referenced_message"]["content"] == "hello"


@pytest.mark.parametrize("message_content", [False, True])
async def test_guild_mention_and_plain_messages(fake: FakeDiscord, message_content: bool) -> None:
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot):
        plain = fake.send_message(CHANNEL, BOB, "just chatting")
        mention = fake.send_message(CHANNEL, ALICE, "what shape?", mentions_bot=True)
        [reply] = await fake.wait_for_message(CHANNEL, timeout=5)
        if message_content:
            [second] = await fake.wait_for_message(CHANNEL, timeout=5)
            reply, second = sorted((reply, second), key=lambda s: s.reply_to or 0)
            assert (second.reply_to, second.content) == (int(mention["id"]), "echo: what shape?")
    assert mention["content"] == f"<@{fake.bot_id}> what shape?"
    seen = {m.id: m for m in bot.seen}
    assert set(seen) == {int(plain["id"]), int(mention["id"])}
    assert seen[int(plain["id"])].content == ("just chatting" if message_content else "")
    assert seen[int(mention["id"])].content == mention["content"]  # a mention always carries content
    assert bot.user in seen[int(mention["id"])].mentions
    assert isinstance(seen[int(mention["id"])].author, discord.Member)
    assert isinstance(seen[int(mention["id"])].channel, discord.TextChannel)
    if message_content:
        assert (reply.reply_to, reply.content) == (int(plain["id"]), "echo: just chatting")
    else:
        assert (reply.reply_to, reply.content) == (int(mention["id"]), "echo: what shape?")
    assert reply.message["guild_id"] == str(GUILD)


async def test_attachment_is_downloaded(fake: FakeDiscord) -> None:
    image = fake.attachment(
        b"\x89PNG" + b"x" * 96, filename="red.png", content_type="image/png", width=8, height=8
    )
    dm = fake.dm_channel(ALICE)
    async with running(fake, EchoBot(message_content=False)):
        message = fake.send_message(dm, ALICE, "what colour?", attachments=[image])
        [reply] = await fake.wait_for_message(dm, timeout=5)
    assert reply.content == "what colour?: 100 bytes of image/png"
    sent = message["attachments"][0]
    assert {k: sent[k] for k in ("filename", "size", "content_type", "width", "height")} == {
        "filename": "red.png",
        "size": 100,
        "content_type": "image/png",
        "width": 8,
        "height": 8,
    }
    assert sent["url"].startswith(f"{fake.root}/attachments/{dm}/{sent['id']}/red.png?")
    assert fake.downloads == [int(sent["id"])]


async def test_huge_attachment_is_never_downloaded(fake: FakeDiscord) -> None:
    huge = fake.attachment(b"tiny", filename="big.png", content_type="image/png", size=30 * 1024 * 1024)
    async with running(fake, EchoBot()):
        fake.send_message(CHANNEL, ALICE, "and this?", mentions_bot=True, attachments=[huge])
        [reply] = await fake.wait_for_message(CHANNEL, timeout=5)
        assert reply.content == f"too big: {30 * 1024 * 1024}"
        assert fake.downloads == []
    assert fake.downloads == []


@pytest.mark.parametrize("message_content", [False, True])
async def test_reply_resolves_the_referenced_message(fake: FakeDiscord, message_content: bool) -> None:
    image = fake.attachment(b"y" * 10, filename="shape.jpg", content_type="image/jpeg")
    bot = EchoBot(message_content=message_content)
    async with running(fake, bot):
        posted = fake.send_message(CHANNEL, BOB, "", attachments=[image])  # no mention: no answer
        question = fake.send_message(
            CHANNEL, ALICE, "what shape?", mentions_bot=True, reference=int(posted["id"])
        )
        replies = await fake.wait_for_message(CHANNEL, count=1, timeout=5)
    seen = next(m for m in bot.seen if m.id == int(question["id"]))
    assert seen.type is discord.MessageType.reply
    assert seen.reference is not None and seen.reference.message_id == int(posted["id"])
    resolved = seen.reference.resolved
    assert isinstance(resolved, discord.Message) and resolved.author.id == BOB
    if message_content:
        assert replies[-1].content == "what shape?: 10 bytes of image/jpeg"
        assert fake.downloads == [int(image["id"])]
    else:
        # without the intent the referenced message (which did not mention the bot) is redacted too:
        # an adapter must fetch it (REST redacts it the same way unless the intent is granted)
        assert resolved.attachments == [] and replies[-1].content == "echo: what shape?"
        assert fake.downloads == []


async def test_reply_to_the_bot_pings_it(fake: FakeDiscord) -> None:
    bot = EchoBot(message_content=False)
    async with running(fake, bot):
        fake.send_message(CHANNEL, ALICE, "first", mentions_bot=True)
        [answer] = await fake.wait_for_message(CHANNEL, timeout=5)
        follow_up = fake.send_message(CHANNEL, ALICE, "and the colour?", reference=answer.id)
        [second] = await fake.wait_for_message(CHANNEL, timeout=5)
    assert [m["id"] for m in follow_up["mentions"]] == [str(fake.bot_id)]
    assert second.content == "echo: and the colour?" and second.reply_to == int(follow_up["id"])


async def test_own_messages_come_back_and_edits_are_not_messages(fake: FakeDiscord) -> None:
    bot = EchoBot(message_content=True)
    async with running(fake, bot):
        question = fake.send_message(CHANNEL, ALICE, "first")
        [reply] = await fake.wait_for_message(CHANNEL, timeout=5)
        await fake.wait_until(lambda: bot.own, 5, "the bot's own MESSAGE_CREATE")
        fake.edit_message(int(question["id"]), "first, edited")
        await fake.wait_until(lambda: bot.edited, 5, "on_message_edit")
    assert [m.id for m in bot.own] == [reply.id]
    assert bot.edited == [("first", "first, edited")]
    assert [m.id for m in bot.seen] == [int(question["id"])]  # an edit is no new question
    assert len(fake.sent) == 1


async def test_typing_context_manager_hits_the_typing_route(fake: FakeDiscord) -> None:
    dm = fake.dm_channel(BOB)
    async with running(fake, EchoBot(typing=True)):
        fake.send_message(dm, BOB, "hi")
        await fake.wait_for_message(dm, timeout=5)
    assert fake.typing == [dm]
    typing, sent = (
        fake.requests_to("POST /channels/{channel_id}/typing"),
        fake.requests_to("POST /channels/{channel_id}/messages"),
    )
    assert typing[0].at <= sent[0].at and typing[0].status == 204


async def test_rest_errors_reach_discord_py(fake: FakeDiscord) -> None:
    async with running(fake, EchoBot()) as bot:
        channel = bot.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035 and "2000 or fewer" in str(too_long.value)
        with pytest.raises(discord.NotFound) as unknown:
            await bot.http.send_message(999, params=discord.http.handle_message_parameters(content="hi"))
        assert unknown.value.code == 10003
        sent = await channel.send("thinking…")
        edited = await sent.edit(content="circle")
        assert edited.content == "circle" and fake.edits[-1].payload["content"] == "circle"
        fetched = await channel.fetch_message(sent.id)
        assert fetched.content == "circle"
        await sent.add_reaction("✅")
        await sent.delete()
        assert fake.deleted == [(CHANNEL, sent.id)] and fake.reactions[0][2] == "✅"
        fake.fail_next("POST /channels/{channel_id}/messages", status=429, retry_after=0.01)
        assert (await channel.send("after a rate limit")).content == "after a rate limit"
        assert [r.status for r in fake.requests_to("POST /channels/{channel_id}/messages")][-2:] == [429, 200]
        dm = await bot.create_dm(discord.Object(ALICE))  # type: ignore[arg-type]
        await dm.send("a direct message")
        assert fake.sent[-1].channel_id == fake.dm_channel(ALICE)
    assert fake.unknown_routes == []


# -- slash commands ---------------------------------------------------------------------------------


class AskBot(EchoBot):
    """``/ask image question`` answered at once; ``/slow`` deferred then followed up; ``/health``."""

    def __init__(self, *, guild_sync: bool = False) -> None:
        super().__init__(message_content=False)
        self.guild_sync = guild_sync
        self.responses: list[discord.InteractionCallbackResponse] = []

        @app_commands.command(name="ask", description="Ask a question about an image")
        async def ask(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            data = await image.read()
            response = await interaction.response.send_message(f"{question} -> {len(data)} bytes")
            self.responses.append(response)

        @app_commands.command(name="slow", description="Think first, answer later")
        async def slow(interaction: discord.Interaction, image: discord.Attachment, question: str) -> None:
            await interaction.response.defer(thinking=True, ephemeral=True)
            data = await image.read()
            await interaction.followup.send(f"{question} -> {len(data)} bytes")
            await interaction.edit_original_response(content="edited")

        @app_commands.command(name="health", description="Admins only")
        async def health(interaction: discord.Interaction) -> None:
            admin = interaction.permissions.administrator
            await interaction.response.send_message("ok" if admin else "admins only", ephemeral=not admin)

        self.tree.add_command(ask)
        self.tree.add_command(slow)
        self.tree.add_command(health)

    async def setup_hook(self) -> None:
        if self.guild_sync:
            guild = discord.Object(GUILD)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()


async def test_slash_command_is_synced_and_answered(fake: FakeDiscord) -> None:
    bot = AskBot()
    image = fake.attachment(b"z" * 42, filename="q.png", content_type="image/png")
    async with running(fake, bot):
        commands_ = {c["name"]: c for c in fake.commands[None]}
        assert set(commands_) == {"ask", "slow", "health"}
        assert [(o["name"], o["type"], o["required"]) for o in commands_["ask"]["options"]] == [
            ("image", 11, True),
            ("question", 3, True),
        ]
        payload = fake.interaction(
            "ask",
            ALICE,
            channel_id=CHANNEL,
            options={"question": "what shape?"},
            attachments={"image": image},
        )
        response = await fake.wait_for_interaction_response(payload["id"], timeout=5)
    assert (response.type, response.content, response.flags) == (4, "what shape? -> 42 bytes", 0)
    assert response.with_response  # discord.py always asks with_response=1
    assert fake.downloads == [int(image["id"])]
    [callback] = bot.responses
    assert isinstance(callback.resource, discord.InteractionMessage)
    assert callback.resource.content == "what shape? -> 42 bytes"
    option = next(o for o in payload["data"]["options"] if o["name"] == "image")
    assert option == {"name": "image", "type": 11, "value": image["id"]}
    assert payload["data"]["resolved"]["attachments"][image["id"]]["ephemeral"] is True


async def test_deferred_response_then_followup_and_edit(fake: FakeDiscord) -> None:
    image = fake.attachment(b"w" * 5, filename="w.png", content_type="image/png")
    dm = fake.dm_channel(BOB)
    async with running(fake, AskBot()):
        payload = fake.interaction(
            "slow", BOB, channel_id=dm, options={"question": "colour?"}, attachments={"image": image}
        )
        response = await fake.wait_for_interaction_response(payload["id"], timeout=5)
        followup, edit = await fake.wait_for_followup(payload["id"], count=2, timeout=5)
    assert response.type == 5 and response.ephemeral
    assert followup.content == "colour? -> 5 bytes" and followup.edit_of is None
    assert followup.ephemeral  # the first follow-up replaces the (ephemeral) "thinking..." message
    assert edit.edit_of == "@original" and edit.content == "edited"
    assert edit.message["id"] == followup.message["id"]
    assert "user" in payload and "member" not in payload  # a DM interaction has a user, no member
    assert [r.route for r in fake.requests if r.route.startswith("POST /webhooks")] == [
        "POST /webhooks/{app_id}/{token}"
    ]


async def test_guild_commands_and_permissions(fake: FakeDiscord) -> None:
    async with running(fake, AskBot(guild_sync=True)):
        assert None not in fake.commands and {c["name"] for c in fake.commands[GUILD]} == {
            "ask",
            "slow",
            "health",
        }
        member = fake.interaction("health", BOB, channel_id=CHANNEL)
        admin = fake.interaction("health", ALICE, channel_id=CHANNEL, permissions=ADMINISTRATOR)
        refused = await fake.wait_for_interaction_response(member["id"], timeout=5)
        allowed = await fake.wait_for_interaction_response(admin["id"], timeout=5)
    assert (refused.content, refused.flags) == ("admins only", FLAG_EPHEMERAL)
    assert (allowed.content, allowed.flags) == ("ok", 0)
    assert member["data"]["guild_id"] == str(GUILD)


async def test_late_interaction_response_is_unknown(fake: FakeDiscord) -> None:
    errors: list[BaseException] = []
    bot = AskBot()

    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        errors.append(error.__cause__ or error)

    bot.tree.on_error = on_error  # type: ignore[method-assign]
    image = fake.attachment(b"v", filename="v.png", content_type="image/png")
    fake.hold_downloads()  # the model is "slow": hold the image until the 3 s window has passed
    async with running(fake, bot):
        payload = fake.interaction(
            "ask", ALICE, channel_id=CHANNEL, options={"question": "q"}, attachments={"image": image}
        )
        await fake.wait_for_held_downloads(1, timeout=5)
        fake.expire_interaction(payload["id"])
        fake.release_downloads()
        await fake.wait_until(lambda: errors, 5, "the command's error")
    assert isinstance(errors[0], discord.NotFound) and errors[0].code == 10062
    assert fake.interaction_responses == []


# -- reconnecting -----------------------------------------------------------------------------------


async def test_dropped_connection_resumes_and_delivers_once(fake: FakeDiscord) -> None:
    bot = EchoBot()
    dm = fake.dm_channel(ALICE)
    async with running(fake, bot):
        fake.send_message(dm, ALICE, "before")
        await fake.wait_for_message(dm, timeout=5)
        fake.drop_connection(4000)
        during = fake.send_message(dm, ALICE, "during the drop")
        await fake.wait_for_resume(timeout=5)
        [reply] = await fake.wait_for_message(dm, timeout=5)
        fake.send_reconnect()  # op 7: the client closes and resumes again
        after = fake.send_message(dm, ALICE, "after op 7")
        await fake.wait_for_resume(timeout=5, count=2)
        [last] = await fake.wait_for_message(dm, timeout=5)
    assert reply.content == "echo: during the drop" and reply.reply_to == int(during["id"])
    assert last.reply_to == int(after["id"])
    assert [m.content for m in bot.seen] == ["before", "during the drop", "after op 7"]  # exactly once
    assert len(fake.identifies) == 1 and len(fake.resumes) == 2
    assert fake.resumes[0]["session_id"] == fake.resumes[1]["session_id"]
    assert fake.gateway_connections == ["/", "/resume", "/resume"] and fake.close_codes == [4000]


async def test_many_messages_across_drops_arrive_exactly_once(fake: FakeDiscord) -> None:
    bot = EchoBot()
    channels = [fake.dm_channel(user) for user in range(8000, 8010)]
    async with running(fake, bot):
        sent = []
        for i in range(60):
            if i == 20:
                fake.drop_connection(4000)
            if i == 40:
                await fake.wait_for_resume(timeout=5)  # a drop needs a live connection to drop
                fake.drop_connection(4000)
            channel = channels[i % len(channels)]
            sent.append(fake.send_message(channel, 8000 + i % len(channels), f"m{i}")["id"])
        await fake.wait_for_resume(timeout=5, count=2)
        for channel in channels:
            await fake.wait_for_message(channel, count=6, timeout=5)
    assert sorted(m.id for m in bot.seen) == sorted(int(i) for i in sent)  # none lost, none twice
    assert len(fake.sent) == 60 and len(fake.identifies) == 1


async def test_injection_from_another_thread(fake: FakeDiscord) -> None:
    dm = fake.dm_channel(ALICE)
    async with running(fake, EchoBot()):
        message = await asyncio.to_thread(fake.send_message, dm, ALICE, "from a thread")
        [reply] = await fake.wait_for_message(dm, timeout=5)
    assert reply.reply_to == int(message["id"])


async def pong(interaction: discord.Interaction) -> None:
    """Answer pong."""
    await interaction.response.send_message("pong")


async def test_events_before_connecting_are_queued(fake: FakeDiscord) -> None:
    bot = EchoBot()
    dm = fake.dm_channel(BOB)
    early = fake.send_message(dm, BOB, "sent before the bot started")
    bot.tree.add_command(app_commands.Command(name="ping", description="Pong", callback=pong))
    ping = fake.interaction("ping", BOB, channel_id=dm)  # its 3 s start when it is delivered
    async with running(fake, bot):
        [reply] = await fake.wait_for_message(dm, timeout=5)
        assert (await fake.wait_for_interaction_response(ping["id"], timeout=5)).content == "pong"
        await asyncio.wait_for(bot.ready.wait(), 5)
        joined = asyncio.ensure_future(bot.wait_for("guild_join", timeout=5))
        fake.add_guild(900, "Late guild", channels=[901])
        guild = await joined
    assert reply.reply_to == int(early["id"])
    assert guild.id == 900 and guild.get_channel(901) is not None


async def test_invalid_session_makes_the_client_identify_again(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running(fake, bot):
        fake.invalidate_session()
        await fake.wait_until_ready(timeout=5, count=2)
        fake.send_message(CHANNEL, ALICE, "still there?", mentions_bot=True)
        [reply] = await fake.wait_for_message(CHANNEL, timeout=5)
    assert reply.content == "echo: still there?" and len(fake.identifies) == 2


# -- raw HTTP -----------------------------------------------------------------------------------------


async def test_raw_http_content_type_auth_and_unknown_routes(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {fake.token}"}
        async with http.get(f"{fake.api_base}/users/@me", headers=auth) as response:
            assert response.headers["Content-Type"] == "application/json"  # exactly: no charset
            assert (await response.json())["id"] == str(fake.bot_id)
        async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as response:
            assert response.status == 401
        async with http.get(f"{fake.api_base}/guilds/1/nothing", headers=auth) as response:
            assert response.status == 404 and await response.json() == {"message": "Unknown", "code": 0}
        image = fake.attachment(b"abc", filename="a.png", content_type="image/png")
        fake.send_message(fake.dm_channel(ALICE), ALICE, "", attachments=[image])
        url = fake.messages[max(fake.messages)]["attachments"][0]["proxy_url"]
        async with http.get(url) as response:
            assert await response.read() == b"abc" and response.content_type == "image/png"
    assert fake.unknown_routes == ["GET /api/v10/guilds/1/nothing"]
    assert fake.downloads == [int(image["id"])]


async def test_env_and_patch_undo() -> None:
    import discord.gateway
    import discord.http

    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        undo = fake.patch_discord()
        patched = (discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY))
        undo()
        restored = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        assert patched == (f"http://127.0.0.1:{fake.port}/api/v10", f"ws://127.0.0.1:{fake.port}/")
        assert restored == (base, gateway)
        env = fake.env()
    assert env["DISCORD_API_BASE"] == f"http://127.0.0.1:{fake.port}/api/v10"
    assert env["DISCORD_GATEWAY_URL"] == f"ws://127.0.0.1:{fake.port}/"
    assert env["DISCORD_TOKEN"] == fake.token and "127.0.0.1" in env["NO_PROXY"]


def test_injections_are_checked() -> None:
    fake = FakeDiscord()
    fake.add_guild(GUILD, channels=[CHANNEL])
    with pytest.raises(ValueError, match="unknown channel"):
        fake.send_message(12345, ALICE, "nowhere")
    with pytest.raises(ValueError, match="another user"):
        fake.send_message(fake.dm_channel(ALICE), BOB, "not my DM")
    with pytest.raises(ValueError, match="not in guild"):
        fake.send_message(CHANNEL, ALICE, "hi", guild_id=GUILD + 1)
    with pytest.raises(ValueError, match="no message"):
        fake.send_message(CHANNEL, ALICE, "re", reference=1)
    with pytest.raises(ValueError, match="unknown privileged"):
        FakeDiscord(privileged=["everything"])
    assert fake.dispatched == []  # nothing reached the queue
