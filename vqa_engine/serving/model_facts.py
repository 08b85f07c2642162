"""What a model package says about itself, for ``/help``, ``/start`` and ``/about`` to tell users.

    facts = describe(engine.package.path)
    facts.trained_on   # "one coloured shape on a plain background"
    facts.question_kinds[0].examples, facts.question_kinds[0].answers
    facts.accuracy     # measured on the test split, from evaluation.json

Torch-free and read from the package's files only, so a bot serving another model says the right
thing. Every field has a fallback for packages that lack its file:

=================  =============================================  ==================================
field              from                                           without it
=================  =============================================  ==================================
``name``           the model card's first ``# title``             the folder's name
``trained_on``     the card's front matter ``training_images:``   None ("the pictures it was trained on")
``datasets``       the card's front matter ``datasets: [...]``    ()
``answers``        ``answers.txt`` (or the seed's, or a           ()
                   transformers ``config.json`` ``id2label``)
``question_kinds`` ``question_forms.json``                        ()
``accuracy``       ``evaluation.json``                            None
``vocabulary``     ``vocab.json``                                 0 (unknown)
``image_check``    ``familiarity.safetensors`` present            "confidence" (the fallback rule)
=================  =============================================  ==================================

``written_answers`` comes from the loaded model (``facts_of``), not from a file: true when a
vision-language model writes the answers, whose confidence is then never shown as a percentage.
So do ``escalates_to`` and ``escalation_writes``: the second model (``ESCALATE_TO``) that answers
what the first abstains on, and whether it writes sentences.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqa_engine.modular.package_format import (
    ANSWERS_FILE,
    CARD_FILE,
    CONFIG_FILE,
    EVALUATION_FILE,
    FAMILIARITY_FILE,
    QUESTION_FORMS_FILE,
    SEED_ANSWERS_FILE,
    VOCAB_FILE,
)

if TYPE_CHECKING:
    from vqa_engine.backends.base import Backend

#: a question form joins a kind when its answers make up at least this share of its questions
_KIND_SHARE = 0.001
EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class QuestionKind:
    """Questions that get the same set of answers: "what color is the shape?" -> eight colours."""

    examples: tuple[str, ...]  # training questions of this kind, the most common forms first
    answers: tuple[str, ...]  # in the model's answer order
    share: float  # of the training questions


@dataclass(frozen=True)
class Accuracy:
    accuracy: float  # on ``questions`` questions of the ``split`` split
    questions: int
    split: str
    dataset: str | None
    by_type: dict[str, float]  # e.g. {"yes/no": 1.0, "colour": 1.0, "shape": 0.9992}


@dataclass(frozen=True)
class ModelFacts:
    """A model package described for people."""

    name: str
    trained_on: str | None  # a noun phrase: "one coloured shape on a plain background"
    datasets: tuple[str, ...]
    answers: tuple[str, ...]
    question_kinds: tuple[QuestionKind, ...]
    accuracy: Accuracy | None
    vocabulary: int  # words the model knows (0: not known)
    image_check: str  # "familiarity" (statistics in the package) or "confidence" (the fallback)
    #: answers are sentences a model wrote: their confidence is shown to no one as a percentage
    written_answers: bool = False
    #: the id of the model that answers what this one abstains on (``Prediction.model``), if any
    escalates_to: str | None = None
    #: whether that second model writes sentences
    escalation_writes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(directory: str | Path) -> ModelFacts:
    """Read what the package in ``directory`` says about itself (never raises for a missing file)."""
    folder = Path(directory)
    card = _read_text(folder / CARD_FILE)
    front = front_matter(card)
    answers = _answers(folder)
    datasets = front.get("datasets", ())
    return ModelFacts(
        name=_title(card) or folder.name,
        trained_on=_string(front.get("training_images")),
        datasets=tuple(datasets) if isinstance(datasets, list) else (str(datasets),) if datasets else (),
        answers=answers,
        question_kinds=_question_kinds(folder / QUESTION_FORMS_FILE, answers),
        accuracy=_accuracy(folder / EVALUATION_FILE, datasets),
        vocabulary=_vocabulary_size(folder / VOCAB_FILE),
        image_check="familiarity" if (folder / FAMILIARITY_FILE).is_file() else "confidence",
    )


def facts_of(backend: Backend) -> ModelFacts:
    """The facts of a loaded model: from its package folder, or (an ensemble, a model built in
    memory) from what it knows about itself."""
    second = backend.info.escalates_to
    loaded = replace(
        _bare(backend),
        written_answers=backend.info.written_answers,
        escalates_to=second.model_id if second is not None else None,
        escalation_writes=second is not None and second.written_answers,
    )
    if backend.folder is None:
        return loaded
    return replace(
        describe(backend.folder),
        written_answers=loaded.written_answers,
        escalates_to=loaded.escalates_to,
        escalation_writes=loaded.escalation_writes,
    )


def _bare(backend: Backend) -> ModelFacts:
    """What a model without a package folder knows about itself."""
    return ModelFacts(
        name=backend.info.model_id,
        trained_on=None,
        datasets=(),
        answers=tuple(backend.answers or ()),
        question_kinds=(),
        accuracy=None,
        vocabulary=0,
        image_check=backend.checks.image_check,
    )


def front_matter(card: str) -> dict[str, Any]:
    """``key: value`` lines between the card's opening ``---`` lines (``[a, b]`` becomes a list)."""
    lines = card.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    values: dict[str, Any] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or line.startswith((" ", "\t", "-")):
            continue
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            values[key.strip()] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            values[key.strip()] = _unquote(value)
    return values


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _title(card: str) -> str | None:
    return next((line[2:].strip() for line in card.splitlines() if line.startswith("# ")), None)


