"""Answer or escalate (``ESCALATE_TO``): the bundled model answers what it knows, a tiny
random-weight ViLT (or BLIP) answers what the bundled model abstains on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bots import replies
from bots.events import ChatEvent, Command, ImageRef
from bots.prediction_log import PredictionLog
from tests.conftest import BUNDLED_MODEL, ROOT, run_main
from tests.core_builder import build_test_core
from tests.tiny_models import save_tiny_blip, save_tiny_vilt
from vqa_engine import ModelNotFoundError, Prediction, VQAEngine
from vqa_engine.backends.base import Backend
from vqa_engine.backends.escalation import Escalation
from vqa_engine.checks.options import CheckOptions
from vqa_engine.loading.loader import load_backend
from vqa_engine.options import ModelOptions

EXAMPLES = ROOT / "examples"
PHOTO = (ROOT / "benchmarks" / "ood" / "photos" / "chelsea.jpg").read_bytes()
ANIMAL_Q = "what animal is this?"
COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is in the image?"
EASY = [
    (EXAMPLES / f"{name}.png").read_bytes() for name in ("red_triangle", "blue_circle", "green_rectangle")
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"vilt": save_tiny_vilt(root / "vilt"), "blip": save_tiny_blip(root / "blip")}


class Calls:
    """Counts the second model's batches and the questions in each (the logic stays real)."""

    def __init__(self, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.questions: list[list[str]] = []
        real = backend.predict_batch

        def counted(
            inputs: Sequence[object], questions: Sequence[str], *, top_k: int = 3
        ) -> list[Prediction]:
            self.questions.append(list(questions))
            return real(inputs, questions, top_k=top_k)

        monkeypatch.setattr(backend, "predict_batch", counted)


@pytest.fixture(scope="module")
def pair(tiny: dict[str, Path]) -> Escalation:
    backend = load_backend(ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=str(tiny["vilt"])))
    assert isinstance(backend, Escalation)
    backend.use_checks(CheckOptions())
    return backend


def answer_all(backend: Backend, jobs: Sequence[tuple[bytes, str]], *, top_k: int = 3) -> list[Prediction]:
    inputs = [backend.preprocess(image) for image, _ in jobs]
    return backend.predict_batch(inputs, [q for _, q in jobs], top_k=top_k)


