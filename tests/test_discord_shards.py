"""Discord shards (``DISCORD_SHARD_COUNT``, ``DISCORD_SHARD_IDS``): the real discord.py
``AutoShardedClient`` against the loopback gateway, which records every IDENTIFY and routes each
event to its guild's shard as Discord does."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from bots.discord_bot import DiscordAdapter
from bots.prediction_log import PredictionLog
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.core_builder import build_test_core
from tests.fake_discord import IDENTIFY, FakeDiscord
from tests.web_fixture import child_env, start_child
from vqa_engine import VQAEngine
from vqa_engine.modular.package import load_package

ALICE, ADMIN = 7001, 7003
#: a shard's heartbeat latency as /health shows it
LATENCY = r"(\d+ ms|no heartbeat yet)"
COLOR_Q = "what color is the shape?"
#: Discord puts a guild on shard (id >> 22) % count: with 2 shards, these are on 0 and on 1
GUILD_ON_0, CHANNEL_ON_0 = 500, 501
GUILD_ON_1, CHANNEL_ON_1 = 1 << 22, (1 << 22) + 1


@contextlib.asynccontextmanager
async def sharded_bot(
    tmp_path: Path,
    *,
    shard_count: int | Literal["auto"],
    shard_ids: list[int] | None = None,
    recommended: int = 1,
) -> AsyncIterator[tuple[FakeDiscord, DiscordAdapter]]:
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(30):
            fake = await FakeDiscord().start()
            stack.push_async_callback(fake.stop)
            fake.recommended_shards = recommended
            fake.add_guild(GUILD_ON_0, "Zero", channels=[CHANNEL_ON_0])
            fake.add_guild(GUILD_ON_1, "One", channels=[CHANNEL_ON_1])
            fake.add_user(ALICE, "alice")
            fake.add_user(ADMIN, "admin")
            engine = VQAEngine(lambda: load_package(BUNDLED_MODEL))
            await engine.start()
            stack.push_async_callback(engine.close)
            adapters: list[DiscordAdapter] = []
            core = build_test_core(
                engine,
                stack.enter_context(PredictionLog(tmp_path / "p.jsonl", salt="s")),
                admin_ids=f"discord:{ADMIN}",
                platforms=lambda: ["discord"] if adapters[0].connected else [],
                health=lambda: adapters[0].health(),
            )
            adapter = DiscordAdapter(
                core,
                token=fake.token,
                guild_ready_timeout=0.05,
                shard_count=shard_count,
                shard_ids=shard_ids,
                identify_delay_s=0,  # (the loopback gateway has no IDENTIFY rate limit)
                api_base=fake.api_base,
                gateway_url=fake.gateway_url,
            )
            adapters.append(adapter)
            await adapter.start()
            stack.push_async_callback(adapter.stop)
        yield fake, adapter


def example(name: str) -> bytes:
    return (ROOT / "examples" / f"{name}.png").read_bytes()


def identified_shards(fake: FakeDiscord) -> list[list[int]]:
    return sorted(call.params["shard"] for call in fake.calls_of(IDENTIFY))


async def test_two_shards_in_one_process_identify_as_such_and_answer_each_guild(tmp_path: Path) -> None:
    async with sharded_bot(tmp_path, shard_count=2) as (fake, _):
        fake.send_message(
            CHANNEL_ON_1,
            ALICE,
            COLOR_Q,
            mentions_bot=True,
            attachments=[fake.attachment(example("blue_circle"))],
        )
        [on_1] = await fake.wait_for_message(CHANNEL_ON_1)
        fake.send_message(
            CHANNEL_ON_0,
            ALICE,
            COLOR_Q,
            mentions_bot=True,
            attachments=[fake.attachment(example("red_triangle"))],
        )
        [on_0] = await fake.wait_for_message(CHANNEL_ON_0)
        health = fake.interaction("health", ADMIN, channel_id=fake.dm_channel(ADMIN))
        response = await fake.wait_for_interaction_response(health["id"])
    assert identified_shards(fake) == [[0, 2], [1, 2]]
    assert fake.calls_of("GET /gateway/bot") == []  # the count was given: nothing to ask
    assert (on_1.content or "").startswith("blue — ") and (on_0.content or "").startswith("red — ")
    text = response.content or ""
    assert re.search(rf"^discord shards \(of 2\): 0 {LATENCY}, 1 {LATENCY}$", text, re.MULTILINE), text
    assert text.startswith("OK")


async def test_auto_runs_as_many_shards_as_discord_recommends(tmp_path: Path) -> None:
    async with sharded_bot(tmp_path, shard_count="auto", recommended=2) as (fake, adapter):
        shards = adapter.health()
    assert len(fake.calls_of("GET /gateway/bot")) == 1
    assert identified_shards(fake) == [[0, 2], [1, 2]]
    assert re.fullmatch(rf"discord shards \(of 2\): 0 {LATENCY}, 1 {LATENCY}", shards[0]), shards


async def test_a_process_runs_only_its_shard_ids(tmp_path: Path) -> None:
    async with sharded_bot(tmp_path, shard_count=2, shard_ids=[1]) as (fake, adapter):
        fake.send_message(
            CHANNEL_ON_1,
            ALICE,
            COLOR_Q,
            mentions_bot=True,
            attachments=[fake.attachment(example("green_rectangle"))],
        )
        [answer] = await fake.wait_for_message(CHANNEL_ON_1)
        lines = adapter.health()
    assert identified_shards(fake) == [[1, 2]]  # shard 0 is another process's
    assert (answer.content or "").startswith("green — ")
    assert re.fullmatch(rf"discord shards \(of 2\): 1 {LATENCY}", lines[0]), lines


async def test_main_runs_the_shards_its_settings_name(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD_ON_1, "One", channels=[CHANNEL_ON_1])
        fake.add_user(ALICE, "alice")
        env = child_env(tmp_path, DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="1") | fake.env()
        child = await start_child("python", str(ROOT / "main.py"), env=env)
        try:
            connected = await child.read_until("discord: connected as", timeout=120)
            fake.send_message(
                CHANNEL_ON_1,
                ALICE,
                COLOR_Q,
                mentions_bot=True,
                attachments=[fake.attachment(example("blue_circle"))],
            )
            [answer] = await fake.wait_for_message(CHANNEL_ON_1, timeout=30)
        finally:
            code, err = await child.stop()
    assert code == 0, err
    assert connected.rstrip().endswith("(shards 1 of 2)")
    assert identified_shards(fake) == [[1, 2]]
    assert (answer.content or "").startswith("blue — ")
    assert fake.token not in err
