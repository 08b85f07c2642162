"""What a model package holds, which kind it is, and where a loaded one came from.

Torch-free on purpose: the Hub code (``vqa_engine.loading.hub``) lists, downloads and uploads these files
without importing torch, so pre-fetching a model or checking a repo costs no torch start-up.
``vqa_engine.modular.package`` re-exports every name here.

Four kinds of package, told apart by their files (``MODEL_BACKEND`` overrides):

- ``onnx``: ``model.onnx`` with our ``config.json`` (``"model_type": "onnx-vqa"``), ``vocab.json``,
  ``answers.txt``;
- ``vision-language``: a transformers model that writes its answers (``AutoModelForImageTextToText``):
  a ``config.json`` with a ``vision_config`` and no question-answering head, its weights, its
  processor's files and a chat template (it is asked through the template);
- ``transformers``: any other transformers ``config.json`` (with ``architectures`` or a
  ``model_type`` other than ours), its weights and its processor's files;
- ``modular``: our ``ModularVQA`` (``config.json`` with ``"model_type": "modular-vqa"``, or the
  seed's files without one).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Literal

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.model_config import MODEL_TYPE
from vqa_engine.modular.onnx_config import ONNX_FILE, ONNX_MODEL_TYPE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
ANSWERS_FILE = "answers.txt"
CARD_FILE = "README.md"
FAMILIARITY_FILE = "familiarity.safetensors"  # optional: image statistics (vqa_engine.checks.familiarity)
QUESTION_FORMS_FILE = "question_forms.json"  # optional: trained question forms (vqa_engine.checks.questions)
SELECTION_FILE = (
    "checks_selection.json"  # optional: the checks' validation table (vqa_engine.checks.selection)
)
RISK_COVERAGE_FILE = "risk_coverage.png"  # optional: the card's picture (vqa_engine.tools.evaluate_selective)
EVALUATION_FILE = "evaluation.json"  # optional: measured accuracy (vqa_engine.tools.evaluate)
SEED_WEIGHTS_FILE = "best_modular_model.pth"
SEED_VOCAB_FILE = "vocab.pkl"
SEED_ANSWERS_FILE = "data/answer_space.txt"

MODULAR_MODEL_TYPE = MODEL_TYPE

#: every file one of our packages (modular or ONNX) may hold: what ``hub push`` uploads
PACKAGE_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    VOCAB_FILE,
    ANSWERS_FILE,
    CARD_FILE,
    FAMILIARITY_FILE,
    QUESTION_FORMS_FILE,
    SELECTION_FILE,
    EVALUATION_FILE,
    RISK_COVERAGE_FILE,
    SEED_WEIGHTS_FILE,
    SEED_VOCAB_FILE,
    SEED_ANSWERS_FILE,
    ONNX_FILE,
)
#: a transformers model's other files: sharded weights, processor and tokenizer, generation
TRANSFORMERS_FILES = (
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "generation_config.json",
    "video_preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)
SAFETENSORS_WEIGHTS = (WEIGHTS_FILE, "model.safetensors.index.json")
#: pickled weights, fetched only when a repo has no safetensors; transformers reads them with
#: ``torch.load(weights_only=True)``, which builds tensors and nothing else
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
#: where a transformers folder keeps its chat template: a file of its own, or a key of these
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
CHAT_TEMPLATE_KEY_FILES = ("processor_config.json", "tokenizer_config.json")

PackageKind = Literal["modular", "transformers", "vision-language", "onnx"]

#: what a package cannot do without: (ours, the seed's name) for weights, vocabulary, answers
REQUIRED_FILES = (
    ("weights", WEIGHTS_FILE, SEED_WEIGHTS_FILE),
    ("vocabulary", VOCAB_FILE, SEED_VOCAB_FILE),
    ("answer list", ANSWERS_FILE, SEED_ANSWERS_FILE),
)


@dataclass(frozen=True)
class ModelSource:
    """Where a package came from, so ``/health`` can say exactly which model answers."""

    repo_id: str  # a Hub repo id, or the local folder as configured
    revision: str | None = None  # the resolved Hub commit; None for a local folder
    from_cache: bool = False  # the Hub was unreachable (or offline) and the local cache served


def download_patterns(repo_files: Collection[str] | None) -> list[str]:
    """The files of a repo to fetch, whatever kind of package it holds (``repo_files``: its file
    list, when known). Checkpoints, data and other formats' weights are never fetched."""
    patterns = [*PACKAGE_FILES, *TRANSFORMERS_FILES]
    if repo_files is not None:
        has_safetensors = any(
            fnmatch(f, p) for f in repo_files for p in (*SAFETENSORS_WEIGHTS, "model-*.safetensors")
        )
        if not has_safetensors and any(fnmatch(f, p) for f in repo_files for p in TORCH_WEIGHTS):
            patterns += TORCH_WEIGHTS
    return patterns


def detect_kind(folder: Path) -> PackageKind:
    """Which kind of package ``folder`` holds (see the module docstring)."""
    if (folder / ONNX_FILE).is_file():
        return "onnx"
    config = folder / CONFIG_FILE
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackageError(f"{config} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and (
            "architectures" in data
            or data.get("model_type", MODULAR_MODEL_TYPE) not in (MODULAR_MODEL_TYPE, ONNX_MODEL_TYPE)
        ):
            return "vision-language" if _writes_answers(folder, data) else "transformers"
    return "modular"


def _writes_answers(folder: Path, config: dict[str, object]) -> bool:
    """A vision-language chat model: a vision tower, no question-answering head (ViLT's and
    BLIP's VQA heads stay ``transformers``), and a chat template to ask it through."""
    architectures = config.get("architectures") or []
    answers_questions = isinstance(architectures, list) and any(
        str(name).endswith("ForQuestionAnswering") for name in architectures
    )
    return (
        isinstance(config.get("vision_config"), dict) and not answers_questions and has_chat_template(folder)
    )


def has_chat_template(folder: Path) -> bool:
    """Whether ``folder`` holds a chat template (its own file, or inside the processor's or the
    tokenizer's config)."""
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    for name in CHAT_TEMPLATE_KEY_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("chat_template"):
            return True
    return False


def missing_files(folder: Path, kind: PackageKind) -> str | None:
    """What ``folder`` lacks to be a package of ``kind``, in words; None when nothing is missing."""

    def has(*patterns: str) -> bool:
        return any(
            any(fnmatch(p.name, pattern) for pattern in patterns) for p in folder.iterdir() if p.is_file()
        )

    if kind in ("transformers", "vision-language"):
        if not (folder / CONFIG_FILE).is_file():
            return "no config.json"
        if not has(*SAFETENSORS_WEIGHTS, "model-*.safetensors", *TORCH_WEIGHTS):
            return "no weights (model.safetensors, or pytorch_model.bin)"
        if not has(*PROCESSOR_FILES):
            return "no processor (preprocessor_config.json or processor_config.json)"
        if kind == "vision-language" and not has_chat_template(folder):
            return "no chat template (chat_template.jinja or chat_template.json)"
        return None
    required = list(REQUIRED_FILES)
    if kind == "onnx":
        required = [("model", ONNX_FILE, ONNX_FILE), ("config", CONFIG_FILE, CONFIG_FILE), *required[1:]]
    for what, ours, seeds in required:
        if not any((folder / name).is_file() for name in (ours, seeds)):
            return (
                f"no {what} file ({ours})"
                if ours == seeds
                else f"no {what} file ({ours}, or the seed's {seeds})"
            )
    return None
