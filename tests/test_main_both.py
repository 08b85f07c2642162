"""``python main.py`` with both DISCORD_TOKEN and TELEGRAM_TOKEN: two bots, one process, one engine."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.test_telegram import TOKEN, child_env, example, read_until, start_child

GUILD, CHANNEL = 500, 501
ALICE = 7001
TELEGRAM_USER = 42
COLOR_Q = "what color is the shape?"


async def test_both_bots_answer_together_then_exit_0_on_sigterm(tmp_path: Path) -> None:
    async with FakeTelegram(TOKEN) as telegram, FakeDiscord() as discord_fake:
        discord_fake.add_guild(GUILD, "Shapes", channels=[(CHANNEL, "general")])
        discord_fake.add_user(ALICE, "alice")
        env = child_env(telegram, tmp_path) | discord_fake.env()
        child = await start_child(env)
        try:
            assert child.stderr is not None
            stderr: list[str] = []
            await read_until(child.stderr, "serving on telegram, discord", stderr, 90)
            # two questions arriving together, one per platform
            dm = discord_fake.dm_channel(ALICE)
            discord_fake.send_message(
                dm, ALICE, COLOR_Q, attachments=[discord_fake.attachment(example("green_rectangle"))]
            )
            telegram.send_photo(TELEGRAM_USER, TELEGRAM_USER, example("blue_circle"), caption=COLOR_Q)
            [discord_reply] = await discord_fake.wait_for_message(dm, timeout=30)
            [telegram_reply] = await telegram.wait_for_reply(TELEGRAM_USER, timeout=30)
            child.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                out, rest = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    err = "".join(stderr) + rest.decode(errors="replace")
    assert child.returncode == 0, err
    assert (discord_reply.content or "").startswith("green — ")
    assert (telegram_reply.text or "").startswith("blue — ")
    assert "telegram: stopped" in err and "discord: stopped" in err
    assert "voice will NOT be supported" not in err  # we never join voice channels: no noise about it
    for secret in (TOKEN, discord_fake.token):
        assert secret not in err and secret not in out.decode(errors="replace")
    entries = [json.loads(line) for line in (tmp_path / "child.jsonl").read_text().splitlines()]
    assert sorted((e["platform"], e["answer"]) for e in entries) == [
        ("discord", "green"),
        ("telegram", "blue"),
    ]


async def test_a_platform_that_cannot_log_in_does_not_stop_the_other(tmp_path: Path) -> None:
    async with FakeTelegram(TOKEN) as telegram, FakeDiscord() as discord_fake:
        env = child_env(telegram, tmp_path) | discord_fake.env() | {"DISCORD_TOKEN": "rejected-token-123"}
        child = await start_child(env)
        try:
            assert child.stderr is not None
            stderr: list[str] = []
            await read_until(child.stderr, "serving on telegram", stderr, 90)
            telegram.send_photo(TELEGRAM_USER, TELEGRAM_USER, example("red_triangle"), caption=COLOR_Q)
            [reply] = await telegram.wait_for_reply(TELEGRAM_USER, timeout=30)
            child.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                _, rest = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    err = "".join(stderr) + rest.decode(errors="replace")
    assert child.returncode == 0, err
    assert (reply.text or "").startswith("red — ")
    assert "discord could not start: Improper token has been passed." in err
    assert "rejected-token-123" not in err
