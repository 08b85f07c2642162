"""The conversation core: every rule of a chat turn, with the real engine and bundled model behind it.

Events are built by hand here, as the adapters build them; downloads are ``Downloads`` the test
controls (they count fetches, and can hold one until the test releases it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from bots import replies
from bots.core import ChatCore, extract_question
from bots.events import Button, ChatEvent, Command, ImageRef, Outcome, Press
from bots.memory import ImageMemory
from bots.prediction_log import PredictionLog
from bots.user_queue import QueueFullError, UserQueue
from tests.conftest import BUNDLED_MODEL, ROOT
from tests.core_builder import build_test_core
from tests.test_engine import GatedModel, in_forward, loader_with, until
from vqa_engine import Candidate, Prediction, VQAEngine
from vqa_engine.modular.package import load_package
from vqa_engine.serving.model_facts import describe

EXAMPLES = ROOT / "examples"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is it?"


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.png").read_bytes()


class Downloads:
    """Images 'on the platform', by source: counts fetches; ``hold(source)`` makes one wait."""

    def __init__(self, **images: bytes) -> None:
        self.images = dict(images)
        self.fetched: list[str] = []
        self.holds: dict[str, asyncio.Event] = {}
        self.failing: set[str] = set()

    def ref(self, source: str, **declared: object) -> ImageRef:
        return ImageRef(source, **declared)  # type: ignore[arg-type]

    def hold(self, source: str) -> asyncio.Event:
        self.holds[source] = asyncio.Event()
        return self.holds[source]

    async def fetch(self, image: ImageRef) -> bytes:
        if image.source in self.holds:
            await self.holds[image.source].wait()
        if image.source in self.failing:
            raise ConnectionResetError("peer went away")
        self.fetched.append(image.source)
        return self.images[image.source]


def event(
    downloads: Downloads,
    text: str = COLOR_Q,
    *images: ImageRef,
    user: str = "42",
    chat: str = "1000",
    platform: str = "telegram",
    private: bool = True,
    addressed: bool = True,
    **fields: object,
) -> ChatEvent:
    return ChatEvent(
        platform=platform,  # type: ignore[arg-type]
        chat_id=chat,
        chat_type="private" if private else "group",
        private=private,
        user_id=user,
        addressed=addressed,
        fetch=downloads.fetch,
        text=text,
        images=images,
        **fields,  # type: ignore[arg-type]
    )


def log_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def engine() -> AsyncIterator[VQAEngine]:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        yield engine


def make_core(
    engine: VQAEngine, tmp_path: Path, *, platforms: Callable[[], Sequence[str]] = tuple, **settings: object
) -> ChatCore:
    """The service's chat core around ``engine``; ``settings`` override the defaults."""
    log = PredictionLog(tmp_path / "predictions.jsonl", salt="test-salt")
    return build_test_core(engine, log, platforms=platforms, health=tuple, **settings)


def finish(core: ChatCore, tmp_path: Path) -> list[dict[str, object]]:
    core.prediction_log.close()
    return log_lines(tmp_path / "predictions.jsonl")


def prediction(*pairs: tuple[str, float]) -> Prediction:
    candidates = tuple(Candidate(a, c) for a, c in pairs)
    return Prediction(candidates[0].answer, candidates[0].confidence, candidates)


# -- pure functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("what color is the shape?", "what color is the shape?"),
        ("/ask what shape is it?", "what shape is it?"),
        ("/ask@vqa_test_bot   what shape\n is it?", "what shape is it?"),
        ("/ask", ""),
        (None, ""),
        ("/asking for a friend", "/asking for a friend"),
    ],
)
def test_extract_question(text: str | None, question: str) -> None:
    assert extract_question(text) == question


def test_a_confident_answer_with_the_next_candidates_as_bars() -> None:
    text = replies.format_prediction(prediction(("blue", 0.93), ("teal", 0.05), ("green", 0.02)))
    assert text == "blue — 93% sure\nteal   █░░░░░░░░░ 5%\ngreen  ░░░░░░░░░░ 2%"


