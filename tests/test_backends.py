"""Real VQA architectures behind the engine: transformers classifiers (ViLT) and generators (BLIP),
int8, ensembles and ONNX packages, each built here with random weights and served from a folder.

Nothing is downloaded: ``tests/tiny_models.py`` writes tiny models with the real transformers
classes and processors; the Hub path is in ``tests/test_backends_hub.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import BUNDLED_MODEL, build_model, png_bytes
from tests.tiny_models import VILT_ANSWERS, VILT_TEXT_LENGTH, save_tiny_blip, save_tiny_vilt
from vqa_engine import EngineOptions, ModelNotFoundError, ModelPackageError, VQAEngine
from vqa_engine.backends.base import Backend
from vqa_engine.backends.ensemble import Ensemble
from vqa_engine.backends.folder import open_folder
from vqa_engine.backends.quantize import count_int8_linear
from vqa_engine.loading.loader import load_backend
from vqa_engine.modular.onnx_config import OnnxConfig
from vqa_engine.modular.package import load_package, save_package
from vqa_engine.options import ModelOptions
from vqa_engine.preprocess import decode_image

IMAGES = [
    png_bytes((255, 0, 0), (40, 30)),  # landscape
    png_bytes((0, 0, 255), (64, 64)),
    png_bytes((0, 160, 0), (24, 90)),  # portrait: ViLT keeps the aspect ratio, so sizes differ
    png_bytes((250, 250, 0), (50, 50)),
]
QUESTIONS = [
    "what color is the shape?",
    "how many cats are there in the image?",
    "is there a red circle?",
    "what is " + "the " * 100 + "shape?",  # 414 characters, far more than the 12 text positions
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"vilt": save_tiny_vilt(root / "vilt"), "blip": save_tiny_blip(root / "blip")}


@pytest.fixture(scope="module")
def vilt(tiny: dict[str, Path]) -> Backend:
    return open_folder(tiny["vilt"])


@pytest.fixture(scope="module")
def blip(tiny: dict[str, Path]) -> Backend:
    return open_folder(tiny["blip"])


def batched_and_alone(backend: Backend, *, top_k: int = 5) -> list[tuple[list, list]]:
    """(batched, alone) candidate lists for every (image, question) of the module's set."""
    inputs = [backend.preprocess(image) for image in IMAGES]
    batched = backend.predict_batch(inputs, QUESTIONS, top_k=top_k)
    alone = [backend.predict_batch([i], [q], top_k=top_k)[0] for i, q in zip(inputs, QUESTIONS, strict=True)]
    return [(list(b.top_k), list(a.top_k)) for b, a in zip(batched, alone, strict=True)]


# -- transformers classifiers (ViLT) -------------------------------------------------------------


def test_a_vilt_folder_is_recognised_and_described(vilt: Backend) -> None:
    info = vilt.info
    assert (info.backend, info.answers, info.dtype, info.quantize) == (
        "transformers-classifier",
        len(VILT_ANSWERS),
        "float32",
        "none",
    )
    assert info.input_size == 32  # the processor's shortest edge


def test_vilt_confidences_are_its_sigmoids_through_its_own_processor(
    tiny: dict[str, Path], vilt: Backend
) -> None:
    from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny["vilt"])
    model = AutoModelForVisualQuestionAnswering.from_pretrained(tiny["vilt"]).eval()
    image = decode_image(IMAGES[0])
    encoded = processor(images=image, text=QUESTIONS[0], return_tensors="pt")
    with torch.inference_mode():
        expected = torch.sigmoid(model(**encoded).logits[0])
    prediction = vilt.predict(IMAGES[0], QUESTIONS[0], top_k=len(VILT_ANSWERS))
    got = {c.answer: c.confidence for c in prediction.top_k}
    assert set(got) == set(VILT_ANSWERS)  # top_k can ask for every answer
    for i, answer in enumerate(VILT_ANSWERS):
        assert got[answer] == pytest.approx(float(expected[i]), abs=1e-5)
    assert prediction.answer == VILT_ANSWERS[int(expected.argmax())]
    ranked = [c.confidence for c in prediction.top_k]
    assert ranked == sorted(ranked, reverse=True)


