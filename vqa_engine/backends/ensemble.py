"""Several models answering together: confidences averaged, weighted, by answer string.

The ensemble's answer space is the union of its members': an answer a classifier does not know
gets 0 from it; a generative member contributes the answers it wrote (0 for the rest). Answers
are matched after lower-casing and tidying spaces ("Yes" from one model is "yes" from another).
Every member reads the same decoded image (each resized its own way) in the same batch cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from PIL import Image

from vqa_engine.backends.base import Backend, DenseScores, RankedScores
from vqa_engine.model_info import ModelInfo
from vqa_engine.preprocess import ImageLimits, decode_image


def answer_key(answer: str) -> str:
    """How answers of different models are matched."""
    return " ".join(answer.lower().split())


class Ensemble(Backend):
    """Members with weights (normalised here to sum to 1)."""

    def __init__(self, members: Sequence[Backend], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        total = float(sum(weights))
        self.members = list(members)
        self.weights = [w / total for w in weights]
        # the union of the classifiers' answer spaces, in first-seen order
        self.answers: list[str] = []
        index: dict[str, int] = {}
        self._columns: list[torch.Tensor | None] = []  # per member: its answers' union columns
        for member in members:
            answers = member.answers
            if answers is None:
                self._columns.append(None)
                continue
            columns = []
            for answer in answers:
                key = answer_key(answer)
                if key not in index:
                    index[key] = len(self.answers)
                    self.answers.append(key)
                columns.append(index[key])
            self._columns.append(torch.tensor(columns, dtype=torch.long))
        self._index = index
        generative = any(c is None for c in self._columns)
        infos = tuple(
            replace(m.info, weight=round(w, 6), members=())
            for m, w in zip(members, self.weights, strict=True)
        )
        self.info = ModelInfo(
            model_id=",".join(i.model_id for i in infos),
            revision=",".join(i.revision or "-" for i in infos) if any(i.revision for i in infos) else None,
            backend="ensemble",
            answers=None if generative else len(self.answers),
            dtype=",".join(sorted({i.dtype for i in infos})),
            quantize="int8" if any(i.quantize == "int8" for i in infos) else "none",
            device=",".join(sorted({i.device for i in infos})),
            input_size=max(i.input_size for i in infos),
            members=infos,
        )

    def preprocess(self, data: bytes, limits: ImageLimits = ImageLimits()) -> object:
        """Decode once (at the largest size any member reads), prepare once per member."""
        return self.prepare(decode_image(data, limits, draft_size=self.info.input_size))

    def prepare(self, image: Image.Image) -> tuple[object, ...]:
        return tuple(member.prepare(image) for member in self.members)

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> RankedScores:
        rows = len(questions)
        dense = torch.zeros(rows, len(self.answers))
        extra: list[dict[str, float]] = [{} for _ in range(rows)]  # generated answers outside the union
        for m, (member, weight, columns) in enumerate(
            zip(self.members, self.weights, self._columns, strict=True)
        ):
            scores = member.scores([item[m] for item in inputs], questions, top_k=top_k)  # type: ignore[index]
            if isinstance(scores, DenseScores) and columns is not None:
                if scores.probs.shape[0] != rows:
                    raise RuntimeError(f"model returned {scores.probs.shape[0]} rows for {rows} inputs")
                dense.index_add_(1, columns, weight * scores.probs.float())
                continue
            if not isinstance(scores, RankedScores):
                raise TypeError(f"{member.info.model_id} gave dense scores without an answer list")
            ranked = scores.rows
            if len(ranked) != rows:
                raise RuntimeError(f"model returned {len(ranked)} rows for {rows} inputs")
            for row, answers in enumerate(ranked):
                for answer, confidence in answers:
                    key = answer_key(answer)
                    column = self._index.get(key)
                    if column is not None:
                        dense[row, column] += weight * confidence
                    else:
                        extra[row][key] = extra[row].get(key, 0.0) + weight * confidence
        k = max(1, top_k)
        combined = [dict(row) for row in extra]  # never the same keys as the union's columns
        if self.answers:
            values, indices = dense.topk(min(k, len(self.answers)), dim=-1)
            for row, (vs, ix) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
                combined[row].update((self.answers[i], v) for v, i in zip(vs, ix, strict=True))
        return RankedScores([sorted(row.items(), key=lambda item: -item[1])[:k] for row in combined])

    def question_key(self, question: str) -> str:
        return question
