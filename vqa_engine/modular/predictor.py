"""Synchronous inference over a loaded package: the single place that turns logits into answers."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.options import CheckOptions
from vqa_engine.modular.package import ModelPackage
from vqa_engine.modular.vocab import PAD_ID, Vocabulary
from vqa_engine.options import DEFAULT_TOP_K
from vqa_engine.prediction import Candidate, Prediction
from vqa_engine.preprocess import ImageLimits, clean_question, load_image_pixels, normalize


def encode_questions(
    vocab: Vocabulary, questions: Sequence[str], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids (B, T) and lengths (B,) for a batch of questions."""
    encoded = [vocab.encode(q, max_tokens) for q in questions]
    lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
    tokens = torch.full((len(encoded), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens, lengths


class Predictor:
    """Runs the model of one package on one device. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        package: ModelPackage,
        *,
        limits: ImageLimits = ImageLimits(),
        checks: CheckOptions = CheckOptions(),
    ) -> None:
        self.package = package
        self.limits = limits
        self.device = next(package.model.parameters()).device
        self.checks = AnswerChecks.for_package(package, checks)

    def preprocess(self, image: bytes) -> torch.Tensor:
        """Untrusted bytes -> (3, S, S) uint8 pixels; raises a ``VQAInputError`` subclass."""
        return load_image_pixels(image, self.package.config, self.limits)

    def probabilities(self, images: torch.Tensor, questions: Sequence[str]) -> torch.Tensor:
        """Calibrated answer probabilities (B, A) for images (B, 3, S, S): uint8 pixels from
        ``preprocess`` (normalised here, in one op for the batch) or already normalised floats."""
        return self.probabilities_and_features(images, questions, features=False)[0]

    @torch.inference_mode()
    def probabilities_and_features(
        self, images: torch.Tensor, questions: Sequence[str], *, features: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``probabilities``, and the image encoder's stage feature maps from the same pass when
        asked for and the model can give them (None otherwise)."""
        config = self.package.config
        images = images.to(self.device)  # uint8 crosses to a GPU at a quarter of the size
        if images.dtype == torch.uint8:
            images = normalize(images, config)
        tokens, lengths = encode_questions(self.package.vocab, questions, config.max_question_tokens)
        model = self.package.model
        maps = None
        if features and hasattr(model, "forward_with_features"):
            logits, maps = model.forward_with_features(images, tokens.to(self.device), lengths)
        else:
            logits = model(images, tokens.to(self.device), lengths)
        return torch.softmax(logits.float() / config.temperature, dim=-1).cpu(), maps

    def predict_batch(
        self, images: torch.Tensor, questions: Sequence[str], *, top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """One ``Prediction`` per (image, question) pair, in order, each with the checks' verdict."""
        probs, maps = self.probabilities_and_features(images, questions, features=self.checks.wants_features)
        if probs.shape[0] != len(questions):
            raise RuntimeError(f"model returned {probs.shape[0]} rows for {len(questions)} inputs")
        k = max(1, min(top_k, probs.shape[1]))
        values, indices = probs.topk(k, dim=-1)  # one op for the whole batch
        answers = self.package.answers
        predictions = []
        for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
            candidates = tuple(
                Candidate(answers[i], round(v, 6)) for v, i in zip(row_values, row_indices, strict=True)
            )
            predictions.append(Prediction(candidates[0].answer, candidates[0].confidence, candidates))
        return self.checks.apply(predictions, questions, maps)  # the answer checks' hook

    def predict(self, image: bytes, question: str, *, top_k: int = DEFAULT_TOP_K) -> Prediction:
        """Answer one question about one encoded image (PNG, JPEG, ...)."""
        question = clean_question(question)
        tensor = self.preprocess(image)
        return self.predict_batch(tensor.unsqueeze(0), [question], top_k=top_k)[0]
