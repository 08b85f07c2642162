"""The async engine: batching, isolation of bad inputs, backpressure, cache, cancellation, drain.

Batches are gated with events, never sleeps: a ``GatedModel`` holds the inference thread inside
a forward pass until the test opens the gate, so the test decides exactly what queues behind it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import BUNDLED_MODEL, ROOT, png_bytes
from vqa_engine import (
    CorruptImageError,
    EngineBusyError,
    EngineClosedError,
    EngineOptions,
    EngineTimeoutError,
    InferenceError,
    InvalidQuestionError,
    ModelPackageError,
    Prediction,
    UnsupportedImageError,
    VQAEngine,
)
from vqa_engine.modular.package import ModelPackage, load_package

EXAMPLES = ROOT / "examples"
COLOR_Q = "what color is the shape?"
MAGENTA = (255, 0, 255)  # the "poison" colour of PoisonedModel


class GatedModel(nn.Module):
    """The real model, except that a forward pass waits for the test to open the gate."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(images.shape[0])
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise RuntimeError("test gate never opened")
        return self.inner(images, tokens, lengths)

    def close_gate(self) -> None:
        self.entered.clear()
        self.gate.clear()


class PoisonedModel(GatedModel):
    """Fails any forward pass that contains an all-magenta image."""

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        magenta = (images[:, 0] > 0.99).all(-1).all(-1) & (images[:, 1] < -0.99).all(-1).all(-1)
        out = super().forward(images, tokens, lengths)
        if bool(magenta.any()):
            raise RuntimeError("poisoned input")
        return out


class ShortModel(GatedModel):
    """Returns one row too few for any batch larger than one."""

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = super().forward(images, tokens, lengths)
        return out[:-1] if out.shape[0] > 1 else out


def image(name: str) -> bytes:
    return (EXAMPLES / f"{name}.png").read_bytes()


def loader_with(wrapper: type[GatedModel], holder: list[GatedModel]) -> Callable[[], ModelPackage]:
    def load() -> ModelPackage:
        package = load_package(BUNDLED_MODEL)
        model = wrapper(package.model)
        holder.append(model)
        package.model = model  # type: ignore[assignment]
        return package

    return load


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop until it holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.001)


async def in_forward(model: GatedModel) -> None:
    """Wait until the inference thread is inside a (gated) forward pass."""
    assert await asyncio.to_thread(model.entered.wait, 10), "no forward pass started"


def open_gate(model: GatedModel) -> None:
    model.gate.set()


@pytest.fixture
async def gated() -> AsyncIterator[tuple[VQAEngine, GatedModel]]:
    holder: list[GatedModel] = []
    engine = VQAEngine(loader_with(GatedModel, holder), options=EngineOptions(max_batch_size=16))
    async with engine:
        yield engine, holder[0]
        holder[0].gate.set()


async def blocked_batch(engine: VQAEngine, model: GatedModel) -> asyncio.Task:
    """Start one question and hold its forward pass at the gate; returns its task."""
    model.close_gate()
    first = asyncio.create_task(engine.answer(image("red_triangle"), COLOR_Q))
    await in_forward(model)
    return first


# -- answers -------------------------------------------------------------------------------


async def test_answers_questions_about_the_examples() -> None:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        blue = await engine.answer(image("blue_circle"), "what colour is the shape?")
        shape = await engine.answer(image("red_triangle"), "What shape is in the image?")
        wide = await engine.answer(image("blue_circle"), "is there a circle?", top_k=5)
    assert (blue.answer, shape.answer, wide.answer) == ("blue", "triangle", "yes")
    assert blue.confidence > 0.9
    assert len(blue.top_k) == 3  # the default
    assert len(wide.top_k) == 5
    assert blue.top_k[0].answer == "blue"
    assert blue.top_k[0].confidence >= blue.top_k[1].confidence >= blue.top_k[2].confidence


async def test_many_concurrent_users_share_few_forward_passes() -> None:
    names = ["blue_circle", "red_triangle", "green_rectangle", "yellow_circle"]
    expected = {
        "blue_circle": "blue",
        "red_triangle": "red",
        "green_rectangle": "green",
        "yellow_circle": "yellow",
    }
    options = EngineOptions(max_batch_size=32, cache_size=0)
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options) as engine:
        jobs = [names[i % 4] for i in range(200)]
        answers = await asyncio.gather(*(engine.answer(image(n), COLOR_Q) for n in jobs))
        stats = engine.stats()
    assert [a.answer for a in answers] == [expected[n] for n in jobs]
    assert stats.requests["answered"] == 200
    assert stats.batches < 200 / 2  # batched, not one pass per question
    assert stats.mean_batch_size > 2
    assert stats.largest_batch <= 32