def test_vilt_batched_equals_one_at_a_time(vilt: Backend) -> None:
    for batched, alone in batched_and_alone(vilt):
        assert [c.answer for c in batched] == [c.answer for c in alone]
        assert [c.confidence for c in batched] == pytest.approx([c.confidence for c in alone], abs=1e-4)


def test_a_question_longer_than_the_model_reads_is_cut_not_a_crash(vilt: Backend) -> None:
    tokens = vilt.tokenizer(QUESTIONS[3])["input_ids"]  # type: ignore[attr-defined]
    assert len(tokens) > VILT_TEXT_LENGTH
    assert vilt.predict(IMAGES[0], QUESTIONS[3]).answer in VILT_ANSWERS


def test_int8_quantizes_the_linear_layers_and_keeps_the_answers(tiny: dict[str, Path], vilt: Backend) -> None:
    quantized = open_folder(tiny["vilt"], options=ModelOptions(quantize="int8", device="cpu"))
    assert quantized.info.quantize == "int8"
    assert quantized.info.dtype.startswith("int8")
    assert count_int8_linear(quantized.model) > 10  # type: ignore[attr-defined]
    assert count_int8_linear(vilt.model) == 0  # type: ignore[attr-defined]
    for image, question in zip(IMAGES, QUESTIONS, strict=True):
        fp32 = vilt.predict(image, question, top_k=3)
        int8 = quantized.predict(image, question, top_k=3)
        assert int8.answer == fp32.answer
        assert int8.confidence == pytest.approx(fp32.confidence, abs=0.02)


# -- generative models (BLIP) -------------------------------------------------------------------


def test_blip_answers_from_beam_search_with_answer_probabilities(
    tiny: dict[str, Path], blip: Backend
) -> None:
    from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

    assert (blip.info.backend, blip.info.answers) == ("transformers-generative", None)
    prediction = blip.predict(IMAGES[1], QUESTIONS[0], top_k=3)
    answers = [c.answer for c in prediction.top_k]
    confidences = [c.confidence for c in prediction.top_k]
    assert 2 <= len(answers) <= 3 and len(set(answers)) == len(answers) and all(answers)
    assert confidences == sorted(confidences, reverse=True) and 0 < confidences[-1] <= confidences[0] <= 1
    # the beams of transformers' own generate, ranked by whole-answer probability; an empty
    # answer (the end token first) is not an answer
    processor = AutoProcessor.from_pretrained(tiny["blip"])
    model = AutoModelForVisualQuestionAnswering.from_pretrained(tiny["blip"]).eval()
    encoded = processor(images=decode_image(IMAGES[1]), text=QUESTIONS[0], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **encoded, num_beams=3, num_return_sequences=3, length_penalty=0.0, max_new_tokens=16
        )
    written = [processor.decode(o, skip_special_tokens=True).strip() for o in out]
    assert answers == [a for a in dict.fromkeys(written) if a]


def test_blip_batched_equals_one_at_a_time(blip: Backend) -> None:
    for batched, alone in batched_and_alone(blip, top_k=3):
        assert [c.answer for c in batched] == [c.answer for c in alone]
        assert [c.confidence for c in batched] == pytest.approx([c.confidence for c in alone], abs=1e-4)


def test_blip_with_one_beam_is_greedy(tiny: dict[str, Path]) -> None:
    greedy = open_folder(tiny["blip"], options=ModelOptions(num_beams=1))
    prediction = greedy.predict(IMAGES[0], QUESTIONS[0], top_k=5)
    assert len(prediction.top_k) == 1 and 0 < prediction.confidence <= 1


# -- through the engine -------------------------------------------------------------------------


