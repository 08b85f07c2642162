"""The platforms push back: every question still ends in exactly one message to its user.

Each fault is injected into the loopback fakes and the real client libraries meet it: Telegram's
429 with ``retry_after``, a question deleted before its answer, ``getUpdates`` answering 502, a
file download failing with 500, an apology that cannot be sent either; Discord's 5xx on a
message, an interaction whose token expired. Each test checks what the user received.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_discord import CREATE_MESSAGE
from tests.loopback import DOWNLOAD
from tests.test_discord import ALICE, CHANNEL
from tests.test_discord import running_bot as running_discord
from tests.test_engine import GatedModel, in_forward, loader_with
from tests.test_telegram import COLOR_Q, USER, Bot, answer_text, example, running_bot


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(tmp_path) as started:
        yield started


# -- Telegram ---------------------------------------------------------------------------------


async def test_a_429_on_the_answers_is_retried_after_retry_after(bot: Bot) -> None:
    fake = bot.fake
    users = [USER + n for n in range(5)]
    fake.fail_next("sendMessage", status=429, retry_after=1, times=5)
    for user in users:
        fake.send_photo(user, user, example("blue_circle"), caption=COLOR_Q)
    answers = [await bot.reply(user) for user in users]
    entries = await bot.finish()
    assert [a.text for a in answers] == [answer_text(e) for e in entries]  # all five got theirs
    assert all(len(fake.replies(user)) == 1 for user in users)  # exactly once each
    assert [c.status for c in fake.calls_of("sendMessage")].count(429) == 5


async def test_an_answer_whose_question_was_deleted_goes_out_without_the_quote(bot: Bot) -> None:
    fake = bot.fake
    fake.fail_next("sendMessage", status=400, message="Bad Request: message to be replied not found")
    fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text == answer_text(entry) and entry["answer"] == "red"
    assert reply.reply_to_message_id is None
    assert fake.replies(USER) == [reply]


async def test_questions_sent_while_get_updates_fails_are_answered_after(bot: Bot) -> None:
    fake = bot.fake
    fake.fail_next("getUpdates", status=502, times=2)
    fake.send_photo(USER, USER, example("green_rectangle"), caption=COLOR_Q)
    reply = await bot.reply(USER)
    await bot.finish()
    assert reply.text is not None and reply.text.startswith("green — ")
    assert [c.status for c in fake.calls_of("getUpdates")][:2] == [502, 502]


async def test_a_download_that_fails_with_500_is_retried(bot: Bot) -> None:
    fake = bot.fake
    fake.fail_next("getFile", status=500)
    fake.send_photo(USER, USER, example("yellow_circle"), caption=COLOR_Q)
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text == answer_text(entry) and entry["answer"] == "yellow"
    assert [c.status for c in fake.calls_of("getFile")] == [500, 200]


async def test_an_answer_that_meets_a_5xx_is_sent_again_once(bot: Bot) -> None:
    fake = bot.fake
    fake.fail_next("sendMessage", status=500)
    fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    reply = await bot.reply(USER)
    [entry] = await bot.finish()
    assert reply.text == answer_text(entry)
    assert fake.replies(USER) == [reply]
    assert [c.status for c in fake.calls_of("sendMessage")] == [500, 200]


async def test_an_apology_that_cannot_be_sent_does_not_break_the_bot(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    fake = bot.fake
    fake.fail_next("sendMessage", status=400, message="Bad Request: chat not found", times=2)
    fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
    await fake.wait_for_calls("sendMessage", count=2)  # the answer, then the apology: both refused
    fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
    reply = await bot.reply(USER)  # the next question is answered as usual
    await bot.finish()
    assert reply.text is not None and reply.text.startswith("red — ")
    assert "telegram: could not send the apology either" in caplog.text


# -- Discord ----------------------------------------------------------------------------------


async def test_a_discord_5xx_on_the_answer_is_retried(tmp_path: Path) -> None:
    async with running_discord(tmp_path) as bot:
        fake = bot.fake
        fake.fail_next(CREATE_MESSAGE, status=502)  # discord.py retries it itself, after 1 s
        dm = fake.dm_channel(ALICE)
        fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("blue_circle"))])
        answer = await bot.reply(dm)
        await bot.finish()
    assert answer.startswith("blue — ")
    assert len(fake.messages_to(dm)) == 1


async def test_a_discord_attachment_download_that_fails_with_500_is_retried(tmp_path: Path) -> None:
    async with running_discord(tmp_path) as bot:
        fake = bot.fake
        fake.fail_next(DOWNLOAD, status=500)
        dm = fake.dm_channel(ALICE)
        fake.send_message(dm, ALICE, COLOR_Q, attachments=[fake.attachment(example("green_rectangle"))])
        answer = await bot.reply(dm)
        await bot.finish()
    assert answer.startswith("green — ")
    assert [c.status for c in fake.calls_of(DOWNLOAD)] == [500, 200]


async def test_an_expired_interaction_is_answered_in_its_channel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots.discord_bot")
    holder: list[GatedModel] = []
    loader = loader_with(GatedModel, holder)
    async with running_discord(tmp_path, loader=loader, defer_after_s=0.05) as bot:
        fake, model = bot.fake, holder[0]
        model.close_gate()  # an answer slower than the interaction's 15 minutes
        interaction = fake.interaction(
            "ask",
            ALICE,
            channel_id=CHANNEL,
            options={"question": COLOR_Q},
            attachments={"image": fake.attachment(example("yellow_circle"))},
        )
        deferred = await fake.wait_for_interaction_response(interaction["id"])
        await in_forward(model)
        fake.expire_interaction(interaction["id"], token=True)
        model.gate.set()
        [message] = await fake.wait_for_message(CHANNEL)
        await bot.finish()
    assert deferred.type == 5
    assert (message.content or "").startswith(f"<@{ALICE}> yellow — ")
    assert "the interaction expired" in caplog.text
