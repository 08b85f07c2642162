"""The seam every model runs behind: one image in -> its input; a batch -> confidences over answers.

The engine decodes and prepares images on its decode thread (``preprocess``) and runs whole
batches on its inference thread (``predict_batch``); it never knows which kind of model answers.
A backend reports what a forward pass gives in one of two shapes:

- ``DenseScores``: a (B, A) matrix of confidences over a fixed answer list (classifiers);
- ``RankedScores``: per question, the answers it produced with their confidences (generative
  models).

``to_predictions`` turns either into ``Prediction`` objects; an ensemble combines either kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.options import CheckOptions
from vqa_engine.conversation import History
from vqa_engine.model_info import ModelInfo
from vqa_engine.options import DEFAULT_TOP_K
from vqa_engine.prediction import Candidate, Prediction
from vqa_engine.preprocess import ImageLimits, clean_question, decode_image


@dataclass(frozen=True)
class DenseScores:
    """Confidences (B, A) in [0, 1] over ``answers`` (column order)."""

    answers: Sequence[str]
    probs: torch.Tensor  # (B, A) float32 on the CPU


@dataclass(frozen=True)
class RankedScores:
    """Per question, (answer, confidence) pairs, best first."""

    rows: list[list[tuple[str, float]]]


Scores = DenseScores | RankedScores


def score_rows(scores: Scores) -> int:
    return scores.probs.shape[0] if isinstance(scores, DenseScores) else len(scores.rows)


def to_predictions(scores: Scores, top_k: int) -> list[Prediction]:
    """One ``Prediction`` per question, with at most ``top_k`` candidates (at least the answer)."""
    k = max(1, top_k)
    if isinstance(scores, DenseScores):
        k = min(k, scores.probs.shape[1])
        values, indices = scores.probs.topk(k, dim=-1)  # one op for the whole batch
        rows = [
            [(scores.answers[i], v) for v, i in zip(row_values, row_indices, strict=True)]
            for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True)
        ]
    else:
        rows = [row[:k] for row in scores.rows]
    predictions = []
    for row in rows:
        candidates = tuple(Candidate(answer, round(float(confidence), 6)) for answer, confidence in row)
        if not candidates:  # a generative model that produced nothing readable
            candidates = (Candidate("", 0.0),)
        predictions.append(Prediction(candidates[0].answer, candidates[0].confidence, candidates))
    return predictions


class Backend(ABC):
    """A loaded model. Not thread-safe: the engine calls ``preprocess`` from its decode thread
    and ``predict_batch`` from its one inference thread."""

    info: ModelInfo
    #: the answer list a classifier scores (the columns of its ``DenseScores``); None if generative
    answers: Sequence[str] | None = None
    #: the package folder it was loaded from (None: built in memory, or an ensemble)
    folder: Path | None = None
    #: when an answer is only a guess (``use_checks``); by default the confidence rule alone
    checks: AnswerChecks = AnswerChecks.confidence_only(CheckOptions())

    def use_checks(self, options: CheckOptions) -> None:
        """Judge answers under ``options``. Our packages bring image statistics and question
        forms; other models get the confidence rule."""
        self.checks = AnswerChecks.confidence_only(options)

    def preprocess(self, data: bytes, limits: ImageLimits = ImageLimits()) -> object:
        """Untrusted bytes -> this model's input for one image; raises a ``VQAInputError``
        subclass for bytes that are not a usable image."""
        return self.prepare(decode_image(data, limits, draft_size=self.info.input_size))

    @abstractmethod
    def prepare(self, image: Image.Image) -> object:
        """A decoded RGB image -> this model's input for it (resized, as its own tensors)."""

    @abstractmethod
    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> Scores:
        """One forward pass over prepared inputs and their questions. ``top_k`` bounds what a
        generative model needs to produce; classifiers score every answer."""

    def predict_batch(
        self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """One ``Prediction`` per (input, question), in order; raises if the model returns a
        different number of rows."""
        scores = self.scores(inputs, questions, top_k=top_k)
        rows = score_rows(scores)
        if rows != len(questions):
            raise RuntimeError(f"model returned {rows} rows for {len(questions)} inputs")
        return self.checks.apply(to_predictions(scores, top_k), questions)

    def predict_turns(
        self, inputs: Sequence[object], questions: Sequence[str], histories: Sequence[History], *, top_k: int
    ) -> list[Prediction]:
        """Like ``predict_batch``, each question after its earlier turns: a model that does not
        write answers (a classifier) reads only the question."""
        return self.predict_batch(inputs, questions, top_k=top_k)

    def predict(
        self, image: bytes, question: str, *, top_k: int = DEFAULT_TOP_K, limits: ImageLimits = ImageLimits()
    ) -> Prediction:
        """Answer one question about one encoded image (the command line's path)."""
        question = clean_question(question)
        return self.predict_batch([self.preprocess(image, limits)], [question], top_k=top_k)[0]

    def question_key(self, question: str) -> str:
        """What makes two questions the same for this model (the cache's key): by default the
        cleaned text itself."""
        return question

    def warm_up(self) -> None:
        """One forward pass at load, so the first user does not pay for lazy initialisation."""
        size = self.info.input_size
        self.predict_batch([self.prepare(Image.new("RGB", (size, size)))], ["warm up"], top_k=1)
