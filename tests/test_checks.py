"""Image familiarity and the answer checks: what a user sees in a ``Prediction`` and in ``--json``."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

import main
from tests.conftest import BUNDLED_MODEL, ROOT, build_model, png_bytes, run_main
from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.familiarity import FamiliarityModel, describe_images, descriptor_size, fit_familiarity
from vqa_engine.checks.options import CheckOptions
from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.package import load_package, save_package
from vqa_engine.modular.predictor import Predictor
from vqa_engine.prediction import Candidate, Prediction

EXAMPLES = ROOT / "examples"
PHOTOS = ROOT / "benchmarks" / "ood" / "photos"


def ask_json(capsys: pytest.CaptureFixture[str], image: Path, question: str) -> dict[str, Any]:
    assert main.main(["ask", str(image), question, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- what the user sees ------------------------------------------------------------------


def test_a_photo_is_answered_as_a_guess_from_a_child_process() -> None:
    result = run_main("ask", str(PHOTOS / "chelsea.jpg"), "what animal is this?", "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["abstain"] is True
    assert data["reason"] == "unfamiliar_image"  # the picture is the first thing wrong
    assert data["unknown_words"] == ["animal"]  # ... and the word is named anyway
    assert data["familiarity"] < 0.001
    assert data["confidence"] < 0.5  # and the model itself is unsure (outlier exposure in training)


@pytest.mark.parametrize(
    ("image", "question", "reason", "unknown"),
    [
        ("yellow_circle", "what color is the shape?", None, []),
        ("yellow_circle", "is it a dog?", "unknown_words", ["dog"]),
        ("yellow_circle", "asdf qwer zxcv", "unknown_words", ["asdf", "qwer", "zxcv"]),
        ("yellow_circle", "🤔🤔", "unknown_words", []),
        ("yellow_circle", "is the shape red?", "answer_type", []),  # it answers a shape
        ("yellow_circle", "how many shapes?", "unknown_words", ["how", "many", "shapes"]),
    ],
)
def test_questions_beyond_the_model_are_answered_as_guesses(
    capsys: pytest.CaptureFixture[str], image: str, question: str, reason: str | None, unknown: list[str]
) -> None:
    data = ask_json(capsys, EXAMPLES / f"{image}.png", question)
    assert (data["abstain"], data["reason"], data["unknown_words"]) == (reason is not None, reason, unknown)
    assert 0.001 < data["familiarity"] <= 1  # the picture itself is fine


@pytest.mark.parametrize("name", ["coffee", "astronaut", "rocket"])
def test_photographs_are_unfamiliar(capsys: pytest.CaptureFixture[str], name: str) -> None:
    data = ask_json(capsys, PHOTOS / f"{name}.jpg", "what shape is in the image?")
    assert (data["abstain"], data["reason"]) == (True, "unfamiliar_image")


def test_a_full_hd_noise_picture_is_a_guess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    path = tmp_path / "noise.png"
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = ask_json(capsys, path, "what shape is in the image?")
    # reduced to the model's 64 px, a frame of noise is a grey blur: the model cannot tell, and says so
    assert data["abstain"] is True and data["reason"] in ("unfamiliar_image", "low_confidence")
    assert data["confidence"] < 0.5


def test_checks_off_answer_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    package = load_package(BUNDLED_MODEL)
    photo = (PHOTOS / "coffee.jpg").read_bytes()
    on = Predictor(package).predict(photo, "what shape is in the image?")
    off = Predictor(package, checks=CheckOptions(answer_checks=False)).predict(
        photo, "what shape is in the image?"
    )
    assert on.answer == off.answer and on.confidence == off.confidence  # the checks change no answer
    assert on.abstain and not off.abstain
    assert (off.reason, off.unknown_words, off.familiarity) == (None, (), None)


# -- the verdict ---------------------------------------------------------------------------


def prediction(answer: str = "yes", confidence: float = 0.99) -> Prediction:
    return Prediction(answer, confidence, (Candidate(answer, confidence),))


def checks_for(options: CheckOptions = CheckOptions()) -> AnswerChecks:
    return AnswerChecks(
        options, vocabulary=["is", "there", "a", "red", "shape"], answers=["yes", "no", "red"]
    )


def test_low_confidence_is_the_last_reason() -> None:
    checks = checks_for()
    [unsure, sure] = checks.apply(
        [prediction(confidence=0.4), prediction(confidence=0.6)], ["is there a red shape?"] * 2
    )
    assert (unsure.abstain, unsure.reason) == (True, "low_confidence")
    assert (sure.abstain, sure.reason, sure.familiarity) == (False, None, None)  # no statistics: null
    [both] = checks.apply([prediction(confidence=0.4)], ["is there a dog?"])
    assert both.reason == "unknown_words"  # the more fundamental reason wins
    strict = checks_for(CheckOptions(min_confidence=0.7)).apply(
        [prediction(confidence=0.6)], ["is there a red shape?"]
    )
    assert strict[0].reason == "low_confidence"


def test_each_question_check_can_be_turned_off() -> None:
    options = CheckOptions(check_unknown_words=False, check_answer_type=False)
    [dog, wrong] = checks_for(options).apply(
        [prediction(), prediction("red")], ["is there a dog?", "is there a red shape?"]
    )
    assert not dog.abstain and dog.unknown_words == ("dog",)  # still named
    assert not wrong.abstain


def test_describe_says_which_image_check_is_in_use() -> None:
    assert checks_for().image_check == "confidence"
    assert "has no image statistics" in checks_for().describe()
    assert "under 50% confidence" in checks_for().describe()
    assert checks_for(CheckOptions(answer_checks=False)).describe().startswith("answer checks: off")
    bundled = Predictor(load_package(BUNDLED_MODEL)).checks
    assert bundled.image_check == "familiarity"
    assert "familiarity statistics (24 clusters, 8000 training pictures)" in bundled.describe()
    assert "chosen for MAX_ANSWER_RISK=0.01: on validation" in bundled.describe()


@pytest.mark.parametrize(
    ("field", "value"), [("min_image_familiarity", 1.5), ("min_confidence", -0.1), ("answer_checks", "maybe")]
)
def test_options_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        CheckOptions(**{field: value})  # type: ignore[arg-type]


def test_prediction_json_keeps_the_old_keys_and_adds_the_new() -> None:
    p = Prediction(
        "red", 0.9, (Candidate("red", 0.9), Candidate("blue", 0.1)), True, "answer_type", ("dog",), 0.25
    )
    assert p.to_dict() == {
        "answer": "red",
        "confidence": 0.9,
        "top_k": [{"answer": "red", "confidence": 0.9}, {"answer": "blue", "confidence": 0.1}],
        "abstain": True,
        "reason": "answer_type",
        "unknown_words": ["dog"],
        "familiarity": 0.25,
    }
    assert p.truncated(1) == replace(p, top_k=(Candidate("red", 0.9),))


# -- familiarity statistics -----------------------------------------------------------------


def test_familiarity_separates_pictures_unlike_the_fitted_ones(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=generator) * 4
    training = centres[torch.arange(600) % 3] + torch.randn(600, 8, generator=generator)
    model = fit_familiarity(training, clusters=3, holdout=0.25, seed=1)
    assert model.info["pictures_fitted"] == 450 and model.info["pictures_held_out"] == 150
    typical = centres[torch.arange(300) % 3] + torch.randn(300, 8, generator=generator)
    strange = torch.randn(50, 8, generator=generator) * 4 + 20
    familiar = model.familiarity(model.scores(typical))
    unfamiliar = model.familiarity(model.scores(strange))
    assert sum(f < 0.001 for f in familiar) <= 3  # about the share the threshold promises
    assert 0.3 < sorted(familiar)[150] < 0.7  # a typical picture: about half are stranger
    assert max(unfamiliar) < 1e-6
    assert all(0 <= f <= 1 for f in familiar + unfamiliar)

    path = tmp_path / "familiarity.safetensors"
    model.save(path)
    loaded = FamiliarityModel.load(path)
    assert loaded.familiarity(loaded.scores(typical)) == pytest.approx(familiar, rel=1e-3, abs=1e-6)
    assert loaded.info == model.info
    assert model.threshold_score(0.001) > model.tail_start


def test_describe_images_matches_a_plain_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(5, 4, 8, 8, generator=generator), torch.rand(5, 6, 4, 4, generator=generator)]

    def reference(feature_map: torch.Tensor) -> torch.Tensor:
        flat = feature_map.flatten(2)
        background = feature_map[:, :, ::1, ::1].flatten(2).median(dim=2, keepdim=True).values
        distance = (flat - background).norm(dim=1, keepdim=True) + 1e-6
        weight = distance / distance.sum(2, keepdim=True)
        stats = [flat.mean(2), flat.amax(2), flat.std(2, correction=0), (flat * weight).sum(2)]
        return torch.stack(stats, dim=1)  # (B, 4, C)

    early = maps[0].flatten(2)
    expected = torch.cat([reference(maps[1]).flatten(1), early.mean(2), early.amax(2)], dim=1)
    assert describe_images(maps).shape == (5, descriptor_size([4, 6])) == (5, 4 * 6 + 2 * 4)
    assert torch.allclose(describe_images(maps), expected, atol=1e-5)


def test_a_package_without_statistics_falls_back_to_the_confidence_rule(small_package: Path) -> None:
    package = load_package(small_package)
    assert package.familiarity is None and package.question_forms is None
    [p] = Predictor(package).predict_batch(
        torch.zeros(1, 3, 64, 64, dtype=torch.uint8), ["what color is the shape?"]
    )
    assert p.familiarity is None
    assert p.reason in (None, "low_confidence", "answer_type")


def test_statistics_that_do_not_fit_the_model_are_refused(tmp_path: Path) -> None:
    model, vocab, answers = build_model()
    wrong = fit_familiarity(torch.randn(100, 10), clusters=2)
    folder = save_package(tmp_path / "pkg", model, vocab, answers, familiarity=wrong)
    with pytest.raises(
        ModelPackageError, match=r"describes 10 image features but this model's encoder gives 160"
    ):
        load_package(folder)
    assert load_package(folder, checks_data=False).familiarity is None  # what calibrate uses


def test_statistics_of_another_layout_are_refused(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / "pkg"
    shutil.copytree(BUNDLED_MODEL, folder)
    path = folder / "familiarity.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["familiarity"])
    header["descriptor"] = "v0: something else"
    save_file(tensors, str(path), metadata={"familiarity": json.dumps(header)})
    with pytest.raises(ModelPackageError, match="another layout of image features"):
        load_package(folder)
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelPackageError, match="not a valid familiarity file"):
        load_package(folder)


def test_a_model_that_cannot_return_its_features_still_answers() -> None:
    package = load_package(BUNDLED_MODEL)

    class Opaque(torch.nn.Module):  # e.g. another backend: logits only
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return self.inner(images, tokens, lengths)

    package.model = Opaque(package.model)  # type: ignore[assignment]
    p = Predictor(package).predict(png_bytes((0, 0, 255)), "what color is the shape?")
    assert (p.answer, p.familiarity) == ("blue", None)


# -- inside the engine's batches ------------------------------------------------------------


async def test_the_engine_checks_every_answer_of_a_batch() -> None:
    from vqa_engine import VQAEngine

    photo = (PHOTOS / "astronaut.jpg").read_bytes()
    circle = (EXAMPLES / "yellow_circle.png").read_bytes()
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL)) as engine:
        answers = await asyncio.gather(
            engine.answer(photo, "what shape is in the image?"),
            engine.answer(circle, "what color is the shape?"),
            engine.answer(circle, "is it a dog?"),
            engine.answer(circle, "is the shape red?"),
        )
    assert [a.reason for a in answers] == ["unfamiliar_image", None, "unknown_words", "answer_type"]
    assert answers[1].answer == "yellow" and not answers[1].abstain
    assert answers[0].familiarity is not None and answers[0].familiarity < 0.001


async def test_the_engine_passes_its_check_options_on() -> None:
    from vqa_engine import VQAEngine

    photo = (PHOTOS / "astronaut.jpg").read_bytes()
    options = CheckOptions(answer_checks=False)
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL), checks=options) as engine:
        answer = await engine.answer(photo, "what shape is in the image?")
    assert (answer.abstain, answer.reason, answer.familiarity) == (False, None, None)
