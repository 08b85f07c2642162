"""What a prediction is, independent of how it was made or shown."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: why an answer is only a guess, most fundamental first (see ``vqa_engine.checks.answer_checks``)
Reason = Literal["unfamiliar_image", "unknown_words", "answer_type", "low_confidence"]
REASONS: tuple[Reason, ...] = ("unfamiliar_image", "unknown_words", "answer_type", "low_confidence")


@dataclass(frozen=True)
class Candidate:
    answer: str
    confidence: float  # softmax probability in [0, 1]


@dataclass(frozen=True)
class Prediction:
    """The best answer, its confidence, and the ranked candidates (best first, best included).

    ``abstain`` is true when the answer must be shown as a guess, never as a confident answer;
    ``reason`` says why. ``unknown_words`` lists the question's content words the model never
    learned (whatever the reason); ``familiarity`` is how much the picture looks like the training
    pictures (the share of held-out training pictures at least as unusual: about 0.5 is typical,
    near 0 is unlike them; None when the model has no image statistics). ``model`` is the id of
    the model that answered when a pair of models shares the work (``ESCALATE_TO``); None when
    one model answers everything.
    """

    answer: str
    confidence: float
    top_k: tuple[Candidate, ...]
    abstain: bool = False
    reason: Reason | None = None
    unknown_words: tuple[str, ...] = ()
    familiarity: float | None = None
    model: str | None = None

    def truncated(self, k: int) -> Prediction:
        """The same prediction with at most ``k`` candidates (at least the answer itself)."""
        if len(self.top_k) <= k:
            return self
        return replace(self, top_k=self.top_k[: max(1, k)])

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``main.py ask --json``; ``model`` only when a pair of models shares
        the work (so one model's JSON reads as before)."""
        data: dict[str, object] = {
            "answer": self.answer,
            "confidence": self.confidence,
            "top_k": [{"answer": c.answer, "confidence": c.confidence} for c in self.top_k],
            "abstain": self.abstain,
            "reason": self.reason,
            "unknown_words": list(self.unknown_words),
            "familiarity": self.familiarity,
        }
        if self.model is not None:
            data["model"] = self.model
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Prediction:
        """The prediction ``to_dict`` described (a shared cache stores that shape).

        Raises ``ValueError`` (or ``KeyError``/``TypeError``) for anything else.
        """
        reason = data.get("reason")
        if reason is not None and reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        top_k = data["top_k"]
        words = data.get("unknown_words") or []
        familiarity = data.get("familiarity")
        model = data.get("model")  # absent from what older versions stored
        if not isinstance(top_k, list) or not isinstance(words, list):
            raise ValueError("top_k and unknown_words must be lists")
        return cls(
            answer=str(data["answer"]),
            confidence=float(data["confidence"]),  # type: ignore[arg-type]
            top_k=tuple(Candidate(str(c["answer"]), float(c["confidence"])) for c in top_k),
            abstain=bool(data.get("abstain", False)),
            reason=reason,  # type: ignore[arg-type]
            unknown_words=tuple(str(w) for w in words),
            familiarity=None if familiarity is None else float(familiarity),  # type: ignore[arg-type]
            model=None if model is None else str(model),
        )
