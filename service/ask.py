"""``main.py ask IMAGE QUESTION``: load the configured model, answer once, print. No engine, no
event loop: the shortest path from a process start to an answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.builders import model_loader
from service.exit_codes import EXIT_FAILURE, EXIT_USAGE
from vqa_engine.checks.options import CheckOptions  # torch-free

if TYPE_CHECKING:
    from config import AskSettings


def read_image_arg(path: str, max_bytes: int) -> bytes:
    """The image bytes named on the command line (``-`` for stdin), never more than the cap + 1."""
    if path == "-":
        return sys.stdin.buffer.read(max_bytes + 1)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if file.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image")
    with file.open("rb") as f:
        return f.read(max_bytes + 1)  # the decoder reports "larger than" from the extra byte


def ask(settings: AskSettings, image_path: str, question: str, *, as_json: bool, top_k: int) -> int:
    """Answer ``question`` about the image at ``image_path``; the process's exit code (2: the
    input cannot be answered, 1: the model cannot load, or its server did not answer)."""
    from bots.replies import format_cli
    from vqa_engine import EngineError, ModelPackageError, VQAInputError
    from vqa_engine.preprocess import ImageLimits, clean_question
    from vqa_engine.serving.model_facts import facts_of

    try:
        question = clean_question(question)
        image = read_image_arg(image_path, settings.max_image_bytes)
    except (VQAInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = model_loader(settings)()
        backend.use_checks(settings.section(CheckOptions))
    except ModelPackageError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    try:
        prediction = backend.predict(image, question, top_k=top_k, limits=limits)
    except VQAInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:  # a model server that did not answer
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    facts = facts_of(backend)
    text = format_cli(prediction, trained_on=facts.trained_on, sure=not facts.written_answers)
    print(json.dumps(prediction.to_dict()) if as_json else text)
    return 0
