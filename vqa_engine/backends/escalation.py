"""Answer or escalate: a fast model answers first; a second model answers what it abstains on.

    backend = Escalation(first=bundled_model, second=vilt)  # ESCALATE_TO=dandelin/vilt-b32-...

The first model runs on the whole batch; the second runs once, batched, on only the questions the
first abstained on, and its prediction (with its own ``abstain``/``reason``) replaces the first's.
Each prediction names the model that answered (``Prediction.model``). The image is decoded once
and prepared for each model its own way, so its input is a pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from PIL import Image

from vqa_engine.backends.base import Backend, Scores
from vqa_engine.checks.options import CheckOptions
from vqa_engine.options import DEFAULT_TOP_K
from vqa_engine.prediction import Prediction
from vqa_engine.preprocess import ImageLimits, decode_image


class Escalation(Backend):
    """Two loaded models: ``first`` answers, ``second`` takes over where ``first`` abstains."""

    def __init__(self, first: Backend, second: Backend) -> None:
        self.first = first
        self.second = second
        self.folder = first.folder  # /help and /about describe the model that answers most
        self.answers = None  # the second's answers lie outside the first's list
        self.checks = first.checks
        self.info = replace(
            first.info,
            input_size=max(first.info.input_size, second.info.input_size),
            escalates_to=second.info,
        )

    def use_checks(self, options: CheckOptions) -> None:
        """The same rules judge both models' answers."""
        self.first.use_checks(options)
        self.second.use_checks(options)
        self.checks = self.first.checks

    def preprocess(self, data: bytes, limits: ImageLimits = ImageLimits()) -> object:
        """Decode once (at the larger side either model reads), prepare once per model."""
        return self.prepare(decode_image(data, limits, draft_size=self.info.input_size))

    def prepare(self, image: Image.Image) -> tuple[object, object]:
        return self.first.prepare(image), self.second.prepare(image)

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> Scores:
        """Not one forward pass but two, chosen per question: only ``predict_batch`` makes sense."""
        raise TypeError("an escalating pair of models gives predictions, not one set of scores")

    def predict_batch(
        self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """The first's prediction for each question, or the second's where the first abstained;
        the second runs at most once, on those questions only."""
        pairs: list[tuple[object, object]] = list(inputs)  # type: ignore[arg-type]
        first = self.first.predict_batch([pair[0] for pair in pairs], questions, top_k=top_k)
        answered = [replace(p, model=self.first.info.model_id) for p in first]
        abstained = [i for i, prediction in enumerate(first) if prediction.abstain]
        if not abstained:
            return answered
        second = self.second.predict_batch(
            [pairs[i][1] for i in abstained], [questions[i] for i in abstained], top_k=top_k
        )
        if len(second) != len(abstained):
            raise RuntimeError(f"model returned {len(second)} rows for {len(abstained)} inputs")
        for i, prediction in zip(abstained, second, strict=True):
            answered[i] = replace(prediction, model=self.second.info.model_id)
        return answered

    def question_key(self, question: str) -> str:
        """The text itself: two questions one model reads alike may differ for the other."""
        return question

    def warm_up(self) -> None:
        self.first.warm_up()
        self.second.warm_up()
