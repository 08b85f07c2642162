"""Recent answers (for their "Chart" button) and the 👍/👎 votes on them (the guide's
"accuracy: user feedback" metric), bounded and expiring like every per-user store.

Every vote is also a line in the prediction log, against the answer's request id, so the full
history outlives the process; this keeps what ``/stats`` shows since start-up.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

from bots.events import Button
from vqa_engine import Prediction


@dataclass(frozen=True)
class Answered:
    """An answer the bot gave, as its buttons need it."""

    request_id: str
    platform: str
    model_revision: str | None
    question: str
    prediction: Prediction
    notice: str | None = None  # the honest "I can't tell" wording, when the model abstained


class FeedbackBook:
    """The last ``max_answers`` answers for ``ttl_s`` seconds, and one vote per user per answer."""

    def __init__(
        self,
        *,
        max_answers: int = 10_000,
        ttl_s: float = 86_400.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._answers: TTLCache[str, Answered] = TTLCache(maxsize=max_answers, ttl=ttl_s, timer=timer)
        self._votes: TTLCache[tuple[str, str], tuple[Answered, Button]] = TTLCache(
            maxsize=max_answers * 4, ttl=ttl_s, timer=timer
        )

    def remember(self, answered: Answered) -> None:
        self._answers[answered.request_id] = answered

    def recall(self, request_id: str) -> Answered | None:
        return self._answers.get(request_id)

    def vote(self, answered: Answered, user: str, button: Button) -> Button | None:
        """Record ``user``'s vote (a second one replaces the first); returns the vote it replaced."""
        key = (answered.request_id, user)
        before = self._votes.get(key)
        self._votes[key] = (answered, button)
        return before[1] if before is not None else None

    def ratings(self) -> dict[tuple[str, str], tuple[int, int]]:
        """``{(platform, model revision): (good, votes)}`` over the votes kept now."""
        good: Counter[tuple[str, str]] = Counter()
        total: Counter[tuple[str, str]] = Counter()
        for answered, button in self._votes.values():
            key = (answered.platform, answered.model_revision or "?")
            total[key] += 1
            good[key] += button is Button.GOOD
        return {key: (good[key], total[key]) for key in total}