def _answers(folder: Path) -> tuple[str, ...]:
    for name in (ANSWERS_FILE, SEED_ANSWERS_FILE):
        text = _read_text(folder / name)
        if text:
            return tuple(dict.fromkeys(a.strip() for a in text.splitlines() if a.strip()))
    config = _read_json(folder / CONFIG_FILE)
    labels = config.get("id2label") if isinstance(config, dict) else None
    if isinstance(labels, dict):  # a transformers classifier
        try:
            return tuple(str(labels[k]) for k in sorted(labels, key=int))
        except ValueError:
            return tuple(str(v) for v in labels.values())
    return ()


def _vocabulary_size(path: Path) -> int:
    data = _read_json(path)
    tokens = data.get("tokens") if isinstance(data, dict) else data
    return max(0, len(tokens) - 2) if isinstance(tokens, list) else 0  # less <pad> and <unk>


def _accuracy(path: Path, datasets: object) -> Accuracy | None:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("accuracy"), (int, float)):
        return None
    by_type = data.get("by_type")
    if not isinstance(by_type, dict):
        by_type = {}
    dataset = datasets[0] if isinstance(datasets, list) and datasets else None
    return Accuracy(
        accuracy=float(data["accuracy"]),
        questions=int(data.get("questions", 0)),
        split=str(data.get("split", "test")),
        dataset=dataset,
        by_type={
            str(k): float(v["accuracy"])
            for k, v in by_type.items()
            if isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float))
        },
    )


def _question_kinds(path: Path, answers: tuple[str, ...]) -> tuple[QuestionKind, ...]:
    data = _read_json(path)
    forms = data.get("forms") if isinstance(data, dict) else None
    if not isinstance(forms, list):
        return ()
    order = {a: i for i, a in enumerate(answers)}
    groups: dict[frozenset[str], tuple[Counter[str], int]] = {}
    total = 0
    for entry in forms:
        counts = entry.get("answers") if isinstance(entry, dict) else None
        if not isinstance(counts, dict) or not counts:
            continue
        n = sum(int(c) for c in counts.values())
        total += n
        kind = frozenset(a for a, c in counts.items() if int(c) >= _KIND_SHARE * n)
        examples, seen = groups.get(kind, (Counter(), 0))
        examples[str(entry.get("example") or entry.get("form", ""))] += n
        groups[kind] = (examples, seen + n)
    # a form that happened to get fewer answers (say only "yes") joins the kind that covers it
    merged: dict[frozenset[str], tuple[Counter[str], int]] = {}
    for kind, (examples, n) in sorted(groups.items(), key=lambda kv: (-len(kv[0]), -kv[1][1])):
        home = next((k for k in merged if kind <= k), kind)
        known, seen = merged.get(home, (Counter(), 0))
        merged[home] = (known + examples, seen + n)
    kinds = [
        QuestionKind(
            examples=tuple(q for q, _ in examples.most_common(EXAMPLES_PER_KIND)),
            answers=tuple(sorted(kind, key=lambda a: (order.get(a, len(order)), a))),
            share=n / total if total else 0.0,
        )
        for kind, (examples, n) in merged.items()
    ]
    return tuple(sorted(kinds, key=lambda k: -k.share))
