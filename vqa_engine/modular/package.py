"""The model package: a folder with config, weights, vocabulary, answers and a model card.

Files, newest format first (the seed's names are accepted when ours are absent):

=====================  ===========================  =======================================
what                   file                         seed's name
=====================  ===========================  =======================================
architecture           ``config.json``              (optional: defaults when absent)
weights                ``model.safetensors``        ``best_modular_model.pth``
vocabulary             ``vocab.json``               ``vocab.pkl`` (plain containers only)
answer space           ``answers.txt``              ``data/answer_space.txt``
model card             ``README.md``                (optional)
image statistics       ``familiarity.safetensors``  (optional; ``python -m vqa_engine.tools.calibrate``)
question forms         ``question_forms.json``      (optional; ``python -m vqa_engine.tools.calibrate``)
checks' validation     ``checks_selection.json``    (optional; ``python -m vqa_engine.tools.calibrate``)
measured accuracy      ``evaluation.json``          (optional; ``python -m vqa_engine.tools.evaluate``)
=====================  ===========================  =======================================

Nothing in a package can run code: safetensors holds only tensors, ``.pth`` files are read with
``torch.load(weights_only=True)`` and ``vocab.pkl`` with an unpickler that builds only containers.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vqa_engine.checks.familiarity import FamiliarityModel, descriptor_size
from vqa_engine.checks.questions import QuestionForms
from vqa_engine.checks.selection import SelectionTable
from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.model import ModularVQA
from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.modular.package_format import (  # torch-free; every name is re-exported from here
    ANSWERS_FILE,
    CARD_FILE,
    CONFIG_FILE,
    FAMILIARITY_FILE,
    PACKAGE_FILES,  # noqa: F401
    QUESTION_FORMS_FILE,
    SEED_ANSWERS_FILE,
    SEED_VOCAB_FILE,
    SEED_WEIGHTS_FILE,
    SELECTION_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ModelSource,
)
from vqa_engine.modular.safe_pickle import load_plain_pickle
from vqa_engine.modular.vocab import Vocabulary

log = logging.getLogger(__name__)

_CHECKPOINT_KEYS = ("model_state_dict", "state_dict", "model")


@dataclass
class ModelPackage:
    """A loaded package: the model (in eval mode) and everything needed to use it."""

    config: ModelConfig
    model: ModularVQA
    vocab: Vocabulary
    answers: list[str]
    path: Path
    card: str = ""
    source: ModelSource | None = None  # None: loaded straight from ``path``
    familiarity: FamiliarityModel | None = None  # None: no image statistics (seed packages)
    question_forms: QuestionForms | None = None  # None: the question forms were not recorded
    selection: SelectionTable | None = None  # None: no validation table (fixed thresholds)

    @property
    def model_id(self) -> str:
        return self.source.repo_id if self.source else str(self.path)

    @property
    def revision(self) -> str | None:
        return self.source.revision if self.source else None


def save_package(
    directory: str | Path,
    model: ModularVQA,
    vocab: Vocabulary,
    answers: list[str],
    *,
    card: str = "",
    familiarity: FamiliarityModel | None = None,
    question_forms: QuestionForms | None = None,
) -> Path:
    """Write ``model`` as a package in the DESIGN.md format; returns the folder."""
    directory = Path(directory)
    config = model.config
    if config.vocab_size != len(vocab) or config.num_answers != len(answers):
        raise ModelPackageError("config sizes do not match the vocabulary or the answers")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_json_dict(), indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / VOCAB_FILE).write_text(json.dumps(vocab.to_json_dict(), indent=1) + "\n")
    (directory / ANSWERS_FILE).write_text("".join(f"{a}\n" for a in answers))
    if card:
        (directory / CARD_FILE).write_text(card)
    if familiarity is not None:
        familiarity.save(directory / FAMILIARITY_FILE)
    if question_forms is not None:
        question_forms.save(directory / QUESTION_FORMS_FILE)
    return directory


def load_package(
    directory: str | Path, *, device: str | torch.device = "cpu", checks_data: bool = True
) -> ModelPackage:
    """Load and cross-check a package folder (without its image statistics and question forms
    when ``checks_data`` is false: ``calibrate`` replaces them).

    Raises ``ModelPackageError`` (``UnsafePickleError`` for a hostile pickle) with a message
    that names the file at fault.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelPackageError(f"model folder {directory} does not exist")
    vocab = load_vocab(directory)
    answers = load_answers(directory)
    config = _load_config(directory, vocab_size=len(vocab), num_answers=len(answers))
    if config.vocab_size != len(vocab):
        raise ModelPackageError(
            f"{directory}: config.json says vocab_size={config.vocab_size} but the vocabulary "
            f"has {len(vocab)} words"
        )
    if config.num_answers != len(answers):
        raise ModelPackageError(
            f"{directory}: config.json says num_answers={config.num_answers} but the answer list "
            f"has {len(answers)} answers"
        )
    model = ModularVQA(config)
    _load_weights(directory, model, assumed=not (directory / CONFIG_FILE).is_file())
    model.eval().to(device)
    card_path = directory / CARD_FILE
    card = card_path.read_text(encoding="utf-8", errors="replace") if card_path.is_file() else ""
    return ModelPackage(
        config=config,
        model=model,
        vocab=vocab,
        answers=answers,
        path=directory,
        card=card,
        familiarity=_load_familiarity(directory, model) if checks_data else None,
        question_forms=_load_question_forms(directory) if checks_data else None,
        selection=_load_selection(directory) if checks_data else None,
    )


