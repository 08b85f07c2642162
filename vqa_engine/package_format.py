"""What a model package holds and where a loaded one came from.

Torch-free on purpose: the Hub code (``vqa_engine.hub``) lists, downloads and uploads these files
without importing torch, so pre-fetching a model or checking a repo costs no torch start-up.
``vqa_engine.package`` re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
ANSWERS_FILE = "answers.txt"
CARD_FILE = "README.md"
FAMILIARITY_FILE = "familiarity.safetensors"  # optional: image statistics (vqa_engine.familiarity)
QUESTION_FORMS_FILE = "question_forms.json"  # optional: trained question forms (vqa_engine.question_check)
EVALUATION_FILE = "evaluation.json"  # optional: measured accuracy (vqa_engine.evaluate)
SEED_WEIGHTS_FILE = "best_modular_model.pth"
SEED_VOCAB_FILE = "vocab.pkl"
SEED_ANSWERS_FILE = "data/answer_space.txt"

#: every file a package may hold: what a downloader needs to fetch
PACKAGE_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    VOCAB_FILE,
    ANSWERS_FILE,
    CARD_FILE,
    FAMILIARITY_FILE,
    QUESTION_FORMS_FILE,
    EVALUATION_FILE,
    SEED_WEIGHTS_FILE,
    SEED_VOCAB_FILE,
    SEED_ANSWERS_FILE,
)

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