def test_easy_vqa_pictures_are_answered_by_the_first_alone(
    pair: Escalation, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(pair.second, monkeypatch)
    jobs = [(image, q) for image in EASY for q in (COLOR_Q, SHAPE_Q)]
    got = answer_all(pair, jobs)
    alone = answer_all(pair.first, jobs)
    assert calls.questions == []  # the second never ran
    assert [p.model for p in got] == [str(BUNDLED_MODEL)] * len(jobs)
    assert [(p.answer, p.abstain) for p in got] == [(p.answer, False) for p in alone]
    assert [p.answer for p in got[:2]] == ["red", "triangle"]


@pytest.mark.parametrize(("image", "question"), [(PHOTO, ANIMAL_Q), (PHOTO, COLOR_Q), (EASY[0], ANIMAL_Q)])
def test_a_photo_or_an_unknown_word_goes_to_the_second(
    pair: Escalation, monkeypatch: pytest.MonkeyPatch, image: bytes, question: str
) -> None:
    calls = Calls(pair.second, monkeypatch)
    first = pair.first.predict(image, question)
    got = pair.predict(image, question, top_k=5)
    assert calls.questions == [[question]]
    prepared = pair.preprocess(image)[1]  # type: ignore[index]  # decoded once, at the larger side
    alone = pair.second.predict_batch([prepared], [question], top_k=5)[0]
    assert first.abstain and first.reason in ("unfamiliar_image", "unknown_words")
    assert got.model == str(pair.second.info.model_id)
    assert [c.answer for c in got.top_k] == [c.answer for c in alone.top_k]
    assert [c.confidence for c in got.top_k] == pytest.approx([c.confidence for c in alone.top_k], abs=1e-5)
    assert (got.abstain, got.reason) == (alone.abstain, alone.reason)  # the second's own judgement


def test_a_mixed_batch_keeps_its_order_and_runs_the_second_once(
    pair: Escalation, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(pair.second, monkeypatch)
    jobs = [
        (EASY[0], COLOR_Q),
        (PHOTO, ANIMAL_Q),
        (EASY[1], SHAPE_Q),
        (EASY[2], ANIMAL_Q),
        (EASY[2], COLOR_Q),
    ]
    got = answer_all(pair, jobs)
    first, second = str(BUNDLED_MODEL), str(pair.second.info.model_id)
    assert [p.model for p in got] == [first, second, first, second, first]
    assert calls.questions == [[ANIMAL_Q, ANIMAL_Q]]  # one batch: the two the first abstained on
    assert [got[i].answer for i in (0, 2, 4)] == ["red", "circle", "green"]
    alone = answer_all(pair.second, [jobs[1], jobs[3]])
    assert [got[1].answer, got[3].answer] == [p.answer for p in alone]


def test_a_generative_second_model_answers_too(tiny: dict[str, Path]) -> None:
    backend = load_backend(ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=str(tiny["blip"])))
    got = answer_all(backend, [(PHOTO, ANIMAL_Q), (EASY[0], COLOR_Q)])
    assert [p.model for p in got] == [str(tiny["blip"]), str(BUNDLED_MODEL)]
    assert backend.info.escalates_to is not None
    assert backend.info.escalates_to.backend == "transformers-generative"


def test_the_checks_judge_both_models(pair: Escalation) -> None:
    strict = CheckOptions(min_confidence=0.99)
    pair.use_checks(strict)
    try:
        assert pair.first.checks.options == strict and pair.second.checks.options == strict
        assert pair.checks is pair.first.checks
    finally:
        pair.use_checks(CheckOptions())


def test_info_names_both_models(pair: Escalation, tiny: dict[str, Path]) -> None:
    info = pair.info
    assert (info.model_id, info.backend, info.answers) == (str(BUNDLED_MODEL), "modular", 13)
    assert info.escalates_to is not None and info.escalates_to.model_id == str(tiny["vilt"])
    assert info.input_size == 64  # the larger of 64 and 32
    assert f"; escalates to {tiny['vilt']} (transformers-classifier" in info.describe()


def test_the_prediction_names_its_model_only_when_a_pair_answers(pair: Escalation) -> None:
    got = pair.predict(PHOTO, ANIMAL_Q)
    data = got.to_dict()
    assert data["model"] == got.model and Prediction.from_dict(data) == got
    single = pair.first.predict(EASY[0], COLOR_Q)
    assert single.model is None and "model" not in single.to_dict()
    stored_before = {k: v for k, v in got.to_dict().items() if k != "model"}  # an older cache entry
    assert Prediction.from_dict(stored_before).model is None


# -- loading ------------------------------------------------------------------------------------


def test_a_blank_setting_is_off() -> None:
    options = ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to="  ")
    assert options.escalate_to is None and ModelOptions().escalate_to is None
    backend = load_backend(options)
    assert not isinstance(backend, Escalation) and backend.info.escalates_to is None


def test_the_model_that_cannot_load_is_named(tiny: dict[str, Path], tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(ModelNotFoundError) as second:
        load_backend(ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=str(nowhere)))
    assert str(second.value).startswith(f"ESCALATE_TO ({nowhere}) cannot load: ")
    with pytest.raises(ModelNotFoundError) as first:
        load_backend(ModelOptions(model_repo_id=str(nowhere), escalate_to=str(tiny["vilt"])))
    assert str(first.value).startswith(f"MODEL_REPO_ID ({nowhere}) cannot load: ")
    with pytest.raises(ModelNotFoundError) as member:
        load_backend(ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=f"{tiny['vilt']},{nowhere}"))
    assert f"ESCALATE_TO ({tiny['vilt']},{nowhere}) cannot load: ensemble member 2 of 2" in str(member.value)
    assert "\n" not in str(member.value)


