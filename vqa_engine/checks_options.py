"""The answer checks' options: declared once here, for the settings (and the engine) to reuse.

Torch-free, so the settings and the chat front ends can import it without loading a model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CheckOptions(BaseModel):
    """When an answer is given as a guess instead (the settings of the same names, upper-cased)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer_checks: bool = Field(
        default=True,
        description="check each answer's image and question; off: never abstain (the rest does nothing)",
    )
    min_image_familiarity: float = Field(
        default=0.001,
        ge=0,
        le=1,
        description=(
            "abstain (unfamiliar_image) below this familiarity: the share of held-out training images "
            "that look at least as unusual; 0.001 flags about one training-like picture in a thousand"
        ),
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="abstain (low_confidence) when the best answer's probability is below this",
    )
    check_unknown_words: bool = Field(
        default=True, description="abstain (unknown_words) when a content word is not in the vocabulary"
    )
    check_answer_type: bool = Field(
        default=True,
        description="abstain (answer_type) when the question's form was never trained to give the answer",
    )
