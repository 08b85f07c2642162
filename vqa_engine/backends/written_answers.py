"""How probable the answers a model wrote are, from what ``generate`` returns with its scores.

Shared by the generative backends: BLIP's whole-answer probability (a product) and a
vision-language model's per-token geometric mean both start from the log-probabilities of the
tokens greedy decoding chose, up to and including the end token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class WrittenScores:
    """Per written answer: the sum of its tokens' log-probabilities, and how many tokens."""

    log_prob: torch.Tensor  # (B,) float: log of the probability of the whole answer
    tokens: torch.Tensor  # (B,) long: tokens counted, the end token included when written

    def per_token(self) -> torch.Tensor:
        """(B,) the geometric mean of the tokens' probabilities, in (0, 1]."""
        return (self.log_prob / self.tokens.clamp(min=1)).exp()

    def whole(self) -> torch.Tensor:
        """(B,) the probability of the whole answer (the product), in (0, 1]."""
        return self.log_prob.exp()


def end_ids(value: int | Sequence[int] | None) -> list[int]:
    """A generation config's ``eos_token_id`` (one id, several, or none) as a list."""
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


def greedy_scores(model: Any, out: Any, end_token_ids: Sequence[int]) -> WrittenScores:
    """The chosen tokens' log-probabilities from a greedy ``generate(output_scores=True,
    return_dict_in_generate=True)``: what follows an answer's end token (padding) is left out.
    The scores are those decoding chose from (after the model's own logits processors)."""
    steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)  # (B, T)
    generated = out.sequences[:, -steps.shape[1] :]
    ends = torch.isin(generated, torch.tensor(list(end_token_ids), device=generated.device))
    after_end = (ends.cumsum(1) - ends.long()) > 0  # padding once an answer has ended
    counted = ~after_end & ~steps.isinf()
    return WrittenScores(
        log_prob=steps.masked_fill(~counted, 0.0).sum(1).float().cpu(),
        tokens=counted.sum(1).cpu(),
    )
