"""The platform-free chat core, with the real engine and bundled model behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bots import replies
from bots.core import ChatCore, extract_question
from bots.memory import ImageMemory
from bots.prediction_log import PredictionLog
from bots.ratelimit import UserLimiter
from bots.requests import ChatRequest, ImageRef
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.test_engine import GatedModel, in_forward, loader_with
from vqa_engine import Candidate, Prediction, VQAEngine
from vqa_engine.package import load_package

EXAMPLES = ROOT / "examples"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


class Fetcher:
    """An image 'on the platform': counts downloads, so tests can prove one never happened."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.downloads = 0

    async def __call__(self) -> bytes:
        self.downloads += 1
        return self.data


def request(
    data: bytes | Fetcher,
    question: str = "what color is the shape?",
    *,
    user: str = "42",
    platform: str = "telegram",
    size: int | None = None,
    mime: str | None = None,
) -> ChatRequest:
    fetch = data if isinstance(data, Fetcher) else Fetcher(data)
    image = ImageRef(fetch=fetch, size=size, mime_type=mime)
    return ChatRequest(platform, user, "1000", "private", question, image)  # type: ignore[arg-type]


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.png").read_bytes()


def log_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def engine() -> AsyncIterator[VQAEngine]:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        yield engine


def make_core(engine: VQAEngine, tmp_path: Path, **kwargs: object) -> ChatCore:
    return ChatCore(
        engine,
        limiter=kwargs.pop("limiter", UserLimiter("10/minute")),  # type: ignore[arg-type]
        prediction_log=PredictionLog(tmp_path / "predictions.jsonl", salt="test-salt"),
        memory=ImageMemory(),
        **kwargs,  # type: ignore[arg-type]
    )


# -- pure functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("what color is the shape?", "what color is the shape?"),
        ("/ask what shape is it?", "what shape is it?"),
        ("/ask@vqa_test_bot   what shape\n is it?", "what shape is it?"),
        ("@vqa_test_bot what color?", "what color?"),
        ("what color, @VQA_test_bot?", "what color, ?"),
        ("/ask", ""),
        (None, ""),
        ("/asking for a friend", "/asking for a friend"),
    ],
)
def test_extract_question(text: str | None, question: str) -> None:
    assert extract_question(text, bot_username="vqa_test_bot") == question


def prediction(*pairs: tuple[str, float]) -> Prediction:
    candidates = tuple(Candidate(a, c) for a, c in pairs)
    return Prediction(candidates[0].answer, candidates[0].confidence, candidates)


def test_a_confident_answer_with_the_next_candidates_as_bars() -> None:
    text = replies.format_prediction(prediction(("blue", 0.93), ("teal", 0.05), ("green", 0.004)))
    assert text == "blue — 93% sure\nteal   █░░░░░░░░░ 5%\ngreen  ░░░░░░░░░░ <1%"


def test_an_unsure_answer_is_worded_as_a_guess() -> None:
    text = replies.format_prediction(prediction(("circle", 0.41), ("triangle", 0.38), ("rectangle", 0.21)))
    assert text.splitlines()[0] == "Not sure — maybe circle (41%)"
    assert text.splitlines()[1] == "triangle   ████░░░░░░ 38%"


def test_percentages_never_round_to_certainty_or_to_nothing() -> None:
    assert [replies.percent(v) for v in (1.0, 0.99999, 0.995, 0.5, 0.004, 0.0)] == [
        "100%",
        ">99.9%",
        "99.5%",
        "50%",
        "<1%",
        "0%",
    ]


def test_image_memory_expires_and_is_bounded() -> None:
    now = [0.0]
    memory = ImageMemory(ttl_s=600, max_users=2, timer=lambda: now[0])
    first, second, third = (ImageRef(fetch=Fetcher(b"x")) for _ in range(3))
    memory.remember("telegram", "1", "a", first)
    assert memory.recall("telegram", "1", "a") is first
    assert memory.recall("telegram", "2", "a") is None  # per chat
    now[0] = 601
    assert memory.recall("telegram", "1", "a") is None  # expired
    for user, image in (("a", first), ("b", second), ("c", third)):
        memory.remember("telegram", "1", user, image)
    assert len(memory) == 2  # the oldest went
    assert memory.recall("telegram", "1", "c") is third