def test_candidates_under_one_percent_are_not_listed() -> None:
    text = replies.format_prediction(prediction(("blue", 0.95), ("teal", 0.045), ("green", 0.004)))
    assert text == "blue — 95% sure\nteal  ░░░░░░░░░░ 4%"  # (4.5% rounds to 4: half to even)
    assert replies.format_prediction(prediction(("red", 0.999), ("gray", 0.0009))) == "red — 99.9% sure"


def test_an_unsure_answer_is_worded_as_a_guess() -> None:
    text = replies.format_prediction(prediction(("circle", 0.41), ("triangle", 0.38), ("rectangle", 0.21)))
    assert text.splitlines()[0] == "Not sure — maybe circle (41%)"
    assert text.splitlines()[1] == "triangle   ████░░░░░░ 38%"


def test_percentages_never_round_to_certainty_or_to_nothing() -> None:
    assert [replies.percent(v) for v in (1.0, 0.99999, 0.995, 0.5, 0.004, 0.0)] == [
        ">99.9%",
        ">99.9%",
        "99.5%",
        "50%",
        "<1%",
        "0%",
    ]


def test_the_command_line_uses_the_same_percent_rules() -> None:
    text = replies.format_cli(prediction(("circle", 1.0), ("triangle", 0.0000004), ("rectangle", 0.0)))
    assert text == "circle (>99.9% confident)"
    text = replies.format_cli(prediction(("blue", 0.962), ("teal", 0.031), ("green", 0.007)))
    assert text == "blue (96% confident)\nnext: teal 3%"


def test_long_replies_are_clipped_to_the_platform_limit() -> None:
    assert replies.clip("short", 2000) == "short"
    clipped = replies.clip("x" * 3000, 2000)
    assert len(clipped) == 2000 and clipped.endswith("…")


async def test_image_memory_expires_and_is_bounded() -> None:
    now = [0.0]
    memory = ImageMemory(ttl_s=600, max_users=2, timer=lambda: now[0])
    first, second, third = (ImageRef(f"file-{n}") for n in range(3))
    await memory.remember(("telegram", "1", "a"), first)
    assert await memory.recall(("telegram", "1", "a")) is first
    assert await memory.recall(("telegram", "2", "a")) is None  # per chat
    now[0] = 601
    assert await memory.recall(("telegram", "1", "a")) is None  # expired
    for user, image in (("a", first), ("b", second), ("c", third)):
        await memory.remember(("telegram", "1", user), image)
    assert await memory.count() == 2  # the oldest went
    assert await memory.recall(("telegram", "1", "c")) is third


def test_the_prediction_log_rotates(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "p.jsonl", salt="s", max_bytes=2000, backups=2) as log:
        for i in range(40):
            log.record(
                platform="telegram",
                chat_type="private",
                user_id=str(i),
                question="q" * 50,
                outcome="answered",
                latency_ms=1,
            )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    assert all(len(line) < 2000 for line in (tmp_path / "p.jsonl").read_text().splitlines())


# -- the user queue ---------------------------------------------------------------------------


async def test_the_user_queue_runs_a_few_keeps_the_rest_waiting_and_lets_them_leave_in_order() -> None:
    queue = UserQueue(max_in_flight=2, max_waiting=2)
    started: list[int] = []
    finished: list[int] = []
    release = {n: asyncio.Event() for n in range(4)}

    async def question(n: int) -> None:
        async with queue.admit("alice"):
            started.append(n)
            await release[n].wait()
        finished.append(n)

    tasks = [asyncio.create_task(question(n)) for n in range(4)]
    await until(lambda: queue.users == 1 and len(started) == 2)
    assert started == [0, 1]  # two at a time
    with pytest.raises(QueueFullError) as refused:
        queue.admit("alice")  # two running, two waiting: full
    assert refused.value.waiting == 2
    queue.admit("bob").cancel()  # other users are not affected
    release[1].set()  # the second finishes first ...
    await until(lambda: started == [0, 1, 2])
    assert finished == []  # ... its slot goes on, but it leaves after the first
    release[0].set()
    await until(lambda: len(finished) == 2)
    assert finished == [0, 1]
    release[3].set()
    release[2].set()
    await asyncio.gather(*tasks)
    assert finished == [0, 1, 2, 3]
    assert queue.users == 0  # nothing kept per idle user


