"""Shared fixtures: the bundled model, small packages built on the fly, easy-VQA samples."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from vqa_engine.modular.model import ModularVQA
from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.modular.package import save_package
from vqa_engine.modular.vocab import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "models" / "easy-vqa-film"
ANSWERS = ["black", "blue", "circle", "no", "rectangle", "red", "triangle", "yes"]
QUESTIONS = ["what shape is in the image?", "what color is the shape?", "is there a red shape?"]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """``main.main`` run in-process sets up logging to the stderr pytest captured for that test;
    later tests' warnings would go to that closed stream ("Logging error")."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def png_bytes(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def build_model(seed: int = 0, **overrides: object) -> tuple[ModularVQA, Vocabulary, list[str]]:
    """A randomly initialised (seeded) model with a small vocabulary: enough to test plumbing."""
    torch.manual_seed(seed)
    vocab = Vocabulary.build(QUESTIONS)
    config = ModelConfig(vocab_size=len(vocab), num_answers=len(ANSWERS), **overrides)  # type: ignore[arg-type]
    model = ModularVQA(config).eval()
    # random BN statistics, so a round trip that lost buffers would show
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_()
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
    return model, vocab, list(ANSWERS)


@pytest.fixture
def small_package(tmp_path: Path) -> Path:
    model, vocab, answers = build_model()
    return save_package(tmp_path / "pkg", model, vocab, answers, card="# test model\n")


def run_main(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` as a user would run it, from another folder."""
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        input=stdin,
        env=full_env,
        cwd=ROOT / "tests",
        timeout=120,
    )