async def test_batches_form_while_a_forward_pass_runs(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, model = gated
    warmup_batches = len(model.batch_sizes)
    first = await blocked_batch(engine, model)
    others = [
        asyncio.create_task(engine.answer(image("blue_circle"), f"what color is it {i}")) for i in range(10)
    ]
    await until(lambda: engine.stats().queue_depth == 10)
    open_gate(model)
    results = await asyncio.gather(first, *others)
    assert [r.answer for r in results] == ["red"] + ["blue"] * 10
    assert model.batch_sizes[warmup_batches:] == [1, 10]
    stats = engine.stats()
    assert (stats.batches, stats.largest_batch, stats.mean_batch_size) == (2, 10, 5.5)


async def test_a_batch_never_exceeds_max_batch_size() -> None:
    holder: list[GatedModel] = []
    engine = VQAEngine(loader_with(GatedModel, holder), options=EngineOptions(max_batch_size=4))
    async with engine:
        model = holder[0]
        start = len(model.batch_sizes)
        first = await blocked_batch(engine, model)
        others = [asyncio.create_task(engine.answer(image("blue_circle"), f"q {i}")) for i in range(10)]
        await until(lambda: engine.stats().queue_depth == 10)
        open_gate(model)
        await asyncio.gather(first, *others)
    assert model.batch_sizes[start:] == [1, 4, 4, 2]


# -- bad input stays with its sender -------------------------------------------------------


async def test_bad_images_fail_only_their_own_requests(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, model = gated
    truncated = image("blue_circle")[:200]
    pdf = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    first = await blocked_batch(engine, model)
    jobs = [
        engine.answer(image("blue_circle"), COLOR_Q),
        engine.answer(truncated, COLOR_Q),
        engine.answer(image("green_rectangle"), COLOR_Q),
        engine.answer(pdf, COLOR_Q),
        engine.answer(image("yellow_circle"), "   "),
    ]
    pending = asyncio.gather(*jobs, return_exceptions=True)
    await until(lambda: engine.stats().queue_depth == 2)
    open_gate(model)
    blue, broken, green, document, empty_question = await pending
    await first
    assert isinstance(blue, Prediction) and isinstance(green, Prediction)
    assert (blue.answer, green.answer) == ("blue", "green")
    assert isinstance(broken, CorruptImageError)
    assert str(broken) == "the image file is damaged or incomplete; please send it again"
    assert isinstance(document, UnsupportedImageError)
    assert str(document).startswith("that file is a PDF, not an image I can read")
    assert isinstance(empty_question, InvalidQuestionError)
    stats = engine.stats()
    assert stats.requests["answered"] == 3
    assert stats.requests["rejected"] == 3


async def test_a_failing_batch_is_retried_alone_and_only_the_culprit_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(PoisonedModel, holder), options=EngineOptions(cache_size=0)) as engine:
        model = holder[0]
        first = await blocked_batch(engine, model)
        jobs = [
            engine.answer(image("blue_circle"), COLOR_Q),
            engine.answer(png_bytes(MAGENTA), COLOR_Q),
            engine.answer(image("yellow_circle"), COLOR_Q),
        ]
        pending = asyncio.gather(*jobs, return_exceptions=True)
        await until(lambda: engine.stats().queue_depth == 3)
        with caplog.at_level(logging.WARNING, logger="vqa_engine.serving.engine"):
            open_gate(model)
            blue, poisoned, yellow = await pending
        await first
        stats = engine.stats()
    assert isinstance(blue, Prediction) and isinstance(yellow, Prediction)
    assert (blue.answer, yellow.answer) == ("blue", "yellow")
    assert isinstance(poisoned, InferenceError)
    assert str(poisoned) == "the model could not answer that one; please try another image or question"
    assert isinstance(poisoned.__cause__, RuntimeError)
    assert stats.requests["answered"] == 3 and stats.requests["error"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "a batch of 3 failed (poisoned input); retrying each question alone" in messages
    assert any(m.startswith("the model failed on a question") for m in messages)


async def test_output_count_is_checked_against_the_input_count(caplog: pytest.LogCaptureFixture) -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(ShortModel, holder), options=EngineOptions(cache_size=0)) as engine:
        model = holder[0]
        first = await blocked_batch(engine, model)
        pending = asyncio.gather(*(engine.answer(image("blue_circle"), COLOR_Q) for _ in range(3)))
        await until(lambda: engine.stats().queue_depth == 3)
        with caplog.at_level(logging.WARNING, logger="vqa_engine.serving.engine"):
            open_gate(model)
            answers = await pending
        await first
    assert [a.answer for a in answers] == ["blue"] * 3  # each retried alone, where the model is right
    assert any("model returned 2 rows for 3 inputs" in r.getMessage() for r in caplog.records)


# -- backpressure, timeouts, cancellation ---------------------------------------------------


async def test_busy_when_the_queue_is_full() -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(GatedModel, holder), options=EngineOptions(max_queue=3)) as engine:
        model = holder[0]
        first = await blocked_batch(engine, model)
        queued = [asyncio.create_task(engine.answer(image("blue_circle"), f"q {i}")) for i in range(2)]
        await until(lambda: engine.stats().queue_depth == 2)
        with pytest.raises(EngineBusyError) as refused:
            await engine.answer(image("green_rectangle"), COLOR_Q)
        assert str(refused.value) == "I'm busy answering other questions; please try again in a few seconds"
        assert refused.value.retry_after_s == 5  # as the message words it: an HTTP Retry-After
        open_gate(model)
        answers = await asyncio.gather(first, *queued)
        assert len(answers) == 3
        after = await engine.answer(image("green_rectangle"), COLOR_Q)  # room again
        stats = engine.stats()
    assert after.answer == "green"
    assert stats.requests["busy"] == 1
    assert stats.requests["answered"] == 4


