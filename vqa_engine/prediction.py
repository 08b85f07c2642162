"""What a prediction is, independent of how it was made or shown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    answer: str
    confidence: float  # softmax probability in [0, 1]


@dataclass(frozen=True)
class Prediction:
    """The best answer, its confidence, and the ranked candidates (best first, best included)."""

    answer: str
    confidence: float
    top_k: tuple[Candidate, ...]

    def truncated(self, k: int) -> Prediction:
        """The same prediction with at most ``k`` candidates (at least the answer itself)."""
        if len(self.top_k) <= k:
            return self
        return Prediction(self.answer, self.confidence, self.top_k[: max(1, k)])

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``main.py ask --json``."""
        return {
            "answer": self.answer,
            "confidence": self.confidence,
            "top_k": [{"answer": c.answer, "confidence": c.confidence} for c in self.top_k],
        }
