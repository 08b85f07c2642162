"""Selective prediction: when to answer, chosen for a target risk on a validation split.

An answer is given (not marked a guess) when its picture's familiarity and its confidence are both
at least their thresholds and the question checks pass. Which thresholds? The ones that answer the
most validation questions while

- at most ``max_risk`` of the answered in-distribution questions are wrong (pictures as people
  draw them and easy-VQA's own, with their right answers), and
- at least ``min_ood_flagged`` of the out-of-distribution validation pictures (noise, text,
  several shapes, unseen colours...) are not answered: an answer about them is wrong by definition.

The validation split is made by the package's training (other seeds than any evaluation set) and
recorded in the package as a table of (familiarity threshold, confidence threshold) → coverage,
risk, out-of-distribution flagged, so that ``MAX_ANSWER_RISK`` can be changed without
recomputing anything. Pure Python: the engine and the settings read it without torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vqa_engine.errors import ModelPackageError

FORMAT_VERSION = 1
#: familiarity thresholds tried. Familiarity is the share of held-out training pictures that look
#: at least as unusual, so a threshold costs about that share of training-like pictures; the
#: smallest tried, 0.001, is the floor: a picture rarer than one training picture in a thousand is
#: never answered, whatever the validation split holds (it cannot hold every kind of stranger:
#: photographs, for one, are not in it)
FAMILIARITY_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
#: confidence thresholds tried
CONFIDENCE_GRID = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
#: the share of out-of-distribution validation pictures that must be flagged
MIN_OOD_FLAGGED = 0.95


@dataclass(frozen=True)
class Scored:
    """One validation question: what the checks see, and whether the answer was right."""

    familiarity: float | None  # None: no image statistics
    confidence: float
    question_flagged: bool  # the question checks (unknown words, answer type) abstain
    correct: bool


@dataclass(frozen=True)
class Operating:
    """One pair of thresholds and what it did on the validation split."""

    min_familiarity: float
    min_confidence: float
    coverage: float  # share of in-distribution questions answered
    risk: float  # share of the answered in-distribution questions that were wrong
    ood_flagged: float  # share of out-of-distribution questions not answered


def answered(item: Scored, min_familiarity: float, min_confidence: float) -> bool:
    image_ok = item.familiarity is None or item.familiarity >= min_familiarity
    return image_ok and not item.question_flagged and item.confidence >= min_confidence


def operating_point(
    in_dist: Sequence[Scored], ood: Sequence[Scored], min_familiarity: float, min_confidence: float
) -> Operating:
    kept = [item for item in in_dist if answered(item, min_familiarity, min_confidence)]
    wrong = sum(not item.correct for item in kept)
    flagged = sum(not answered(item, min_familiarity, min_confidence) for item in ood)
    return Operating(
        min_familiarity,
        min_confidence,
        coverage=len(kept) / len(in_dist) if in_dist else 0.0,
        risk=wrong / len(kept) if kept else 0.0,
        ood_flagged=flagged / len(ood) if ood else 1.0,
    )


@dataclass
class SelectionTable:
    """Every grid point's validation figures, and the choice for a target risk."""

    points: list[Operating]
    info: dict[str, object]

    @classmethod
    def measure(
        cls, in_dist: Sequence[Scored], ood: Sequence[Scored], info: dict[str, object] | None = None
    ) -> SelectionTable:
        points = [operating_point(in_dist, ood, f, c) for f in FAMILIARITY_GRID for c in CONFIDENCE_GRID]
        counts = {"in_distribution_questions": len(in_dist), "ood_questions": len(ood)}
        return cls(points, {**counts, **(info or {})})

    def choose(self, max_risk: float, min_ood_flagged: float = MIN_OOD_FLAGGED) -> Operating:
        """The most answered point within both limits; if none is, the safest point there is."""
        fitting = [p for p in self.points if p.risk <= max_risk and p.ood_flagged >= min_ood_flagged]
        if fitting:  # most coverage; then the most flagged, the least risk, the lower thresholds
            return max(
                fitting,
                key=lambda p: (p.coverage, p.ood_flagged, -p.risk, -p.min_confidence, -p.min_familiarity),
            )
        return min(self.points, key=lambda p: (p.risk, -p.ood_flagged, -p.coverage))

    def save(self, path: Path) -> None:
        points = [asdict(p) for p in self.points]
        body = {"format_version": FORMAT_VERSION, "info": self.info, "points": points}
        path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SelectionTable:
        """Raises ``ModelPackageError`` naming the file."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            if body.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format {body.get('format_version')!r}, not {FORMAT_VERSION}")
            points = [Operating(**point) for point in body["points"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelPackageError(f"{path} is not a valid selection table: {exc}") from exc
        if not points:
            raise ModelPackageError(f"{path} has no operating points")
        return cls(points, dict(body.get("info") or {}))


def risk_coverage(items: Iterable[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(coverage, risk) as the answered set grows from the most to the least trusted item;
    ``items`` are (trust, correct) pairs. Ties in trust enter together."""
    ordered = sorted(items, key=lambda item: -item[0])
    n = len(ordered)
    curve: list[tuple[float, float]] = []
    wrong = 0
    for i, (trust, correct) in enumerate(ordered, start=1):
        wrong += not correct
        if i == n or ordered[i][0] != trust:
            curve.append((i / n, wrong / i))
    return curve


def aurc(curve: Sequence[tuple[float, float]]) -> float:
    """Area under the risk–coverage curve (lower is better): the mean risk over coverages."""
    area, previous = 0.0, 0.0
    for coverage, risk in curve:
        area += (coverage - previous) * risk
        previous = coverage
    return area
