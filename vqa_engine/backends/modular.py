"""Our ``ModularVQA`` packages behind the backend seam (``config.json`` with model_type modular-vqa)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from PIL import Image

from vqa_engine.backends.base import Backend, DenseScores
from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.options import CheckOptions
from vqa_engine.model_info import ModelInfo
from vqa_engine.modular.package import ModelPackage
from vqa_engine.modular.predictor import Predictor
from vqa_engine.modular.vocab import tokenize
from vqa_engine.options import DEFAULT_TOP_K
from vqa_engine.prediction import Prediction
from vqa_engine.preprocess import image_to_pixels

log = logging.getLogger(__name__)

#: why QUANTIZE=int8 leaves these models alone (measured by benchmarks/modular_backends.py)
INT8_REFUSED = (
    "QUANTIZE=int8 is not applied to %s: on the bundled modular-vqa model int8 Linear layers moved "
    "answer probabilities by up to 0.18 and cost test accuracy, for no steady speed-up "
    "(benchmarks/README.md); it runs in float32"
)


class ModularBackend(Backend):
    """Softmax (with the package's fitted temperature) over the package's answer list."""

    def __init__(self, package: ModelPackage, *, quantize: str = "none") -> None:
        self.package = package
        self.folder = package.path
        self.predictor = Predictor(package)
        self.checks = self.predictor.checks
        self.answers = package.answers
        if quantize == "int8":
            log.warning(INT8_REFUSED, package.model_id)
        dtype = str(next(package.model.parameters()).dtype).removeprefix("torch.")
        self.info = ModelInfo(
            model_id=package.model_id,
            revision=package.revision,
            backend="modular",
            answers=len(package.answers),
            dtype=dtype,
            quantize="none",
            device=str(self.predictor.device),
            input_size=package.config.image_size,
        )

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return image_to_pixels(image, self.package.config)  # (3, S, S) uint8

    def use_checks(self, options: CheckOptions) -> None:
        """The package's own checks: image familiarity (when it has statistics), its vocabulary
        and question forms, and the confidence rule."""
        self.checks = self.predictor.checks = AnswerChecks.for_package(self.package, options)

    def predict_batch(
        self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """The predictor's pass: answers and, in the same forward pass, the image features the
        familiarity check reads."""
        pixels = torch.stack(list(inputs))  # type: ignore[arg-type]
        return self.predictor.predict_batch(pixels, questions, top_k=top_k)

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> DenseScores:
        pixels = torch.stack(list(inputs))  # type: ignore[arg-type]
        return DenseScores(self.package.answers, self.predictor.probabilities(pixels, questions))

    def question_key(self, question: str) -> str:
        """Our tokenizer's words: "What colour?" and "what color" are the same question."""
        return " ".join(tokenize(question))
