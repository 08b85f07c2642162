"""The Discord adapter: the real discord.py 2.7.1 against a loopback gateway + REST + CDN.

Every test checks the reply a user would see and the prediction-log line behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from bots import replies
from bots.core import ChatCore
from bots.discord_bot import DiscordAdapter
from bots.prediction_log import PredictionLog
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.core_builder import build_test_core
from tests.fake_discord import RESUMED, FakeDiscord
from tests.test_engine import GatedModel, in_forward, loader_with
from vqa_engine import VQAEngine
from vqa_engine.modular.package import ModelPackage, load_package

GUILD, CHANNEL = 500, 501
ALICE, BOB, ADMIN = 7001, 7002, 7003
COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is it?"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


def example(name: str) -> bytes:
    return (ROOT / "examples" / f"{name}.png").read_bytes()


@dataclass
class Bot:
    fake: FakeDiscord
    core: ChatCore
    adapter: DiscordAdapter
    log_path: Path
    stopped: bool = False

    async def finish(self) -> list[dict[str, object]]:
        """Stop the adapter, flush the log; its lines."""
        if not self.stopped:
            self.stopped = True
            async with asyncio.timeout(10):
                await self.adapter.stop()
            self.core.prediction_log.close()
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    async def reply(self, channel_id: int) -> str:
        [sent] = await self.fake.wait_for_message(channel_id, timeout=10)
        return sent.content or ""


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    message_content: bool = False,
    loader: Callable[[], ModelPackage] | None = None,
    defer_after_s: float = 2.0,
) -> AsyncIterator[Bot]:
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(30):
            fake = await FakeDiscord().start()
            stack.push_async_callback(fake.stop)
            fake.add_guild(GUILD, "Shapes", channels=[(CHANNEL, "general")])
            for user, name in ((ALICE, "alice"), (BOB, "bob"), (ADMIN, "admin")):
                fake.add_user(user, name)
            engine = VQAEngine(loader or (lambda: load_package(BUNDLED_MODEL)))
            await engine.start()
            stack.push_async_callback(engine.close)
            log_path = tmp_path / "predictions.jsonl"
            adapters: list[DiscordAdapter] = []
            core = build_test_core(
                engine,
                PredictionLog(log_path, salt="test-salt"),
                admin_ids=f"discord:{ADMIN}",
                platforms=lambda: ["discord"] if adapters and adapters[0].connected else [],
            )
            adapter = DiscordAdapter(
                core,
                token=fake.token,
                message_content=message_content,
                guild_ready_timeout=0.05,
                defer_after_s=defer_after_s,
                api_base=fake.api_base,
                gateway_url=fake.gateway_url,
            )
            adapters.append(adapter)
            bot = Bot(fake, core, adapter, log_path)
            stack.push_async_callback(bot.finish)
            await adapter.start()
        yield bot


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(tmp_path) as started:
        yield started


async def test_an_image_in_a_dm_is_answered(bot: Bot) -> None:
    fake = bot.fake
    dm = fake.dm_channel(ALICE)
    message = fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("blue_circle"))])
    [sent] = await fake.wait_for_message(dm)
    entries = await bot.finish()
    assert sent.content is not None and sent.content.startswith("blue — ")
    assert sent.reply_to == int(message["id"])
    assert dm not in fake.typing  # a quick answer: no "typing…"
    assert [(e["platform"], e["chat_type"], e["answer"], e["outcome"]) for e in entries] == [
        ("discord", "dm", "blue", "answered")
    ]


async def test_in_a_guild_only_mentions_are_answered(bot: Bot) -> None:
    fake = bot.fake
    fake.send_message(CHANNEL, BOB, COLOR_Q, attachments=[fake.attachment(example("red_triangle"))])
    fake.send_message(
        CHANNEL, ALICE, COLOR_Q, mentions_bot=True, attachments=[fake.attachment(example("green_rectangle"))]
    )
    answer = await bot.reply(CHANNEL)
    entries = await bot.finish()
    assert answer.startswith("green — ")
    assert len(fake.messages_to(CHANNEL)) == 1  # Bob's unaddressed photo: no reply
    assert len(fake.downloads) == 1
    assert [(e["chat_type"], e["answer"]) for e in entries] == [("guild", "green")]


async def test_a_reply_to_an_image_mentioning_the_bot_with_the_content_intent(tmp_path: Path) -> None:
    async with running_bot(tmp_path, message_content=True) as bot:
        fake = bot.fake
        photo = fake.send_message(
            CHANNEL, BOB, "look", attachments=[fake.attachment(example("yellow_circle"))]
        )
        fake.send_message(CHANNEL, ALICE, SHAPE_Q, mentions_bot=True, reference=int(photo["id"]))
        answer = await bot.reply(CHANNEL)
        entries = await bot.finish()
    assert answer.startswith("circle — ")
    assert [(e["question"], e["answer"]) for e in entries] == [(SHAPE_Q, "circle")]
    assert len(fake.messages_to(CHANNEL)) == 1  # with the intent, Bob's photo alone is still ignored


async def test_a_reply_to_an_image_without_the_content_intent_says_why(bot: Bot) -> None:
    fake = bot.fake
    photo = fake.send_message(CHANNEL, BOB, "look", attachments=[fake.attachment(example("yellow_circle"))])
    fake.send_message(CHANNEL, ALICE, SHAPE_Q, mentions_bot=True, reference=int(photo["id"]))
    answer = await bot.reply(CHANNEL)
    await bot.finish()
    assert answer == replies.HIDDEN_IMAGE
    assert fake.downloads == []


async def test_follow_up_questions_about_the_last_image(bot: Bot) -> None:
    fake = bot.fake
    dm = fake.dm_channel(ALICE)
    fake.send_message(dm, ALICE, "", attachments=[fake.attachment(example("red_triangle"))])
    prompt = await bot.reply(dm)
    fake.send_message(dm, ALICE, COLOR_Q)
    colour = await bot.reply(dm)
    fake.send_message(dm, ALICE, SHAPE_Q)
    shape = await bot.reply(dm)
    await bot.finish()
    assert prompt == replies.ASK_WHAT
    assert colour.startswith("red — ")
    assert shape.startswith("triangle — ")


@pytest.mark.parametrize("where", ["dm", "guild"])
async def test_a_pdf_and_a_30_mb_file_are_refused_unread(bot: Bot, where: str) -> None:
    fake = bot.fake
    channel = fake.dm_channel(ALICE) if where == "dm" else CHANNEL
    mention = where == "guild"
    pdf = fake.attachment(PDF, filename="scan.pdf", content_type="application/pdf")
    fake.send_message(channel, ALICE, COLOR_Q, attachments=[pdf], mentions_bot=mention)
    refused_pdf = await bot.reply(channel)
    huge = fake.attachment(b"\xff\xd8", filename="huge.jpg", content_type="image/jpeg", size=30 * 2**20)
    fake.send_message(channel, ALICE, COLOR_Q, attachments=[huge], mentions_bot=mention)
    refused_huge = await bot.reply(channel)
    entries = await bot.finish()
    assert refused_pdf == (
        "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image."
    )
    assert refused_huge == "That image is larger than 20.0 MB (30.0 MB); please send a smaller one."
    assert fake.downloads == []
    assert [(e["chat_type"], e["outcome"]) for e in entries] == [
        (where, "rejected:not_image"),
        (where, "rejected:too_large"),
    ]


@pytest.mark.parametrize("where", ["dm", "guild"])
async def test_the_ask_slash_command(bot: Bot, where: str) -> None:
    fake = bot.fake
    channel = fake.dm_channel(ALICE) if where == "dm" else CHANNEL
    interaction = fake.interaction(
        "ask",
        ALICE,
        channel_id=channel,
        options={"question": COLOR_Q},
        attachments={"image": fake.attachment(example("blue_circle"))},
    )
    response = await fake.wait_for_interaction_response(interaction["id"])
    entries = await bot.finish()
    assert response.type == 4
    assert response.content is not None and response.content.startswith("blue — ")
    assert [(e["chat_type"], e["question"], e["answer"], e["outcome"]) for e in entries] == [
        (where, COLOR_Q, "blue", "answered")
    ]


async def test_health_and_stats_are_for_admins_only(bot: Bot) -> None:
    fake = bot.fake
    refused = fake.interaction("health", BOB, channel_id=CHANNEL)
    health = fake.interaction("health", ADMIN, channel_id=CHANNEL)
    stats = fake.interaction("stats", ADMIN, channel_id=CHANNEL)
    refused_response = await fake.wait_for_interaction_response(refused["id"])
    health_response = await fake.wait_for_interaction_response(health["id"])
    stats_response = await fake.wait_for_interaction_response(stats["id"])
    await bot.finish()
    assert (refused_response.content, refused_response.ephemeral) == (replies.NOT_ADMIN, True)
    assert health_response.ephemeral and (health_response.content or "").startswith("OK — up")
    assert "platforms: discord" in (health_response.content or "")
    assert stats_response.ephemeral and "chat requests since start-up:" in (stats_response.content or "")


async def test_the_gateway_dropping_mid_conversation(bot: Bot) -> None:
    fake = bot.fake
    dm = fake.dm_channel(ALICE)
    fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("green_rectangle"))])
    first = await bot.reply(dm)
    fake.drop_connection(4000)
    fake.send_message(dm, ALICE, SHAPE_Q)  # while disconnected: replayed on RESUME
    await fake.wait_for_calls(RESUMED)  # the missed events replayed
    second = await bot.reply(dm)
    entries = await bot.finish()
    assert first.startswith("green — ")
    assert second.startswith("rectangle — ")
    assert len(fake.messages_to(dm)) == 2  # answered once
    assert [e["question"] for e in entries] == [COLOR_Q, SHAPE_Q]


async def test_a_slow_answer_is_deferred_then_followed_up(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with running_bot(tmp_path, loader=loader_with(GatedModel, holder), defer_after_s=0.1) as bot:
        fake, model = bot.fake, holder[0]
        model.close_gate()  # the model is slow today
        interaction = fake.interaction(
            "ask",
            ALICE,
            channel_id=CHANNEL,
            options={"question": COLOR_Q},
            attachments={"image": fake.attachment(example("yellow_circle"))},
        )
        first = await fake.wait_for_interaction_response(interaction["id"])
        await in_forward(model)
        model.gate.set()
        [followup] = await fake.wait_for_followup(interaction["id"])
        await bot.finish()
    assert first.type == 5  # "thinking…" within Discord's 3 s
    assert (followup.content or "").startswith("yellow — ")


async def test_replies_fit_discords_2000_characters(bot: Bot) -> None:
    fake = bot.fake
    dm = fake.dm_channel(ALICE)
    question = "what color is the shape " + "really " * 60
    fake.send_message(dm, ALICE, question, attachments=[fake.attachment(b"not an image at all " * 200)])
    reply = await bot.reply(dm)
    await bot.finish()
    assert 0 < len(reply) <= 2000
    assert reply.startswith("That file is a text file, not an image I can read")


async def test_slash_commands_are_registered_only_when_they_changed(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        fake = bot.fake
        await bot.finish()
        first = len(fake.calls_of("PUT /applications/{app_id}/commands"))
        at_fake = functools.partial(
            DiscordAdapter,
            bot.core,
            token=fake.token,
            guild_ready_timeout=0.05,
            api_base=fake.api_base,
            gateway_url=fake.gateway_url,
        )
        again = at_fake()
        await again.start()  # a restart with the same commands
        await again.stop()
        forced = at_fake(sync_commands=True)
        await forced.start()
        await forced.stop()
    puts = fake.calls_of("PUT /applications/{app_id}/commands")
    assert first == 1  # the first start registered them
    assert len(puts) == 2  # the restart only compared (GET); DISCORD_SYNC_COMMANDS=true registered again
    assert len(fake.calls_of("GET /applications/{app_id}/commands")) == 2


async def test_an_answer_has_a_chart_button_and_feedback_buttons(bot: Bot) -> None:
    fake = bot.fake
    dm = fake.dm_channel(ALICE)
    fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("blue_circle"))])
    [answer] = await fake.wait_for_message(dm)
    [row] = answer.payload["components"]
    buttons = row["components"]
    assert [b["label"] for b in buttons] == ["📊 Chart", "👍", "👎"]
    chart_id, good_id, _ = (b["custom_id"] for b in buttons)

    chart_click = fake.click(dm, ALICE, answer.id, chart_id)
    chart = await fake.wait_for_interaction_response(chart_click["id"])
    vote = fake.click(dm, ALICE, answer.id, good_id)
    thanks = await fake.wait_for_interaction_response(vote["id"])
    entries = await bot.finish()
    assert chart.type == 4 and chart.content == f"Top answers for “{COLOR_Q}”"
    [png] = chart.files
    with Image.open(io.BytesIO(png.data)) as picture:
        assert picture.format == "PNG"
    assert (thanks.content, thanks.ephemeral) == ("Thanks for the 👍!", True)
    assert [(e["outcome"], e.get("feedback")) for e in entries] == [("answered", None), ("feedback", "good")]


async def test_about_describes_the_model(bot: Bot) -> None:
    fake = bot.fake
    interaction = fake.interaction("about", ALICE, channel_id=CHANNEL)
    response = await fake.wait_for_interaction_response(interaction["id"])
    await bot.finish()
    assert response.content is not None and response.content.startswith("About the model: easy-vqa-film")
    assert "Trained on pictures of one coloured shape on a plain background" in response.content