async def test_a_request_times_out_with_a_clear_message() -> None:
    holder: list[GatedModel] = []
    # the held question times out (its batch never finishes); the timeout also bounds the next
    # question's decode and forward pass, which a busy machine can stretch past 0.1 s
    options = EngineOptions(request_timeout_s=1.0)
    async with VQAEngine(loader_with(GatedModel, holder), options=options) as engine:
        model = holder[0]
        model.close_gate()
        with pytest.raises(EngineTimeoutError, match="that took too long") as timed_out:
            await engine.answer(image("blue_circle"), COLOR_Q)
        assert timed_out.value.retry_after_s == 60  # "please try again in a minute"
        assert engine.stats().in_flight == 0
        open_gate(model)
        later = await engine.answer(image("green_rectangle"), COLOR_Q)
        stats = engine.stats()
    assert later.answer == "green"
    assert stats.requests["timeout"] == 1
    assert stats.queue_depth == 0


async def test_a_cancelled_caller_leaves_nothing_behind(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, model = gated
    first = await blocked_batch(engine, model)
    after_first = len(model.batch_sizes)
    doomed = asyncio.create_task(engine.answer(image("blue_circle"), COLOR_Q))
    await until(lambda: engine.stats().queue_depth == 1)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert engine.stats().in_flight == 1  # only the blocked question
    open_gate(model)
    await first
    kept = await engine.answer(image("green_rectangle"), COLOR_Q)
    assert kept.answer == "green"
    assert model.batch_sizes[after_first:] == [1]  # the cancelled question never ran
    stats = engine.stats()
    assert stats.requests["cancelled"] == 1
    assert (stats.queue_depth, stats.in_flight) == (0, 0)


# -- cache ----------------------------------------------------------------------------------


async def test_the_cache_answers_a_repeated_question_without_the_model(
    gated: tuple[VQAEngine, GatedModel],
) -> None:
    engine, model = gated
    first = await engine.answer(image("blue_circle"), "What colour is the shape?")
    passes = len(model.batch_sizes)
    again = await engine.answer(image("blue_circle"), "what color is the shape")  # same words
    other = await engine.answer(image("blue_circle"), "what shape is this?")
    assert again == first
    assert other.answer == "circle"
    stats = engine.stats()
    assert (stats.cache_hits, stats.cache_misses) == (1, 2)
    assert len(model.batch_sizes) == passes + 1  # only the new question reached the model


async def test_the_cache_can_be_turned_off() -> None:
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=EngineOptions(cache_size=0)) as engine:
        a = await engine.answer(image("blue_circle"), COLOR_Q)
        b = await engine.answer(image("blue_circle"), COLOR_Q)
        stats = engine.stats()
    assert a == b
    assert (stats.cache_hits, stats.batches) == (0, 2)