def _load_familiarity(directory: Path, model: ModularVQA) -> FamiliarityModel | None:
    path = directory / FAMILIARITY_FILE
    if not path.is_file():
        return None
    familiarity = FamiliarityModel.load(path)
    expected = descriptor_size(model.image_encoder.stage_channels)
    if familiarity.size != expected:
        raise ModelPackageError(
            f"{path} describes {familiarity.size} image features but this model's encoder gives "
            f"{expected}; recompute it with `python -m vqa_engine.tools.calibrate {directory}`"
        )
    return familiarity


def _load_question_forms(directory: Path) -> QuestionForms | None:
    path = directory / QUESTION_FORMS_FILE
    return QuestionForms.load(path) if path.is_file() else None


def _load_selection(directory: Path) -> SelectionTable | None:
    path = directory / SELECTION_FILE
    return SelectionTable.load(path) if path.is_file() else None


def _first_existing(directory: Path, *names: str) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def _require(directory: Path, *names: str) -> Path:
    found = _first_existing(directory, *names)
    if found is None:
        raise ModelPackageError(f"{directory}: missing {' or '.join(names)}")
    return found


def _load_config(directory: Path, *, vocab_size: int, num_answers: int) -> ModelConfig:
    path = directory / CONFIG_FILE
    if not path.is_file():
        # the seed shipped no config: the default architecture, sized by the data files
        log.warning("%s has no %s; assuming the default architecture", directory, CONFIG_FILE)
        return ModelConfig(vocab_size=vocab_size, num_answers=num_answers)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path} is not valid JSON: {exc}") from exc
    return ModelConfig.from_json_dict(data)


def load_vocab(directory: Path) -> Vocabulary:
    """``vocab.json`` (or the seed's ``vocab.pkl``, plain containers only) of a package folder."""
    path = _require(directory, VOCAB_FILE, SEED_VOCAB_FILE)
    if path.name == VOCAB_FILE:
        try:
            return Vocabulary.from_json_dict(json.loads(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackageError(f"{path} is not valid JSON: {exc}") from exc
    data = load_plain_pickle(path.read_bytes())
    return _vocab_from_seed(data, path)


def _vocab_from_seed(data: Any, path: Path) -> Vocabulary:
    """Accept the shapes seed projects pickle: ``{word: id}``, a word list, or a dict holding one."""
    if isinstance(data, dict):
        for key in ("word2idx", "stoi", "word_to_idx", "itos", "idx2word", "tokens"):
            if key in data and isinstance(data[key], (dict, list, tuple)):
                return _vocab_from_seed(data[key], path)
        if all(isinstance(k, str) and isinstance(v, int) for k, v in data.items()):
            return Vocabulary.from_mapping(data)
        if all(isinstance(k, int) and isinstance(v, str) for k, v in data.items()):
            return Vocabulary.from_mapping({v: k for k, v in data.items()})
    if isinstance(data, (list, tuple)) and all(isinstance(t, str) for t in data):
        return Vocabulary.from_mapping({t: i for i, t in enumerate(data)})
    raise ModelPackageError(f"{path}: expected a {{word: id}} mapping or a list of words")


def load_answers(directory: Path) -> list[str]:
    """``answers.txt`` (or the seed's ``data/answer_space.txt``): unique, non-empty answers."""
    path = _require(directory, ANSWERS_FILE, SEED_ANSWERS_FILE)
    try:
        answers = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise ModelPackageError(f"{path} is not UTF-8 text") from exc
    answers = [a for a in answers if a]
    if not answers:
        raise ModelPackageError(f"{path} lists no answers")
    if len(set(answers)) != len(answers):
        raise ModelPackageError(f"{path} lists the same answer twice")
    return answers


def _load_weights(directory: Path, model: ModularVQA, *, assumed: bool) -> None:
    path = _require(directory, WEIGHTS_FILE, SEED_WEIGHTS_FILE)
    if path.name == WEIGHTS_FILE:
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelPackageError(f"{path} is not a valid safetensors file: {exc}") from exc
    else:
        state = _load_torch_weights(path)
    _check_state_dict(path, model, state, assumed=assumed)
    model.load_state_dict(state, strict=True)


def _load_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelPackageError(
            f"{path} holds objects other than tensors and was refused "
            "(weights are loaded with torch.load(weights_only=True))"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelPackageError(f"{path} is not a readable PyTorch file: {exc}") from exc
    if isinstance(obj, dict):
        for key in _CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelPackageError(f"{path}: expected a state dict (parameter name -> tensor)")
    # checkpoints saved from nn.DataParallel prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _check_state_dict(
    path: Path, model: ModularVQA, state: dict[str, torch.Tensor], *, assumed: bool = False
) -> None:
    """Refuse weights that do not fit the architecture, saying which one was expected and how to
    describe another (``assumed``: there was no config.json, so the default was)."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    mismatched = [
        f"{k} is {tuple(state[k].shape)}, config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if mismatched:
        problems.append("shape " + _some(mismatched))
    if not problems:
        return
    fields = (
        "(the fields of vqa_engine.modular.model_config.ModelConfig: image_encoder, question_encoder, "
        "fusion, cnn_channels, embed_dim, question_dim, film_blocks, ...)"
    )
    onnx = "or export the model to ONNX (docs/models.md: any architecture)"
    if assumed:
        c = model.config
        default = (
            f"{c.image_encoder} image encoder {list(c.cnn_channels)}, {c.question_encoder} question encoder, "
            f"{c.fusion} fusion"
        )
        raise ModelPackageError(
            f"{path} does not fit the architecture assumed without a config.json ({default}): "
            f"{'; '.join(problems)}. To load another architecture, describe it in a config.json "
            f"{fields}, {onnx}"
        )
    raise ModelPackageError(
        f"{path} does not match config.json (architecture or sizes differ): {'; '.join(problems)}. "
        f"Make config.json describe the weights' architecture {fields}, {onnx}"
    )


def _some(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