async def test_answers_leave_in_order_even_when_a_later_one_finishes_in_the_same_tick() -> None:
    queue = UserQueue(max_in_flight=2, max_waiting=5)
    release = {n: asyncio.Event() for n in range(3)}
    entered: list[int] = []
    finished: list[int] = []

    async def question(n: int) -> None:
        async with queue.admit("alice"):
            entered.append(n)
            await release[n].wait()
        finished.append(n)

    tasks = [asyncio.create_task(question(n)) for n in range(3)]
    release[1].set()  # the second is done first and waits for the first; the third starts
    await until(lambda: entered == [0, 1, 2])
    release[0].set()  # the first and the third finish together:
    release[2].set()  # the third must still not overtake the second
    await asyncio.gather(*tasks)
    assert finished == [0, 1, 2]


async def test_a_cancelled_question_does_not_hold_up_the_users_next_ones() -> None:
    queue = UserQueue(max_in_flight=1, max_waiting=5)
    gate = asyncio.Event()

    async def question(wait: bool) -> str:
        async with queue.admit("alice"):
            if wait:
                await gate.wait()
        return "done"

    first = asyncio.create_task(question(True))
    second = asyncio.create_task(question(False))
    await until(lambda: queue.users == 1)
    first.cancel()
    assert await second == "done"
    assert queue.users == 0


# -- questions --------------------------------------------------------------------------------