async def test_the_cache_is_bounded() -> None:
    options = EngineOptions(cache_size=2)
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options) as engine:
        for question in ("what color is the shape?", "what shape is this?", "is there a circle?"):
            await engine.answer(image("blue_circle"), question)
        await engine.answer(image("blue_circle"), "what color is the shape?")  # evicted: a miss
        await engine.answer(image("blue_circle"), "is there a circle?")  # still there: a hit
        stats = engine.stats()
    assert (stats.cache_hits, stats.cache_misses) == (1, 4)


# -- the event loop -------------------------------------------------------------------------


async def test_the_event_loop_keeps_ticking_during_a_long_batch(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, model = gated
    await engine.answer(image("yellow_circle"), COLOR_Q)  # cached for later
    first = await blocked_batch(engine, model)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(100):
            await asyncio.sleep(0)
            ticks += 1

    # While the inference thread is stuck in a forward pass, the loop runs other work,
    # decodes and queues new questions, and serves cache hits.
    await asyncio.wait_for(ticker(), timeout=5)
    queued = asyncio.create_task(engine.answer(image("green_rectangle"), COLOR_Q))
    await until(lambda: engine.stats().queue_depth == 1)
    cached = await asyncio.wait_for(engine.answer(image("yellow_circle"), COLOR_Q), timeout=5)
    assert ticks == 100
    assert cached.answer == "yellow"
    assert not first.done()
    open_gate(model)
    assert (await first).answer == "red"
    assert (await queued).answer == "green"


async def test_a_large_photo_decodes_off_the_loop() -> None:
    photo = Image.new("RGB", (1920, 1080), (20, 40, 230))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        prediction = await engine.answer(buf.getvalue(), COLOR_Q)
    assert prediction.answer == "blue"


# -- lifetime -------------------------------------------------------------------------------


async def test_close_answers_what_was_accepted_and_refuses_new_questions(
    gated: tuple[VQAEngine, GatedModel],
) -> None:
    engine, model = gated
    first = await blocked_batch(engine, model)
    queued = [asyncio.create_task(engine.answer(image("blue_circle"), f"what color {i}")) for i in range(4)]
    await until(lambda: engine.stats().queue_depth == 4)
    closing = asyncio.create_task(engine.close())
    await until(lambda: engine.stats().state == "closing")
    with pytest.raises(EngineClosedError, match="please ask again in a minute") as refused:
        await engine.answer(image("blue_circle"), COLOR_Q)
    assert refused.value.retry_after_s == 60
    open_gate(model)
    answers = await asyncio.gather(first, *queued)
    await closing
    assert [a.answer for a in answers] == ["red"] + ["blue"] * 4
    stats = engine.stats()
    assert stats.state == "closed"
    assert stats.requests["closed"] == 1
    assert stats.requests["answered"] == 5


async def test_close_gives_up_after_the_drain_timeout(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, model = gated
    first = await blocked_batch(engine, model)
    queued = asyncio.create_task(engine.answer(image("blue_circle"), COLOR_Q))
    await until(lambda: engine.stats().queue_depth == 1)
    await engine.close(drain_timeout=0.05)
    with pytest.raises(EngineClosedError, match="shutting down") as refused:
        await queued
    assert refused.value.retry_after_s == 60  # "please ask again later"
    model.gate.set()
    first.cancel()


async def test_answer_before_start_is_refused() -> None:
    engine = VQAEngine(lambda: load_package(BUNDLED_MODEL))
    with pytest.raises(EngineClosedError):
        await engine.answer(image("blue_circle"), COLOR_Q)
    await engine.close()  # closing an engine that never started is fine


async def test_a_model_that_cannot_load_fails_start(tmp_path: Path) -> None:
    engine = VQAEngine(lambda: load_package(tmp_path / "missing"))
    with pytest.raises(ModelPackageError, match="does not exist"):
        await engine.start()
    assert engine.stats().state == "closed"
    with pytest.raises(RuntimeError, match="cannot start"):
        await engine.start()


async def test_stats_describe_the_engine(gated: tuple[VQAEngine, GatedModel]) -> None:
    engine, _ = gated
    for name in ("blue_circle", "red_triangle"):
        await engine.answer(image(name), COLOR_Q)
    stats = engine.stats().to_dict()
    assert stats["model_id"] == str(BUNDLED_MODEL)
    assert stats["revision"] is None
    assert stats["device"] == "cpu"
    assert stats["state"] == "running"
    assert stats["requests"] == {
        "answered": 2,
        "rejected": 0,
        "busy": 0,
        "timeout": 0,
        "cancelled": 0,
        "error": 0,
        "closed": 0,
    }
    assert stats["batches"] == 2
    p50, p95, rss = stats["latency_p50_ms"], stats["latency_p95_ms"], stats["memory_rss_mb"]
    assert isinstance(p50, float) and isinstance(p95, float) and p95 >= p50
    assert isinstance(rss, float) and rss > 10
    assert stats["queue_depth"] == 0 and stats["in_flight"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_batch_size", 0), ("max_wait_ms", -1), ("max_queue", 0), ("request_timeout_s", 0), ("top_k", 0)],
)
def test_options_are_validated(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        EngineOptions(**{option: value})  # type: ignore[arg-type]


class FailingModel(GatedModel):
    """Every forward pass fails once ``failing`` is set (say, the machine ran out of memory)."""

    failing = False

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = super().forward(images, tokens, lengths)
        if self.failing:
            raise RuntimeError("out of memory")
        return out


async def test_a_systematic_failure_costs_three_passes_not_one_per_question(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder: list[GatedModel] = []
    async with VQAEngine(loader_with(FailingModel, holder), options=EngineOptions(cache_size=0)) as engine:
        model = holder[0]
        first = await blocked_batch(engine, model)
        model.failing = True  # type: ignore[assignment]
        pending = asyncio.gather(
            *(engine.answer(image("blue_circle"), f"question {i}") for i in range(6)), return_exceptions=True
        )
        await until(lambda: engine.stats().queue_depth == 6)
        passes_before = len(model.batch_sizes)
        with caplog.at_level(logging.WARNING, logger="vqa_engine.serving.engine"):
            open_gate(model)
            results = await pending
        await asyncio.gather(first, return_exceptions=True)
        stats = engine.stats()
    assert all(isinstance(r, InferenceError) for r in results)
    assert model.batch_sizes[passes_before:] == [6, 1, 1]  # the batch, two alone, then no more passes
    assert stats.requests["error"] == 7  # the six and the question that was blocked
    messages = [r.getMessage() for r in caplog.records]
    assert "a batch of 6 failed (out of memory); retrying each question alone" in messages
    assert "2 questions failed alone too: failing the other 4 of the batch without running them" in messages


async def test_close_while_the_model_loads_keeps_the_engine_closed() -> None:
    loading = threading.Event()
    release = threading.Event()

    def slow_load() -> ModelPackage:
        loading.set()
        assert release.wait(30), "the test never released the loader"
        return load_package(BUNDLED_MODEL)

    engine = VQAEngine(slow_load)
    starting = asyncio.create_task(engine.start())
    assert await asyncio.to_thread(loading.wait, 30)
    await engine.close()
    release.set()
    with pytest.raises(EngineClosedError, match="closed while the model was loading"):
        await starting
    assert engine.stats().state == "closed"
    with pytest.raises(EngineClosedError):
        await engine.answer(image("blue_circle"), COLOR_Q)


async def test_the_engine_says_what_model_answers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vqa_engine.serving.engine"):
        async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
            info = engine.model_info
            size = engine.input_size
            stats = engine.stats()
    assert size == 64  # the bundled model reads 64×64 images
    assert (info.backend, info.answers, info.dtype, info.quantize) == ("modular", 13, "float32", "none")
    assert (stats.backend, stats.answers, stats.dtype, stats.quantize) == ("modular", 13, "float32", "none")
    assert any(
        r.getMessage().startswith(f"model ready: {BUNDLED_MODEL} (modular, 13 answers, float32, on cpu)")
        for r in caplog.records
    )


async def test_input_size_before_start_is_refused() -> None:
    engine = VQAEngine(lambda: load_package(BUNDLED_MODEL))
    with pytest.raises(EngineClosedError, match="not loaded yet"):
        _ = engine.input_size