def test_ask_json_names_the_model_that_answered(tiny: dict[str, Path]) -> None:
    env = {"MODEL_REPO_ID": str(BUNDLED_MODEL), "ESCALATE_TO": str(tiny["vilt"])}
    photo = str(ROOT / "benchmarks" / "ood" / "photos" / "chelsea.jpg")
    escalated = run_main("ask", photo, ANIMAL_Q, "--json", env=env)
    easy = run_main("ask", str(EXAMPLES / "red_triangle.png"), COLOR_Q, "--json", env=env)
    assert escalated.returncode == 0 and easy.returncode == 0, (
        escalated.stderr.decode() + easy.stderr.decode()
    )
    assert json.loads(escalated.stdout)["model"] == str(tiny["vilt"])
    assert json.loads(easy.stdout)["model"] == str(BUNDLED_MODEL)
    assert json.loads(easy.stdout)["answer"] == "red"


# -- through the engine and the chat core ---------------------------------------------------------


def chat(text: str, image: bytes, *, user: str = "42", command: Command | None = None) -> ChatEvent:
    async def fetch(_: ImageRef) -> bytes:
        return image

    return ChatEvent(
        platform="telegram",
        chat_id="1000",
        chat_type="private",
        private=True,
        user_id=user,
        addressed=True,
        fetch=fetch,
        text=text,
        images=(ImageRef("photo"),) if command is None else (),
        command=command,
    )


async def test_the_engine_and_the_chat_say_which_model_answered(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    options = ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=str(tiny["vilt"]))
    log = PredictionLog(tmp_path / "predictions.jsonl", salt="test-salt")
    async with VQAEngine(lambda: load_backend(options)) as engine:
        mixed = await asyncio.gather(
            engine.answer(EASY[0], COLOR_Q), engine.answer(PHOTO, ANIMAL_Q), engine.answer(EASY[1], SHAPE_Q)
        )
        core = build_test_core(engine, log, admin_ids="telegram:1", platforms=lambda: ["telegram"])
        easy = await core.handle(chat(COLOR_Q, EASY[0]))
        photo = await core.handle(chat(ANIMAL_Q, PHOTO, user="43"))
        health = await core.handle(chat("", b"", user="1", command=Command.HEALTH))
        stats = engine.stats()
    log.close()
    entries = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [p.model for p in mixed] == [str(BUNDLED_MODEL), str(tiny["vilt"]), str(BUNDLED_MODEL)]
    assert [p.answer for p in (mixed[0], mixed[2])] == ["red", "circle"]
    assert easy is not None and replies.ESCALATED not in easy.text and easy.text.startswith("red")
    assert photo is not None and photo.text.endswith("\n" + replies.ESCALATED)
    assert [e["model"] for e in entries] == [str(BUNDLED_MODEL), str(tiny["vilt"])]
    assert stats.escalates_to is not None and stats.escalates_to.model_id == str(tiny["vilt"])
    assert health is not None
    lines = health.text.splitlines()
    assert f"model: {BUNDLED_MODEL}" in lines
    assert f"escalates to: {tiny['vilt']} (transformers-classifier, 7 answers, float32)" in lines


async def test_a_second_model_that_writes_sentences_is_shown_without_a_percentage(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from tests.tiny_models import save_tiny_smolvlm

    vlm = save_tiny_smolvlm(tmp_path_factory.mktemp("vlm") / "smolvlm")
    options = ModelOptions(model_repo_id=str(BUNDLED_MODEL), escalate_to=str(vlm), max_new_tokens=4)
    log = PredictionLog(tmp_path / "predictions.jsonl", salt="test-salt")
    async with VQAEngine(lambda: load_backend(options)) as engine:
        facts = engine.model_facts
        core = build_test_core(engine, log)
        easy = await core.handle(chat(COLOR_Q, EASY[0]))
        photo = await core.handle(chat(ANIMAL_Q, PHOTO, user="43"))
    log.close()
    assert (facts.written_answers, facts.escalates_to, facts.escalation_writes) == (False, str(vlm), True)
    assert easy is not None and "% sure" in easy.text  # the first model's answer, as before
    assert photo is not None and photo.text.endswith("\n" + replies.ESCALATED)
    assert "%" not in photo.text and "chart" not in {b.value for b in photo.buttons}
