"""Conversations about one image: a model that writes answers reads the earlier questions and
answers about the chat's last image before a follow-up; classifiers answer each question alone.

A tiny vision-language model (``tests/tiny_models.py``) runs behind the real engine and the
service's chat core; what the model reads is taken from the processor's own
``apply_chat_template`` call. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots import replies
from bots.conversation import ConversationBounds
from bots.core import ChatCore
from bots.events import Command, Outcome
from bots.prediction_log import PredictionLog
from tests.conftest import BUNDLED_MODEL
from tests.core_builder import build_test_core
from tests.redis_server import RedisServer
from tests.test_core import Downloads, event, example
from tests.test_redis_state import Photos, keys_and_ttls, message, settings_for, two_processes
from tests.tiny_models import save_tiny_smolvlm
from vqa_engine import VQAEngine
from vqa_engine.backends.folder import open_folder
from vqa_engine.backends.vision_language import VisionLanguageBackend
from vqa_engine.modular.package import load_package

FIRST = "what color is the shape?"
SECOND = "is there a red circle?"
THIRD = "what is the shape in the image?"
FOURTH = "how many cats are there in the image?"

Chat = list[dict[str, Any]]


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> VisionLanguageBackend:
    backend = open_folder(save_tiny_smolvlm(tmp_path_factory.mktemp("vlm") / "smolvlm"))
    assert isinstance(backend, VisionLanguageBackend)
    return backend


@pytest.fixture
def prompts(vlm: VisionLanguageBackend, monkeypatch: pytest.MonkeyPatch) -> list[Chat]:
    """Every conversation the processor is given, in order."""
    seen: list[Chat] = []
    original = vlm.processor.apply_chat_template

    def recording(conversations: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(conversations, list) and conversations and isinstance(conversations[0], list):
            seen.extend(conversations)
        return original(conversations, *args, **kwargs)

    monkeypatch.setattr(vlm.processor, "apply_chat_template", recording)
    return seen


@pytest.fixture
async def engine(vlm: VisionLanguageBackend) -> AsyncIterator[VQAEngine]:
    async with VQAEngine(lambda: vlm) as engine:
        yield engine


def make_core(engine: VQAEngine, tmp_path: Path, **settings: object) -> ChatCore:
    log = PredictionLog(tmp_path / "predictions.jsonl", salt="test-salt")
    return build_test_core(engine, log, platforms=tuple, health=tuple, **settings)


def turns(chat: Chat) -> list[tuple[str, str, bool]]:
    """(role, text, holds the image) of each turn after the system turn."""
    out = []
    for turn in chat:
        if turn["role"] == "system":
            continue
        texts = [part["text"] for part in turn["content"] if part["type"] == "text"]
        image = any(part["type"] == "image" for part in turn["content"])
        out.append((turn["role"], texts[-1].split("\n")[-1], image))
    return out


async def answer_of(core: ChatCore, *args: Any, **kwargs: Any) -> str:
    reply = await core.handle(event(*args, **kwargs))
    assert reply is not None and reply.outcome is Outcome.ANSWERED, reply
    return reply.predictions[0].answer


def last_asked(prompts: list[Chat], question: str) -> list[tuple[str, str, bool]]:
    chat = next(c for c in reversed(prompts) if turns(c)[-1][1] == question)
    return turns(chat)


# -- the bounds ---------------------------------------------------------------------------------


def test_the_oldest_turns_go_first_to_fit_the_count_and_the_characters() -> None:
    history = (("q1", "a1"), ("q2", "a2"))
    assert ConversationBounds(turns=2, chars=100).after(history, ("q3", "a3")) == (("q2", "a2"), ("q3", "a3"))
    assert ConversationBounds(turns=4, chars=8).after(history, ("q3", "a3")) == (("q2", "a2"), ("q3", "a3"))
    assert ConversationBounds(turns=4, chars=3).after(history, ("q3", "a3")) == ()
    assert not ConversationBounds(turns=0).enabled
    with pytest.raises(ValueError, match="negative"):
        ConversationBounds(turns=-1)


# -- through the core and the engine ------------------------------------------------------------


async def test_a_follow_up_reads_the_earlier_questions_and_answers(
    engine: VQAEngine, prompts: list[Chat], tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(red=example("red_triangle"))
    first = await answer_of(core, downloads, FIRST, downloads.ref("red"))
    second = await answer_of(core, downloads, SECOND)
    third = await answer_of(core, downloads, THIRD)
    assert first and second  # the tiny model writes something for these questions
    assert last_asked(prompts, FIRST) == [("user", FIRST, True)]
    assert last_asked(prompts, SECOND) == [
        ("user", FIRST, True),  # the image in the first user turn only
        ("assistant", first, False),
        ("user", SECOND, False),
    ]
    assert last_asked(prompts, THIRD) == [
        ("user", FIRST, True),
        ("assistant", first, False),
        ("user", SECOND, False),
        ("assistant", second, False),
        ("user", THIRD, False),
    ]
    assert await core.memory.history(("telegram", "1000", "42")) == (
        (FIRST, first),
        (SECOND, second),
        (THIRD, third),
    )


async def test_only_the_latest_turns_are_kept(engine: VQAEngine, prompts: list[Chat], tmp_path: Path) -> None:
    core = make_core(engine, tmp_path, conversation_turns=2)
    downloads = Downloads(red=example("red_triangle"))
    await answer_of(core, downloads, FIRST, downloads.ref("red"))
    second = await answer_of(core, downloads, SECOND)
    third = await answer_of(core, downloads, THIRD)
    await answer_of(core, downloads, FOURTH)
    assert last_asked(prompts, FOURTH) == [
        ("user", SECOND, True),  # the first turn dropped: the image moves to the oldest kept
        ("assistant", second, False),
        ("user", THIRD, False),
        ("assistant", third, False),
        ("user", FOURTH, False),
    ]


async def test_new_and_a_new_image_start_afresh(
    engine: VQAEngine, prompts: list[Chat], tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(red=example("red_triangle"), blue=example("blue_circle"))
    await answer_of(core, downloads, FIRST, downloads.ref("red"))
    fresh = await core.handle(event(downloads, "", command=Command.NEW))
    after_new = await core.handle(event(downloads, SECOND))
    assert fresh is not None and (fresh.text, fresh.outcome) == (
        replies.NEW_CONVERSATION,
        Outcome.NEW_CONVERSATION,
    )
    assert after_new is not None and after_new.outcome is Outcome.NO_IMAGE
    await answer_of(core, downloads, FIRST, downloads.ref("red"))
    await answer_of(core, downloads, THIRD, downloads.ref("blue"))  # a new image
    await answer_of(core, downloads, FOURTH)
    assert last_asked(prompts, THIRD) == [("user", THIRD, True)]
    assert [role for role, _, _ in last_asked(prompts, FOURTH)] == ["user", "assistant", "user"]
    assert last_asked(prompts, FOURTH)[0] == ("user", THIRD, True)


async def test_turned_off_a_follow_up_is_asked_alone(
    engine: VQAEngine, prompts: list[Chat], tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path, conversation_turns=0)
    downloads = Downloads(red=example("red_triangle"))
    await answer_of(core, downloads, FIRST, downloads.ref("red"))
    await answer_of(core, downloads, SECOND)
    assert last_asked(prompts, SECOND) == [("user", SECOND, True)]


async def test_a_follow_up_is_not_answered_from_the_bare_questions_cache_entry(
    engine: VQAEngine, prompts: list[Chat]
) -> None:
    image = example("red_triangle")
    await engine.answer(image, SECOND)
    await engine.answer(image, SECOND)  # the bare question again: from the cache
    hits = engine.stats().cache_hits
    await engine.answer(image, SECOND, history=((FIRST, "red"),))
    assert engine.stats().cache_hits == hits
    assert [len(turns(c)) for c in prompts if turns(c)[-1][1] == SECOND] == [1, 3]
    await engine.answer(image, SECOND, history=((FIRST, "red"),))  # the same follow-up: cached
    assert engine.stats().cache_hits == hits + 1


async def test_the_bundled_classifier_is_never_given_earlier_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        given: list[object] = []
        answer = engine.answer

        async def spy(*args: Any, **kwargs: Any) -> Any:
            given.append(kwargs.get("history", ()))
            return await answer(*args, **kwargs)

        monkeypatch.setattr(engine, "answer", spy)
        core = make_core(engine, tmp_path)
        downloads = Downloads(green=example("green_rectangle"))
        await answer_of(core, downloads, FIRST, downloads.ref("green"))
        await answer_of(core, downloads, "what shape is it?")
        assert given == [(), ()]
        assert await core.memory.history(("telegram", "1000", "42")) == ()


# -- in Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_redis_keeps_the_turns_for_the_other_process(
    redis_server: RedisServer, engine: VQAEngine, prompts: list[Chat], tmp_path: Path
) -> None:
    photos = Photos()
    async with two_processes(settings_for(redis_server, tmp_path), engine, tmp_path) as (a, b):
        first = await a.core.handle(message(photos, FIRST, image="red_triangle"))
        second = await b.core.handle(message(photos, SECOND))
        ttls = await keys_and_ttls(redis_server.url)
        kept = await a.core.memory.history(("telegram", "42", "42"))
        await b.core.handle(message(photos, "", image="blue_circle"))  # a new image: afresh
        afresh = await a.core.memory.history(("telegram", "42", "42"))
    assert first is not None and second is not None
    assert second.outcome is Outcome.ANSWERED
    answer = first.predictions[0].answer
    assert last_asked(prompts, SECOND) == [
        ("user", FIRST, True),
        ("assistant", answer, False),
        ("user", SECOND, False),
    ]
    assert kept == ((FIRST, answer), (SECOND, second.predictions[0].answer))
    assert 590 <= ttls["vqa:turns:telegram:42:42"] <= 600  # as long as the image (FOLLOW_UP_MINUTES)
    assert afresh == ()


def test_new_is_in_every_command_menu() -> None:
    from bots.discord_bot.commands import PLAIN_COMMANDS
    from bots.telegram_bot import _COMMANDS, COMMANDS

    assert PLAIN_COMMANDS["new"] is _COMMANDS["new"] is Command.NEW
    assert "new" in {command.command for command in COMMANDS}
    assert "new" in replies.COMMANDS["discord"]
