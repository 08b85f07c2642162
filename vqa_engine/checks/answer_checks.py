"""Decide, per answer, whether it may be shown as an answer or only as a guess.

Runs on the inference thread, inside the batch, after the forward pass that produced both the
answers and the image features: it adds ``abstain``, ``reason``, ``unknown_words`` and
``familiarity`` to each ``Prediction`` and changes nothing else. Reasons, first that applies:

1. ``unfamiliar_image``: familiarity under ``min_familiarity`` (``vqa_engine.checks.familiarity``).
2. ``unknown_words``: a content word outside the vocabulary, or no known word at all.
3. ``low_confidence``: the best answer's probability under ``min_confidence``.
4. ``answer_type``: a confident answer that the question's form was never trained to give.

The two thresholds are the settings' when set; otherwise the ones the package's validation table
(``vqa_engine.checks.selection``) gives for ``MAX_ANSWER_RISK``: the most answers with at most that share
wrong on pictures as people draw them, and out-of-distribution pictures flagged.

Packages without image statistics (seed packages, other backends, or a model that cannot return
its features) get ``familiarity: null`` and no image check: then only the confidence rule speaks
for the picture (the maximum-softmax baseline), which ``describe()`` says for ``/health``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from vqa_engine.checks.familiarity import FamiliarityModel, describe_images
from vqa_engine.checks.options import FALLBACK_MIN_CONFIDENCE, FALLBACK_MIN_FAMILIARITY, CheckOptions
from vqa_engine.checks.questions import QuestionChecker, QuestionForms
from vqa_engine.checks.selection import Operating, SelectionTable
from vqa_engine.prediction import Prediction, Reason

if TYPE_CHECKING:
    from vqa_engine.modular.package import ModelPackage


class AnswerChecks:
    """The checks for one model, with the options they run under."""

    def __init__(
        self,
        options: CheckOptions,
        *,
        vocabulary: Iterable[str],
        answers: Sequence[str],
        familiarity: FamiliarityModel | None = None,
        question_forms: QuestionForms | None = None,
        selection: SelectionTable | None = None,
        read_questions: bool = True,
    ) -> None:
        self.options = options
        self.familiarity = familiarity
        #: what the validation table promises at the chosen thresholds (None: no table)
        self.chosen: Operating | None = None
        if selection is not None and familiarity is not None:
            self.chosen = selection.choose(options.max_answer_risk)
        self.min_familiarity = _first(
            options.min_image_familiarity,
            self.chosen.min_familiarity if self.chosen else None,
            FALLBACK_MIN_FAMILIARITY,
        )
        self.min_confidence = _first(
            options.min_confidence,
            self.chosen.min_confidence if self.chosen else None,
            FALLBACK_MIN_CONFIDENCE,
        )
        #: None: the model's words are not ours to judge (a transformers tokenizer knows ~30k)
        self.questions = QuestionChecker(vocabulary, answers, question_forms) if read_questions else None

    @classmethod
    def for_package(cls, package: ModelPackage, options: CheckOptions) -> AnswerChecks:
        """The checks a loaded package supports (image statistics and question forms when present)."""
        return cls(
            options,
            vocabulary=package.vocab.tokens,
            answers=package.answers,
            familiarity=package.familiarity,
            question_forms=package.question_forms,
            selection=package.selection,
        )

    @classmethod
    def confidence_only(cls, options: CheckOptions) -> AnswerChecks:
        """For models without our package's statistics and vocabulary (transformers, ONNX,
        ensembles): only the confidence rule judges their answers."""
        return cls(options, vocabulary=(), answers=(), read_questions=False)

    @property
    def wants_features(self) -> bool:
        """Whether the forward pass should hand over the image features (only then do they cost)."""
        return self.options.answer_checks and self.familiarity is not None

    @property
    def image_check(self) -> str:
        """``familiarity`` (the package's statistics) or ``confidence`` (the fallback rule)."""
        return "familiarity" if self.familiarity is not None else "confidence"

    def describe(self) -> str:
        """One line for ``/health``: which image check is in use, and its thresholds."""
        o = self.options
        if not o.answer_checks:
            return "answer checks: off (ANSWER_CHECKS=false)"
        if self.familiarity is None:
            image = (
                "image check: none (the model package has no image statistics); "
                f"answers under {self.min_confidence:.0%} confidence are guesses"
            )
        else:
            info = self.familiarity.info
            image = (
                f"image check: the package's familiarity statistics ({info.get('clusters', '?')} clusters, "
                f"{info.get('pictures_fitted', '?')} training pictures), "
                f"unfamiliar below {self.min_familiarity:g}"
            )
        if self.questions is None:
            return f"{image}; question check: none (not our vocabulary)" + self._chosen_note()
        forms = "recorded question forms" if self.questions.forms is not None else "the yes/no rule only"
        return (
            f"{image}; question check: vocabulary and {forms}; low confidence below {self.min_confidence:.0%}"
            + self._chosen_note()
        )

    def _chosen_note(self) -> str:
        """Where the thresholds came from, when the package's validation table chose them."""
        o = self.options
        if self.chosen is None or o.min_image_familiarity is not None or o.min_confidence is not None:
            return ""
        return (
            f" (both thresholds chosen for MAX_ANSWER_RISK={o.max_answer_risk:g}: on validation "
            f"{self.chosen.coverage:.1%} answered, {self.chosen.risk:.2%} of them wrong)"
        )

    @torch.inference_mode()
    def image_familiarity(self, feature_maps: Sequence[torch.Tensor] | None) -> list[float] | None:
        """Familiarity of each picture whose stage feature maps are given (None: no statistics)."""
        if self.familiarity is None or feature_maps is None:
            return None
        descriptors = describe_images(feature_maps).cpu()
        if descriptors.shape[1] != self.familiarity.size:
            raise RuntimeError(
                f"the image statistics describe {self.familiarity.size} features, the model gives "
                f"{descriptors.shape[1]}"
            )
        return self.familiarity.familiarity(self.familiarity.scores(descriptors))

    def apply(
        self,
        predictions: Sequence[Prediction],
        questions: Sequence[str],
        feature_maps: Sequence[torch.Tensor] | None = None,
    ) -> list[Prediction]:
        """The predictions with their verdicts; question b is about picture b of the maps."""
        if not self.options.answer_checks:
            return list(predictions)
        familiarity = self.image_familiarity(feature_maps)
        judged = []
        for row, (prediction, question) in enumerate(zip(predictions, questions, strict=True)):
            image = familiarity[row] if familiarity is not None else None
            reason = self._reason(prediction, question, image)
            judged.append(
                replace(
                    prediction,
                    abstain=reason is not None,
                    reason=reason,
                    unknown_words=self.questions.read(question).unknown_words if self.questions else (),
                    familiarity=image,
                )
            )
        return judged

    def question_reason(self, prediction: Prediction, question: str) -> Reason | None:
        """What the question checks alone say: ``unknown_words``, ``answer_type`` or None."""
        o = self.options
        if self.questions is None:
            return None
        reading = self.questions.read(question)
        if o.check_unknown_words and (reading.unknown_words or not reading.knows_any_word):
            return "unknown_words"
        if o.check_answer_type and not reading.answer_fits(prediction.answer):
            return "answer_type"
        return None

    def _reason(self, prediction: Prediction, question: str, familiarity: float | None) -> Reason | None:
        if familiarity is not None and familiarity < self.min_familiarity:
            return "unfamiliar_image"
        reason = self.question_reason(prediction, question)
        # an unsure model's best answer may be of any type: the doubt is what to tell the user
        if reason != "unknown_words" and prediction.confidence < self.min_confidence:
            return "low_confidence"
        return reason


def _first(*values: float | None) -> float:
    """The first value that is set (a setting, then the table's choice, then the fallback)."""
    return next(value for value in values if value is not None)