async def test_an_answer_and_its_log_line(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(blue=example("blue_circle"))
    reply = await core.handle(event(downloads, COLOR_Q, downloads.ref("blue"), user="123456789"))
    [entry] = finish(core, tmp_path)
    assert reply is not None and reply.outcome is Outcome.ANSWERED
    assert reply.text.startswith("blue — ") and "sure" in reply.text.splitlines()[0]
    assert reply.text == replies.format_prediction(reply.predictions[0])
    assert (entry["platform"], entry["chat_type"], entry["question"]) == ("telegram", "private", COLOR_Q)
    assert (entry["answer"], entry["outcome"]) == ("blue", "answered")
    assert entry["image_bytes"] == len(example("blue_circle"))
    assert entry["model_revision"] == str(BUNDLED_MODEL)
    assert len(entry["top_k"]) == 3  # type: ignore[arg-type]
    assert entry["user"] == core.prediction_log.user_hash("telegram", "123456789")
    assert "123456789" not in (tmp_path / "predictions.jsonl").read_text()  # only the salted hash


async def test_a_burst_of_questions_from_one_user_is_answered_in_order(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(
        blue=example("blue_circle"), red=example("red_triangle"), green=example("green_rectangle")
    )
    held = downloads.hold("blue")  # the first question is slow to download
    turns = [
        asyncio.create_task(core.handle(event(downloads, COLOR_Q, downloads.ref(name))))
        for name in ("blue", "red", "green")
    ]
    done: list[str] = []
    for turn in turns:
        turn.add_done_callback(lambda t: done.append(t.result().text.split()[0]))  # type: ignore[union-attr]
    await until(lambda: downloads.fetched == ["red"])  # the second ran (two at a time); the first waits
    held.set()
    await asyncio.gather(*turns)
    entries = finish(core, tmp_path)
    assert done == ["blue", "red", "green"]  # answered in the order asked, none refused
    assert sorted(e["answer"] for e in entries) == ["blue", "green", "red"]  # type: ignore[type-var]
    assert {e["outcome"] for e in entries} == {"answered"}


async def test_beyond_the_queue_bound_a_question_is_politely_refused(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(GatedModel, holder)) as engine:
        model = holder[0]
        core = make_core(engine, tmp_path, max_in_flight_per_user=1, max_queued_per_user=1)
        downloads = Downloads(blue=example("blue_circle"))
        model.close_gate()
        running = asyncio.create_task(core.handle(event(downloads, COLOR_Q, downloads.ref("blue"))))
        await in_forward(model)
        waiting = asyncio.create_task(core.handle(event(downloads, SHAPE_Q, downloads.ref("blue"))))
        await until(lambda: core.queue.waiting(("telegram", "42")) == 1)
        refused = await core.handle(event(downloads, "is it blue?", downloads.ref("blue")))
        other = asyncio.create_task(core.handle(event(downloads, COLOR_Q, downloads.ref("blue"), user="7")))
        model.gate.set()
        answered = await asyncio.gather(running, waiting, other)
    entries = finish(core, tmp_path)
    assert refused is not None and refused.outcome is Outcome.QUEUE_FULL
    assert refused.text == replies.queue_full(1)
    assert refused.retry_after_s == QueueFullError.retry_after_s == 1  # the refusal's own
    assert [r.outcome for r in answered if r] == [Outcome.ANSWERED] * 3
    assert sorted(e["outcome"] for e in entries) == ["answered"] * 3 + ["queue_full"]  # type: ignore[type-var]


async def test_the_eleventh_question_in_a_minute_is_refused_with_when_to_retry(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(red=example("red_triangle"))
    answers = [await core.handle(event(downloads, COLOR_Q, downloads.ref("red"))) for _ in range(10)]
    refused = await core.handle(event(downloads, COLOR_Q, downloads.ref("red")))
    other_user = await core.handle(event(downloads, COLOR_Q, downloads.ref("red"), user="7"))
    entries = finish(core, tmp_path)
    assert {a.outcome for a in answers if a} == {Outcome.ANSWERED}
    assert refused is not None and refused.outcome is Outcome.RATE_LIMITED
    prefix = "You're asking faster than I can keep up (10 per 1 minute). Please try again in "
    assert refused.text.startswith(prefix)
    assert 1 <= int(refused.text.removeprefix(prefix).split()[0]) <= 60
    assert other_user is not None and other_user.outcome is Outcome.ANSWERED  # limits are per user
    assert [e["outcome"] for e in entries] == ["answered"] * 10 + ["rate_limited", "answered"]
    assert len(downloads.fetched) == 11  # refused before downloading


async def test_admins_are_not_rate_limited(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path, rate_limit="2/minute", admin_ids="telegram:1")
    downloads = Downloads(red=example("red_triangle"))
    results = [await core.handle(event(downloads, COLOR_Q, downloads.ref("red"), user="1")) for _ in range(5)]
    assert {r.outcome for r in results if r} == {Outcome.ANSWERED}


async def test_declared_pdfs_and_huge_files_are_refused_without_downloading(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(pdf=PDF, huge=b"never fetched")
    pdf = await core.handle(event(downloads, COLOR_Q, downloads.ref("pdf", mime_type="application/pdf")))
    huge = await core.handle(
        event(downloads, COLOR_Q, downloads.ref("huge", size=30 * 2**20, mime_type="image/jpeg"))
    )
    entries = finish(core, tmp_path)
    assert pdf is not None and huge is not None
    assert pdf.text == (
        "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image."
    )
    assert huge.text == "That image is larger than 20.0 MB (30.0 MB); please send a smaller one."
    assert downloads.fetched == []
    assert [(e["outcome"], e["image_bytes"]) for e in entries] == [
        ("rejected:not_image", None),
        ("rejected:too_large", 30 * 2**20),
    ]


@pytest.mark.parametrize("declared", [None, "application/octet-stream"])
async def test_an_undeclared_type_is_read_by_its_content(
    engine: VQAEngine, tmp_path: Path, declared: str | None
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(pdf=PDF, green=example("green_rectangle"))
    refused = await core.handle(event(downloads, COLOR_Q, downloads.ref("pdf", mime_type=declared)))
    answered = await core.handle(event(downloads, COLOR_Q, downloads.ref("green", mime_type=declared)))
    entries = finish(core, tmp_path)
    assert refused is not None and refused.text.startswith("That file is a PDF, not an image I can read")
    assert answered is not None and answered.text.startswith("green — ")
    assert [(e["outcome"], e["answer"]) for e in entries] == [
        ("rejected:not_image", None),
        ("answered", "green"),
    ]


@pytest.mark.parametrize(
    ("data", "question", "outcome", "text"),
    [
        (b"", "what?", Outcome.REJECTED_EMPTY_IMAGE, "The image is empty (0 bytes); please send it again."),
        (
            b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
            "what?",
            Outcome.REJECTED_CORRUPT_IMAGE,
            "The image file is damaged",
        ),
        (None, "x" * 600, Outcome.REJECTED_BAD_QUESTION, "The question is too long (600 characters"),
    ],
)
async def test_unusable_input_gets_a_specific_reply(
    engine: VQAEngine, tmp_path: Path, data: bytes | None, question: str, outcome: Outcome, text: str
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(img=example("blue_circle") if data is None else data)
    reply = await core.handle(event(downloads, question, downloads.ref("img")))
    [entry] = finish(core, tmp_path)
    assert reply is not None and reply.outcome is outcome
    assert reply.text.startswith(text)
    assert entry["outcome"] == outcome.value


async def test_a_failed_download_asks_to_resend(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(gone=b"")
    downloads.failing.add("gone")
    reply = await core.handle(
        event(downloads, COLOR_Q, downloads.ref("gone", size=100, mime_type="image/png"))
    )
    [entry] = finish(core, tmp_path)
    assert reply is not None and (reply.outcome, reply.text) == (Outcome.ERROR, replies.DOWNLOAD_FAILED)
    assert entry["outcome"] == "error"


# -- which image a question is about ----------------------------------------------------------


async def test_an_image_without_a_question_is_kept_for_follow_ups(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(green=example("green_rectangle"))
    prompt = await core.handle(event(downloads, "", downloads.ref("green")))
    colour = await core.handle(event(downloads, COLOR_Q))
    shape = await core.handle(event(downloads, "/ask " + SHAPE_Q))
    elsewhere = await core.handle(event(downloads, COLOR_Q, chat="2000"))  # memory is per chat
    bare = await core.handle(event(downloads, "/ask"))
    entries = finish(core, tmp_path)
    assert prompt is not None and (prompt.text, prompt.outcome) == (replies.ASK_WHAT, Outcome.PROMPT)
    assert colour is not None and colour.text.startswith("green — ")
    assert shape is not None and shape.text.startswith("rectangle — ")
    assert elsewhere is not None and (elsewhere.text, elsewhere.outcome) == (
        replies.NO_IMAGE,
        Outcome.NO_IMAGE,
    )
    assert bare is not None and (bare.text, bare.outcome) == (replies.NEED_QUESTION, Outcome.NEED_QUESTION)
    assert [(e["question"], e["answer"]) for e in entries] == [(COLOR_Q, "green"), (SHAPE_Q, "rectangle")]
    assert downloads.fetched == ["green", "green"]  # once a question, never for the prompt


@pytest.mark.parametrize(
    ("platform", "prompt"),
    [("telegram", replies.ASK_WHAT_GROUP["telegram"]), ("discord", replies.ASK_WHAT_GROUP["discord"])],
)
async def test_in_a_group_the_prompt_says_how_to_follow_up(
    engine: VQAEngine, tmp_path: Path, platform: str, prompt: str
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(green=example("green_rectangle"))
    reply = await core.handle(event(downloads, "", downloads.ref("green"), platform=platform, private=False))
    assert reply is not None and reply.text == prompt


async def test_a_message_not_meant_for_the_bot_gets_no_reply_but_its_image_is_remembered(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(yellow=example("yellow_circle"), pdf=PDF)
    unaddressed = event(downloads, COLOR_Q, downloads.ref("yellow"), private=False, addressed=False)
    assert await core.handle(unaddressed) is None
    pdf = downloads.ref("pdf", mime_type="application/pdf")  # refused files do not replace it
    assert await core.handle(event(downloads, "", pdf, private=False, addressed=False)) is None
    later = await core.handle(event(downloads, SHAPE_Q, private=False))  # e.g. "@bot what shape is it?"
    entries = finish(core, tmp_path)
    assert later is not None and later.text.startswith("circle — ")
    assert [e["question"] for e in entries] == [SHAPE_Q]  # the unaddressed ones: no log line
    assert downloads.fetched == ["yellow"]


async def test_a_reply_to_an_image_asks_about_that_image(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(red=example("red_triangle"), blue=example("blue_circle"))
    await core.handle(event(downloads, "", downloads.ref("blue")))  # the latest image ...
    reply = await core.handle(event(downloads, COLOR_Q, replied_image=downloads.ref("red")))
    hidden = await core.handle(event(downloads, COLOR_Q, replied_hidden=True))
    assert reply is not None and reply.text.startswith("red — ")  # ... is not the one asked about
    assert hidden is not None and (hidden.text, hidden.outcome) == (
        replies.HIDDEN_IMAGE,
        Outcome.HIDDEN_IMAGE,
    )


async def test_several_images_get_one_numbered_reply(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(blue=example("blue_circle"), red=example("red_triangle"), pdf=PDF)
    refs = (downloads.ref("blue"), downloads.ref("red"), downloads.ref("pdf", mime_type="application/pdf"))
    reply = await core.handle(event(downloads, COLOR_Q, *refs))
    entries = finish(core, tmp_path)
    assert reply is not None and reply.outcome is Outcome.ANSWERED
    lines = reply.text.split("\n")
    assert lines[0].startswith("1. blue — ") and any(line.startswith("2. red — ") for line in lines)
    assert lines[-1].startswith("3. That file is a PDF")
    assert [e["outcome"] for e in entries] == ["answered", "answered", "rejected:not_image"]


async def test_a_refused_file_without_a_question_says_what_is_wrong_now(
    engine: VQAEngine, tmp_path: Path
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(pdf=PDF)
    reply = await core.handle(event(downloads, "", downloads.ref("pdf", mime_type="application/pdf")))
    [entry] = finish(core, tmp_path)
    assert reply is not None and reply.text.startswith("That file is a PDF")
    assert (entry["outcome"], entry["question"]) == ("rejected:not_image", "")


async def test_a_self_contained_request_without_an_image_or_a_question_is_a_logged_refusal(
    engine: VQAEngine, tmp_path: Path
) -> None:
    """The web's requests carry all they ask about: nothing remembered completes them, and what
    is missing is refused like any other question, with its log line."""
    core = make_core(engine, tmp_path)
    downloads = Downloads(green=example("green_rectangle"))

    def web(text: str, *images: ImageRef) -> ChatEvent:
        return event(downloads, text, *images, platform="web", self_contained=True)

    answered = await core.handle(web(COLOR_Q, downloads.ref("green", size=1234)))
    no_image = await core.handle(web(SHAPE_Q))  # the green one is not recalled
    blank = await core.handle(web("  ", downloads.ref("green", size=1234)))
    both = await core.handle(web(""))
    entries = finish(core, tmp_path)
    assert answered is not None and answered.outcome is Outcome.ANSWERED
    assert no_image is not None and both is not None and blank is not None
    assert (no_image.text, no_image.outcome) == (replies.WEB_NO_IMAGE, Outcome.REJECTED_NO_IMAGE)
    assert (blank.text, blank.outcome) == (replies.NEED_QUESTION, Outcome.REJECTED_BAD_QUESTION)
    assert both.outcome is Outcome.REJECTED_NO_IMAGE  # the image is missing first
    assert [(e["platform"], e["outcome"], e["question"], e["image_bytes"]) for e in entries] == [
        ("web", "answered", COLOR_Q, len(example("green_rectangle"))),
        ("web", "rejected:no_image", SHAPE_Q, None),
        ("web", "rejected:bad_question", "", 1234),
        ("web", "rejected:no_image", "", None),
    ]
    assert downloads.fetched == ["green"]  # refused before any download
    assert core.outcomes[("web", "rejected:no_image")] == 2


# -- commands ---------------------------------------------------------------------------------


async def test_help_health_and_stats(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path, admin_ids="telegram:1", platforms=lambda: ["telegram"])
    downloads = Downloads(blue=example("blue_circle"), pdf=PDF)
    await core.handle(event(downloads, COLOR_Q, downloads.ref("blue")))
    await core.handle(event(downloads, COLOR_Q, downloads.ref("pdf")))
    help_ = await core.handle(event(downloads, command=Command.HELP))
    health = await core.handle(event(downloads, user="1", command=Command.HEALTH))
    stats = await core.handle(event(downloads, user="1", command=Command.STATS))
    refused = await core.handle(event(downloads, user="2", command=Command.STATS))
    entries = finish(core, tmp_path)
    facts = describe(BUNDLED_MODEL)
    assert help_ is not None and help_.text == replies.help_text(
        "telegram", max_image_bytes=20 * 2**20, facts=facts
    )
    assert "PNG, JPEG, WebP, GIF or BMP images up to 20 MB" in help_.text
    assert health is not None and health.private and health.outcome is Outcome.ADMIN
    lines = health.text.splitlines()
    assert lines[0].startswith("OK — up ")
    assert f"model: {BUNDLED_MODEL}" in lines and "device: cpu" in lines and "platforms: telegram" in lines
    assert stats is not None and "telegram: 2 (answered 1, rejected:not_image 1)" in stats.text
    assert "batches 1, mean size 1.0, largest 1" in stats.text
    assert "images remembered for follow-ups: 1" in stats.text
    assert refused is not None and (refused.text, refused.private) == (replies.NOT_ADMIN, True)
    assert len(entries) == 2  # commands are not questions


# -- honest answers ---------------------------------------------------------------------------

CAT = (ROOT / "benchmarks" / "ood" / "photos" / "chelsea.jpg").read_bytes()


@pytest.mark.parametrize(
    ("image", "question", "reason", "text"),
    [
        (
            "cat",
            "what animal is this?",
            "unfamiliar_image",
            "This picture doesn't look like the ones I was trained on (one coloured shape on a plain "
            "background), so I can't answer that reliably. My best guess: ",
        ),
        ("yellow", "is it a dog?", "unknown_words", "I don't know the word ‘dog’, so I can't answer that"),
        ("red", "is the shape red?", "answer_type", "I wasn't trained to answer that kind of question, so"),
        ("red", "🤔🤔", "unknown_words", "I don't understand that question: none of its words are ones I"),
    ],
)
async def test_a_question_beyond_the_model_gets_an_honest_reply_and_a_guess(
    engine: VQAEngine, tmp_path: Path, image: str, question: str, reason: str, text: str
) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(cat=CAT, yellow=example("yellow_circle"), red=example("red_triangle"))
    reply = await core.handle(event(downloads, question, downloads.ref(image)))
    [entry] = finish(core, tmp_path)
    assert reply is not None and reply.text.startswith(text)
    [prediction] = reply.predictions
    assert reply.text.endswith(f"My best guess: {prediction.answer}.")
    assert "sure" not in reply.text  # never a bare confident answer
    assert (entry["abstain"], entry["reason"]) == (True, reason)


async def test_the_chart_of_a_guess_carries_its_notice(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path)
    downloads = Downloads(cat=CAT)
    reply = await core.handle(event(downloads, "what shape is in the image?", downloads.ref("cat")))
    assert reply is not None and reply.request_id is not None
    answered = core.feedback.recall(reply.request_id)
    assert answered is not None and answered.notice == reply.text
    chart = await core.handle(event(downloads, press=Press(Button.CHART, reply.request_id)))
    assert chart is not None and chart.image is not None and chart.outcome is Outcome.CHART


async def test_about_and_help_describe_the_model_from_its_package(engine: VQAEngine, tmp_path: Path) -> None:
    core = make_core(engine, tmp_path, admin_ids="telegram:1")
    downloads = Downloads()
    about = await core.handle(event(downloads, command=Command.ABOUT))
    help_ = await core.handle(event(downloads, command=Command.START))
    health = await core.handle(event(downloads, user="1", command=Command.HEALTH))
    assert about is not None and about.text.splitlines() == [
        "About the model: easy-vqa-film",
        "Trained on pictures of one coloured shape on a plain background (easy-vqa).",
        "It answers questions like:",
        "• “what color is the shape?” → black, blue, brown, gray, green, red, teal, yellow",
        "• “what shape is in the image?” → circle, rectangle, triangle",
        "• “is a teal shape present?” → no, yes",
        "It knows 26 words; questions with others get an honest “I don't know”.",
        "Measured: 100.00% right on the 9,673 questions of easy-vqa's test split.",
        "When a picture doesn't look like its training pictures, or a question uses words it never "
        "learned, it says so and gives its answer only as a guess.",
    ]
    assert help_ is not None and help_.text.startswith(
        "I answer questions about pictures of one coloured shape on a plain background, like "
        "“what color is the shape?”"
    )
    assert health is not None
    assert "image check: the package's familiarity statistics (24 clusters" in health.text
