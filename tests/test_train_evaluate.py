"""Training is reproducible and writes a loadable package; evaluation reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import BUNDLED_MODEL, ROOT
from vqa_engine.modular.package import load_package
from vqa_engine.tools.evaluate import evaluate, expected_calibration_error, format_report, update_card
from vqa_engine.tools.train import fit_temperature


def train_tiny(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vqa_engine.tools.train",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--limit",
            "600",
            "--near-pictures",
            "200",
            "--outlier-pictures",
            "60",
            "--quiet",
            "--cnn-channels",
            "8,8",
            "--film-channels",
            "8",
            "--film-blocks",
            "1",
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_training_is_seeded_and_reproducible(tmp_path: Path) -> None:
    first, second = train_tiny(tmp_path / "a"), train_tiny(tmp_path / "b")
    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert "wrote" in first.stdout.decode()
    for name in (
        "model.safetensors",
        "familiarity.safetensors",
        "question_forms.json",
        "checks_selection.json",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    package = load_package(tmp_path / "a")
    assert package.familiarity is not None and package.question_forms is not None  # the checks' data
    assert package.selection is not None and len(package.selection.points) > 0
    assert package.familiarity.info["pictures_held_out"] > 0
    assert package.config.cnn_channels == (8, 8)
    assert len(package.answers) == 13
    card = package.card
    assert "python -m vqa_engine.tools.train --out" in card and "easy-VQA" in card
    assert "training_images: one coloured shape on a plain background" in card
    assert "<!-- checks:start -->" in card
    assert "epoch 1:" in first.stderr.decode()


def test_ece_of_a_perfectly_calibrated_set() -> None:
    confidence = torch.tensor([0.8] * 10)
    correct = torch.tensor([True] * 8 + [False] * 2)
    ece, bins = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(0.0, abs=1e-6)
    assert bins[0]["questions"] == 10


def test_ece_of_an_overconfident_set() -> None:
    ece, _ = expected_calibration_error(torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    assert ece == pytest.approx(0.5)


def test_temperature_softens_overconfident_logits() -> None:
    logits = torch.tensor([[10.0, 0.0]] * 10)
    labels = torch.tensor([0] * 7 + [1] * 3)
    assert fit_temperature(logits, labels) > 1.0


def test_temperature_is_left_alone_without_validation_errors() -> None:
    logits = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == 1.0


def test_evaluation_on_a_slice_of_the_test_split(tmp_path: Path) -> None:
    result = evaluate(BUNDLED_MODEL, limit=600, progress=False)
    assert result.questions == 600
    assert result.accuracy >= 0.99
    assert set(result.by_type) == {"yes/no", "shape", "colour"}
    assert sum(v["questions"] for v in result.by_type.values()) == 600
    assert 0.0 <= result.ece < 0.05
    report = format_report(result)
    assert "| **all** | 600 |" in report and "Expected calibration error" in report

    card_package = tmp_path / "pkg"
    card_package.mkdir()
    (card_package / "README.md").write_text(
        "# m\n<!-- evaluation:start -->\nold\n<!-- evaluation:end -->\nend\n"
    )
    update_card(card_package, result)
    card = (card_package / "README.md").read_text()
    assert "old" not in card and "| **all** | 600 |" in card and card.endswith("end\n")


def test_evaluate_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vqa_engine.tools.evaluate",
            str(BUNDLED_MODEL),
            "--limit",
            "200",
            "--quiet",
            "--output",
            str(out),
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "| answer type | questions | accuracy |" in result.stdout.decode()
    data = json.loads(out.read_text())
    assert data["questions"] == 200 and data["split"] == "test"
    assert {"accuracy", "by_type", "confusions", "ece", "reliability"} <= set(data)


def test_evaluate_a_missing_package_fails_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vqa_engine.tools.evaluate", str(tmp_path / "nope"), "--quiet"],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_train_without_out_writes_a_new_folder_never_the_bundled_model(tmp_path: Path) -> None:
    from vqa_engine.tools.train import new_run_folder, parse_args

    options = parse_args(["--epochs", "1"])
    assert options.out.parent == Path("runs")
    assert options.out.resolve() != BUNDLED_MODEL.resolve()
    first = new_run_folder(tmp_path, now=0)
    first.mkdir()
    second = new_run_folder(tmp_path, now=0)  # the same second: still a new folder
    assert second != first and not second.exists()


@pytest.mark.parametrize("module", ["tools.train", "tools.evaluate", "tools.export", "loading.hub"])
def test_every_option_has_help_without_markup(module: str) -> None:
    import argparse
    import importlib

    parser = importlib.import_module(f"vqa_engine.{module}").build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for each in parsers:
        assert "``" not in (each.description or "")
        for action in each._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{module}: {action.option_strings or action.dest} has no help"
            assert "``" not in action.help


def test_evaluate_writes_files_only_where_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vqa_engine.tools.evaluate import main as evaluate_main

    monkeypatch.chdir(tmp_path)
    assert evaluate_main([str(BUNDLED_MODEL), "--limit", "50", "--quiet"]) == 0
    assert list(tmp_path.iterdir()) == []
