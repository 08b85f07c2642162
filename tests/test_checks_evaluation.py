"""The checks' data is reproducible from the commands, and their evaluation reports what it promises."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.children import run_child
from tests.conftest import BUNDLED_MODEL, ROOT
from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.familiarity import FamiliarityModel
from vqa_engine.checks.options import CheckOptions
from vqa_engine.modular.package import load_package
from vqa_engine.preprocess import load_image_tensor
from vqa_engine.serving.model_facts import describe, front_matter
from vqa_engine.tools.calibrate import image_descriptors
from vqa_engine.tools.easyvqa import load_split
from vqa_engine.tools.ood_set import GENERATORS, QUESTION_KINDS, build, read_question_set

PHOTOS = ROOT / "benchmarks" / "ood" / "photos"


def run_module(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the repository's modules, from any folder
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_calibrate_reproduces_the_bundled_statistics(tmp_path: Path, ood_folder: Path) -> None:
    package = tmp_path / "pkg"
    shutil.copytree(BUNDLED_MODEL, package)
    for name in ("familiarity.safetensors", "question_forms.json"):
        (package / name).unlink()
    result = run_module("vqa_engine.tools.calibrate", str(package), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "fitted on 8,000 training pictures, calibrated on 2,000 held out" in result.stdout
    assert "24 question forms" in result.stdout
    # what the statistics decide, within a tolerance, not their bytes: float sums differ in their
    # last bits between CPUs, and inverting the features' covariance magnifies that in the matrix
    # itself, not in the decisions it makes
    fitted = FamiliarityModel.load(package / "familiarity.safetensors")
    bundled = FamiliarityModel.load(BUNDLED_MODEL / "familiarity.safetensors")
    model = load_package(BUNDLED_MODEL, checks_data=False)
    test = load_split("test", model.config, progress=False)
    ood = torch.stack(
        [load_image_tensor(p.read_bytes(), model.config) for p in sorted(ood_folder.rglob("*.png"))]
    )
    threshold = AnswerChecks.for_package(load_package(BUNDLED_MODEL), CheckOptions()).min_familiarity
    for images in (test.images, ood):
        descriptors = image_descriptors(model.model, images)
        ours, theirs = (m.familiarity(m.scores(descriptors)) for m in (fitted, bundled))
        disagree = sum((a < threshold) != (b < threshold) for a, b in zip(ours, theirs, strict=True))
        assert disagree <= 0.005 * len(ours), disagree
        assert statistics.median(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 0.02
    # the same forms with the same answers (training counts them without its validation questions)
    forms, bundled_forms = (
        {
            f["form"]: sorted(f["answers"])
            for f in json.loads((p / "question_forms.json").read_text())["forms"]
        }
        for p in (package, BUNDLED_MODEL)
    )
    assert forms == bundled_forms


def test_calibrate_a_missing_package_fails_cleanly(tmp_path: Path) -> None:
    result = run_module("vqa_engine.tools.calibrate", str(tmp_path / "nope"), "--quiet")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def ood_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ood")
    counts = build(folder, seed=0, per_category=3, photos=PHOTOS)
    assert counts["photo"] == 13  # each photograph whole, no crops at this size
    return folder


def test_the_ood_set_is_seeded(ood_folder: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build(again, seed=0, per_category=3, photos=PHOTOS)
    files = sorted(p.relative_to(ood_folder) for p in ood_folder.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((ood_folder / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert {p.name for p in ood_folder.iterdir() if p.is_dir()} == {*GENERATORS, "photo"}
    rows = read_question_set(ood_folder / "questions.tsv")
    assert {kind for kind, _, _ in rows} == set(QUESTION_KINDS)
    assert ("known_words", "yes/no", "is the shape red?") in rows


def test_evaluate_with_an_ood_folder(ood_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    args = [
        *("vqa_engine.tools.evaluate", str(BUNDLED_MODEL), "--ood", str(ood_folder), "--limit", "200"),
        *("--near-pictures", "120", "--quiet"),
    ]
    result = run_module(*args, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "flagged unfamiliar_image**, AUROC" in result.stdout
    assert "| questions answered without abstaining | 100.00% of 200 |" in result.stdout
    data = json.loads(out.read_text())
    checks = data["checks"]
    assert checks["image_check"] == "familiarity"
    assert checks["ood"]["images"] == 6 * 3 + 13
    assert checks["ood"]["by_kind"]["photo"]["unfamiliar"] > 0.5
    assert checks["selective"]["ood"]["flagged"] > 0.9  # by the picture, or by the model's doubt
    assert checks["selective"]["easy_vqa_test"]["coverage"] > 0.99
    assert checks["ood"]["auroc"] > 0.95
    assert checks["questions"]["by_kind"]["gibberish"]["flagged"] == 1.0
    assert checks["questions"]["test_questions_flagged"] == 0.0
    assert [d["name"].split(" ")[0] for d in checks["detectors"]] == ["familiarity", "energy", "softmax"]


def test_evaluate_writes_nothing_unless_asked(tmp_path: Path) -> None:
    result = run_module(
        "vqa_engine.tools.evaluate", str(BUNDLED_MODEL), "--limit", "50", "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
    assert "wrote" not in result.stdout


def test_describe_the_bundled_model() -> None:
    facts = describe(BUNDLED_MODEL)
    assert facts.name == "easy-vqa-film"
    assert facts.trained_on == "one coloured shape on a plain background"
    assert facts.datasets == ("easy-vqa",)
    assert len(facts.answers) == 13 and facts.vocabulary == 26
    assert [k.answers for k in facts.question_kinds] == [
        ("no", "yes"),
        ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow"),
        ("circle", "rectangle", "triangle"),
    ]
    assert "what color is the shape?" in facts.question_kinds[1].examples
    assert sum(k.share for k in facts.question_kinds) == pytest.approx(1.0)
    assert facts.accuracy is not None and facts.accuracy.accuracy > 0.999
    assert facts.accuracy.questions == 9673 and facts.accuracy.split == "test"
    assert facts.image_check == "familiarity"
    assert json.loads(json.dumps(facts.to_dict()))["trained_on"] == facts.trained_on


def test_describe_falls_back_for_packages_that_say_less(small_package: Path, tmp_path: Path) -> None:
    facts = describe(small_package)
    assert (facts.name, facts.trained_on, facts.datasets) == ("test model", None, ())
    assert facts.question_kinds == () and facts.accuracy is None and facts.image_check == "confidence"
    assert facts.answers[0] == "black"

    other = tmp_path / "vilt"  # a transformers repo: its own config.json, no card
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"id2label": {"1": "no", "0": "yes", "10": "2"}}))
    facts = describe(other)
    assert (facts.name, facts.answers, facts.vocabulary) == ("vilt", ("yes", "no", "2"), 0)
    assert describe(tmp_path / "missing").answers == ()


def test_front_matter_reads_plain_keys() -> None:
    card = (
        "---\nlicense: mit\ndatasets: [easy-vqa, 'other']\ntraining_images: \"shapes\"\n---\n# m\nkey: no\n"
    )
    assert front_matter(card) == {
        "license": "mit",
        "datasets": ["easy-vqa", "other"],
        "training_images": "shapes",
    }
    assert front_matter("# no front matter\nkey: value\n") == {}


def test_what_the_chat_side_imports_stays_torch_free() -> None:
    result = run_child("chat_side_imports", str(BUNDLED_MODEL))
    assert result.stdout.split() == [
        "one",
        "coloured",
        "shape",
        "on",
        "a",
        "plain",
        "background",
        "0.01",
        "False",
    ], result.stderr