async def test_the_engine_batches_a_transformers_model_and_reports_it(
    vilt: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [(IMAGES[i % 4], QUESTIONS[i % 4] + " " * (i // 4)) for i in range(16)]
    with caplog.at_level(logging.INFO, logger="vqa_engine.serving.engine"):
        async with VQAEngine(lambda: vilt, options=EngineOptions(cache_size=0)) as engine:
            answers = await asyncio.gather(*(engine.answer(image, q, top_k=5) for image, q in jobs))
            stats = engine.stats()
            size = engine.input_size
    alone = [vilt.predict(image, q, top_k=5) for image, q in jobs]
    for got, expected in zip(answers, alone, strict=True):
        assert [c.answer for c in got.top_k] == [c.answer for c in expected.top_k]
        assert [c.confidence for c in got.top_k] == pytest.approx(
            [c.confidence for c in expected.top_k], abs=1e-4
        )
    assert stats.batches < 16 and stats.requests["answered"] == 16
    assert (stats.backend, stats.answers, stats.dtype, size) == ("transformers-classifier", 7, "float32", 32)
    assert any(
        "model ready: " in r.getMessage() and "transformers-classifier" in r.getMessage()
        for r in caplog.records
    )


async def test_int8_is_announced_at_start_up_and_in_the_stats(
    tiny: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    options = ModelOptions(model_repo_id=str(tiny["vilt"]), quantize="int8")
    with caplog.at_level(logging.INFO, logger="vqa_engine.serving.engine"):
        async with VQAEngine(lambda: load_backend(options)) as engine:
            await engine.answer(IMAGES[0], QUESTIONS[0])
            stats = engine.stats()
    assert stats.quantize == "int8"
    assert any(r.getMessage().endswith("QUANTIZE=int8") for r in caplog.records)
    assert stats.dtype.startswith("int8")


# -- ensembles ----------------------------------------------------------------------------------


def test_an_ensemble_averages_by_answer_over_the_union_of_answer_spaces(tiny: dict[str, Path]) -> None:
    spec = f"{tiny['vilt']}:3,{BUNDLED_MODEL}:1"
    ensemble = load_backend(ModelOptions(model_repo_id=spec))
    vilt, ours = ensemble.members  # type: ignore[attr-defined]
    assert ensemble.weights == pytest.approx([0.75, 0.25])  # type: ignore[attr-defined]
    # ViLT's "Blue" is our "blue": 7 + 13 answers, 5 shared (yes, no, red, blue, circle)
    assert ensemble.info.answers == 15
    assert ensemble.info.input_size == 64  # the larger of 32 and 64
    image, question = IMAGES[1], QUESTIONS[0]
    a = {c.answer.lower(): c.confidence for c in vilt.predict(image, question, top_k=99).top_k}
    b = {c.answer: c.confidence for c in ours.predict(image, question, top_k=99).top_k}
    expected = {answer: 0.75 * a.get(answer, 0.0) + 0.25 * b.get(answer, 0.0) for answer in {*a, *b}}
    got = {c.answer: c.confidence for c in ensemble.predict(image, question, top_k=10).top_k}
    assert len(got) == 10
    assert got == pytest.approx({answer: expected[answer] for answer in got}, abs=1e-5)
    left_out = max(p for answer, p in expected.items() if answer not in got)
    assert min(got.values()) >= left_out - 1e-6  # the ten best of the union


def test_an_ensemble_batches_like_one_question_at_a_time(tiny: dict[str, Path]) -> None:
    ensemble = load_backend(ModelOptions(model_repo_id=f"{tiny['vilt']},{tiny['blip']},{BUNDLED_MODEL}"))
    assert ensemble.info.answers is None  # a generative member: open answers
    assert [m.backend for m in ensemble.info.members] == [
        "transformers-classifier",
        "transformers-generative",
        "modular",
    ]
    for batched, alone in batched_and_alone(ensemble):
        assert [c.answer for c in batched] == [c.answer for c in alone]
        assert [c.confidence for c in batched] == pytest.approx([c.confidence for c in alone], abs=1e-4)


def test_a_generative_member_adds_its_answers(tiny: dict[str, Path], blip: Backend) -> None:
    ensemble = load_backend(ModelOptions(model_repo_id=f"{tiny['blip']},{BUNDLED_MODEL}"))
    written = blip.predict(IMAGES[0], QUESTIONS[0], top_k=3)
    ours = load_package(BUNDLED_MODEL).answers
    got = {c.answer: c.confidence for c in ensemble.predict(IMAGES[0], QUESTIONS[0], top_k=10).top_k}
    for candidate in written.top_k:
        if candidate.answer not in ours:  # ours says 0 for it: half of BLIP's probability
            assert got[candidate.answer] == pytest.approx(0.5 * candidate.confidence, abs=1e-5)


def test_an_ensemble_member_that_cannot_load_is_named(tiny: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as failed:
        load_backend(ModelOptions(model_repo_id=f"{tiny['vilt']}, {tmp_path}/nowhere:2"))
    message = str(failed.value)
    assert message.startswith(f"ensemble member 2 of 2 ({tmp_path}/nowhere) cannot load: ")
    assert "\n" not in message


async def test_an_ensemble_reports_its_members_in_the_stats(tiny: dict[str, Path]) -> None:
    options = ModelOptions(model_repo_id=f"{tiny['vilt']}:1,{BUNDLED_MODEL}:3")
    async with VQAEngine(lambda: load_backend(options)) as engine:
        await engine.answer(IMAGES[0], QUESTIONS[0])
        stats = engine.stats()
    assert stats.backend == "ensemble"
    members = [(m.model_id, m.backend, m.answers, m.dtype, m.weight) for m in stats.members]
    assert members == [
        (str(tiny["vilt"]), "transformers-classifier", 7, "float32", 0.25),
        (str(BUNDLED_MODEL), "modular", 13, "float32", 0.75),
    ]
    assert stats.to_dict()["members"][1]["weight"] == 0.75  # type: ignore[index]


def test_ensemble_needs_a_weight_per_member(vilt: Backend) -> None:
    with pytest.raises(ValueError, match="one weight per member"):
        Ensemble([vilt], [1.0, 2.0])


# -- ONNX packages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vqa_engine.tools.export import main as export_main

    out = tmp_path_factory.mktemp("onnx") / "bundled"
    assert export_main([str(BUNDLED_MODEL), "--onnx", str(out)]) == 0
    return out


def easy_vqa_sample(n: int) -> tuple[list[bytes], list[str]]:
    import easy_vqa

    questions, _, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    return [Path(paths[ids[i]]).read_bytes() for i in range(n)], list(questions[:n])


def test_the_onnx_export_gives_torchs_answers(onnx_bundled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(p.name for p in onnx_bundled.iterdir()) == [
        "README.md",
        "answers.txt",
        "config.json",
        "model.onnx",
        "vocab.json",
    ]
    assert json.loads((onnx_bundled / "config.json").read_text())["model_type"] == "onnx-vqa"
    onnx = open_folder(onnx_bundled)
    torch_backend = open_folder(BUNDLED_MODEL)
    assert (onnx.info.backend, onnx.info.answers, onnx.info.input_size) == ("onnx", 13, 64)
    images, questions = easy_vqa_sample(300)
    onnx_scores = onnx.scores([onnx.preprocess(i) for i in images], questions, top_k=1).probs  # type: ignore[union-attr]
    torch_scores = torch_backend.scores(
        [torch_backend.preprocess(i) for i in images], questions, top_k=1
    ).probs  # type: ignore[union-attr]
    assert torch.equal(onnx_scores.argmax(1), torch_scores.argmax(1))
    assert float((onnx_scores - torch_scores).abs().max()) < 1e-4


@pytest.mark.parametrize(
    "overrides", [{"question_encoder": "bow", "fusion": "product"}, {"question_encoder": "lstm"}]
)
def test_other_architectures_export_too(tmp_path: Path, overrides: dict[str, str]) -> None:
    from vqa_engine.tools.export import export_onnx

    model, vocab, answers = build_model(**overrides)  # type: ignore[arg-type]
    package = load_package(save_package(tmp_path / "pkg", model, vocab, answers))
    result = export_onnx(package, tmp_path / "onnx")
    assert result.max_difference < 1e-4
    onnx, ours = open_folder(tmp_path / "onnx"), open_folder(tmp_path / "pkg")
    for image, question in zip(IMAGES, QUESTIONS, strict=True):
        assert onnx.predict(image, question).answer == ours.predict(image, question).answer


class MyVQA(nn.Module):
    """Someone's own architecture: mean word vectors, a strided conv, a linear head."""

    def __init__(self, vocab_size: int, answers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)
        self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=4)
        self.head = nn.Linear(16, answers)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        question = (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, 8)
        image = self.conv(images).mean(dim=(2, 3))  # (B, 8)
        return self.head(torch.cat([question, image], dim=1))  # (B, A)


def test_any_architecture_runs_from_an_onnx_package(tmp_path: Path) -> None:
    """The guide in docs/models.md: torch.onnx.export, then config.json, vocab.json and answers.txt."""
    tokens = ["<pad>", "<unk>", "what", "color", "is", "the", "shape"]
    answers = ["red", "green", "blue"]
    torch.manual_seed(0)
    model = MyVQA(len(tokens), len(answers)).eval()
    folder = tmp_path / "my-vqa"
    folder.mkdir()
    batch, words = torch.export.Dim("batch"), torch.export.Dim("words", max=32)
    example = (
        torch.zeros(2, 3, 32, 32),
        torch.ones(2, 5, dtype=torch.long),
        torch.ones(2, 5, dtype=torch.long),
    )
    with warnings.catch_warnings():  # the exporter's notes on naming the dynamic axes
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model,
            example,
            str(folder / "model.onnx"),
            input_names=["images", "tokens", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes=({0: batch}, {0: batch, 1: words}, {0: batch, 1: words}),
            dynamo=True,
        )
    config = OnnxConfig(
        image_size=32, resize_mode="stretch", image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0)
    )
    (folder / "config.json").write_text(json.dumps(config.to_json_dict()))
    (folder / "vocab.json").write_text(json.dumps({"tokens": tokens}))
    (folder / "answers.txt").write_text("\n".join(answers) + "\n")

    backend = open_folder(folder)
    prediction = backend.predict(IMAGES[2], "What colour is the shape?", top_k=3)
    pixels = backend.preprocess(IMAGES[2]).float().unsqueeze(0) / 255  # type: ignore[attr-defined]
    ids = torch.tensor([[2, 3, 4, 5, 6]])  # "colour" reads as "color"
    with torch.inference_mode():
        expected = torch.softmax(model(pixels, ids, torch.ones_like(ids)), dim=-1)[0]
    got = {c.answer: c.confidence for c in prediction.top_k}
    assert got == pytest.approx({a: float(p) for a, p in zip(answers, expected, strict=True)}, abs=1e-4)


def test_onnx_package_problems_are_named(onnx_bundled: Path, tmp_path: Path) -> None:
    import shutil

    broken = shutil.copytree(onnx_bundled, tmp_path / "broken")
    (broken / "config.json").unlink()
    with pytest.raises(
        ModelPackageError, match=r"is not a onnx package: it has no config file \(config.json\)"
    ):
        open_folder(broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "modular-vqa", "image_size": 64}))
    with pytest.raises(ModelPackageError, match='must say "model_type": "onnx-vqa"'):
        open_folder(broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "onnx-vqa", "image_sise": 64}))
    with pytest.raises(ModelPackageError, match="unknown keys image_sise"):
        open_folder(broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "onnx-vqa"}))
    (broken / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelPackageError, match=r"onnxruntime cannot load model\.onnx"):
        open_folder(broken)