def test_the_prediction_log_rotates(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.jsonl", salt="s", max_bytes=2000, backups=2)
    for i in range(40):
        log.record(
            platform="telegram",
            chat_type="private",
            user_id=str(i),
            question="q" * 50,
            outcome="answered",
            latency_ms=1,
        )
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    assert all(len(line) < 2000 for line in (tmp_path / "p.jsonl").read_text().splitlines())


# -- requests through the core ---------------------------------------------------------------


async def test_an_answer_and_its_log_line(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    reply = await core.ask(request(example("blue_circle"), user="123456789"))
    core.prediction_log.close()
    assert reply.outcome == "answered"
    assert reply.text.startswith("blue — ")
    assert "sure" in reply.text.splitlines()[0]
    [entry] = log_lines(tmp_path / "predictions.jsonl")
    assert entry["platform"] == "telegram"
    assert entry["chat_type"] == "private"
    assert entry["question"] == "what color is the shape?"
    assert entry["answer"] == "blue"
    assert entry["outcome"] == "answered"
    assert entry["image_bytes"] == len(example("blue_circle"))
    assert entry["model_revision"] == str(BUNDLED_MODEL)
    assert len(entry["top_k"]) == 3  # type: ignore[arg-type]
    assert entry["user"] == core.prediction_log.user_hash("telegram", "123456789")
    assert "123456789" not in (tmp_path / "predictions.jsonl").read_text()  # only the salted hash


async def test_the_eleventh_question_in_a_minute_is_refused_with_when_to_retry(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    answers = [await core.ask(request(example("red_triangle"))) for _ in range(10)]
    refused = await core.ask(request(example("red_triangle")))
    other_user = await core.ask(request(example("red_triangle"), user="7"))
    core.prediction_log.close()
    assert {a.outcome for a in answers} == {"answered"}
    assert refused.outcome == "rate_limited"
    assert refused.text.startswith(
        "You're asking faster than I can keep up (10 per 1 minute). Please try again in "
    )
    seconds = int(refused.text.rsplit("in ", 1)[1].split()[0])
    assert 1 <= seconds <= 60
    assert other_user.outcome == "answered"  # limits are per user
    outcomes = [e["outcome"] for e in log_lines(tmp_path / "predictions.jsonl")]
    assert outcomes == ["answered"] * 10 + ["rate_limited", "answered"]


async def test_admins_are_not_rate_limited(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path, limiter=UserLimiter("2/minute"), admins=frozenset({("telegram", "1")}))
    results = [await core.ask(request(example("red_triangle"), user="1")) for _ in range(5)]
    assert {r.outcome for r in results} == {"answered"}


async def test_at_most_two_questions_in_flight_per_user(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(GatedModel, holder)) as engine:
        model = holder[0]
        core = make_core(engine, tmp_path)
        model.close_gate()
        first = asyncio.create_task(core.ask(request(example("blue_circle"))))
        await in_forward(model)
        second = asyncio.create_task(core.ask(request(example("green_rectangle"))))
        await until(lambda: core.limiter.users_in_flight == 1 and engine.stats().in_flight == 2)
        third = await core.ask(request(example("yellow_circle")))
        model.gate.set()
        done = await asyncio.gather(first, second)
    assert third.outcome == "rate_limited"
    assert third.text == replies.IN_FLIGHT
    assert [r.outcome for r in done] == ["answered", "answered"]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.001)


async def test_a_declared_30_mb_file_is_refused_without_downloading(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    fetch = Fetcher(b"never fetched")
    reply = await core.ask(request(fetch, size=30 * 2**20, mime="image/jpeg"))
    assert reply.outcome == "rejected:too_large"
    assert reply.text == "That image is larger than 20.0 MB (30.0 MB); please send a smaller one."
    assert fetch.downloads == 0


async def test_a_declared_pdf_is_refused_without_downloading(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    fetch = Fetcher(PDF)
    reply = await core.ask(request(fetch, size=len(PDF), mime="application/pdf"))
    assert reply.outcome == "rejected:not_image"
    assert reply.text == (
        "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image."
    )
    assert fetch.downloads == 0


async def test_an_undeclared_pdf_is_refused_by_its_content(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    reply = await core.ask(request(PDF))
    core.prediction_log.close()
    assert reply.outcome == "rejected:not_image"
    assert reply.text.startswith("That file is a PDF, not an image I can read")
    [entry] = log_lines(tmp_path / "predictions.jsonl")
    assert entry["outcome"] == "rejected:not_image"
    assert entry["answer"] is None


@pytest.mark.parametrize(
    ("data", "question", "outcome", "text"),
    [
        (b"", "what?", "rejected:empty_image", "The image is empty (0 bytes); please send it again."),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "what?", "rejected:corrupt_image", "The image file is damaged"),
        (None, "   ", "rejected:bad_question", "Please ask a question about the image"),
    ],
)
async def test_unusable_input_gets_a_specific_reply(
    engine: VQAEngine, tmp_path: Path, data: bytes | None, question: str, outcome: str, text: str
) -> None:
    core = make_core(engine, tmp_path)
    reply = await core.ask(request(example("blue_circle") if data is None else data, question))
    assert reply.outcome == outcome
    assert reply.text.startswith(text)


async def test_a_failed_download_asks_to_resend(engine: VQAEngine, tmp_path: Path) -> None:
    async def broken() -> bytes:
        raise ConnectionResetError("peer went away")

    core = make_core(engine, tmp_path)
    reply = await core.ask(
        ChatRequest(
            "discord", "5", "9", "dm", "what?", ImageRef(fetch=broken, size=100, mime_type="image/png")
        )
    )
    assert (reply.outcome, reply.text) == ("error", "I couldn't download that image; please send it again.")


async def test_health_and_stats_texts(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    core.platforms.append("telegram")
    await core.ask(request(example("blue_circle")))
    await core.ask(request(PDF))
    health = core.health_text()
    stats = core.stats_text()
    assert health.splitlines()[0].startswith("OK — up ")
    assert f"model: {BUNDLED_MODEL}" in health
    assert "device: cpu" in health
    assert "platforms: telegram" in health
    assert "telegram: 2 (answered 1, rejected:not_image 1)" in stats
    assert "answered 1" in stats and "rejected 1" in stats
    assert "batches 1, mean size 1.0, largest 1" in stats


async def test_a_file_declared_as_octet_stream_is_read_by_its_content(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    image = example("green_rectangle")
    answered = await core.ask(request(image, size=len(image), mime="application/octet-stream"))
    refused = await core.ask(request(PDF, size=len(PDF), mime="application/octet-stream"))
    assert answered.text.startswith("green — ")
    assert refused.text.startswith("That file is a PDF, not an image I can read")


def test_long_replies_are_clipped_to_the_platform_limit() -> None:
    assert replies.clip("short") == "short"
    clipped = replies.clip("x" * 3000)
    assert len(clipped) == 2000 and clipped.endswith("…")
    assert len(replies.clip("y" * 5000, 4096)) == 4096
