"""Recent answers (for their "Chart" button) and the 👍/👎 votes on them (the guide's
"accuracy: user feedback" metric), bounded and expiring like every per-user store.

Every vote is also a line in the prediction log, against the answer's request id, so the full
history outlives the process; this keeps what ``/stats`` shows since start-up.

With several processes, a button may be pressed on an answer another process gave: a
``SharedAnswers`` store (``bots.state.redis_answers``) keeps the answers for every process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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

    def to_dict(self) -> dict[str, object]:
        return {
            "request_id": self.request_id,
            "platform": self.platform,
            "model_revision": self.model_revision,
            "question": self.question,
            "prediction": self.prediction.to_dict(),
            "notice": self.notice,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Answered:
        """Raises ``ValueError``, ``KeyError`` or ``TypeError`` for anything ``to_dict`` did not write."""
        prediction = data["prediction"]
        if not isinstance(prediction, dict):
            raise ValueError("no prediction")
        revision, notice = data.get("model_revision"), data.get("notice")
        return cls(
            request_id=str(data["request_id"]),
            platform=str(data["platform"]),
            model_revision=None if revision is None else str(revision),
            question=str(data["question"]),
            prediction=Prediction.from_dict(prediction),
            notice=None if notice is None else str(notice),
        )


class SharedAnswers(Protocol):
    """Answers every process can find by request id (their buttons may be pressed anywhere).
    Its calls never raise: a store that cannot answer now has nothing."""

    async def put(self, answered: Answered) -> None: ...

    async def get(self, request_id: str) -> Answered | None: ...


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