# -- choosing the backend, and what cannot load -------------------------------------------------


def test_model_backend_overrides_what_the_files_say(tmp_path: Path) -> None:
    with pytest.raises(
        ModelPackageError, match=r"is not a onnx package \(MODEL_BACKEND=onnx\): it has no model file"
    ):
        open_folder(BUNDLED_MODEL, options=ModelOptions(model_backend="onnx"))
    assert open_folder(BUNDLED_MODEL, options=ModelOptions(model_backend="modular")).info.backend == "modular"


def test_a_transformers_model_that_is_not_for_vqa_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    folder = shutil.copytree(tiny["vilt"], tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "model_type": "bert", "architectures": ["BertModel"]})
    )
    with pytest.raises(
        ModelPackageError, match=r"is a transformers 'bert' model, which is not one for visual"
    ):
        open_folder(folder)


def test_custom_code_in_a_model_repo_is_never_run(tiny: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    folder = shutil.copytree(tiny["vilt"], tmp_path / "custom")
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil-vqa", auto_map={"AutoConfig": "modeling_evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPackageError, match="never runs code from a model repo") as refused:
        open_folder(folder)
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_seed_weights_of_another_architecture_say_what_was_assumed(tmp_path: Path) -> None:
    from tests.test_package import write_seed_package

    seed = write_seed_package(tmp_path / "seed")
    model, _, _ = build_model(fusion="concat", question_encoder="bow")
    torch.save(model.state_dict(), seed / "best_modular_model.pth")
    (seed / "config.json").unlink()
    with pytest.raises(ModelPackageError) as refused:
        load_package(seed)
    message = str(refused.value)
    assert (
        "does not fit the architecture assumed without a config.json (cnn image encoder [16, 32], gru"
        in message
    )
    assert "describe it in a config.json" in message and "export the model to ONNX" in message
    assert "does not match config.json" not in message
