"""The answer checks' options: declared once here, for the settings (and the engine) to reuse.

Torch-free, so the settings and the chat front ends can import it without loading a model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: the thresholds of a package without a validation table (``vqa_engine.checks.selection``)
FALLBACK_MIN_FAMILIARITY = 0.001
FALLBACK_MIN_CONFIDENCE = 0.5


class CheckOptions(BaseModel):
    """When an answer is given as a guess instead (the settings of the same names, upper-cased)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer_checks: bool = Field(
        default=True,
        description="check each answer's image and question; off: never abstain (the rest does nothing)",
    )
    max_answer_risk: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description=(
            "the share of answers (not marked a guess) that may be wrong: the thresholds below are "
            "chosen from the package's validation table to answer the most within it"
        ),
    )
    min_image_familiarity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "abstain (unfamiliar_image) below this familiarity, the share of held-out training images "
            "that look at least as unusual; unset: chosen for MAX_ANSWER_RISK (0.001 without a table)"
        ),
    )
    min_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "abstain (low_confidence) when the best answer's probability is below this; unset: "
            "chosen for MAX_ANSWER_RISK (0.5 without a table)"
        ),
    )
    check_unknown_words: bool = Field(
        default=True, description="abstain (unknown_words) when a content word is not in the vocabulary"
    )
    check_answer_type: bool = Field(
        default=True,
        description="abstain (answer_type) when the question's form was never trained to give the answer",
    )
