"""Will an answer be right? The answer checks judged as selective prediction, per set of pictures.

For each set, the checks in force (``MAX_ANSWER_RISK`` and the package's validation table) decide
which questions are answered; reported:

- **coverage**: the share answered (not marked a guess);
- **accuracy** and **risk** among the answered (risk = 1 - accuracy);
- **AURC**: the area under the risk–coverage curve when questions are ranked by trust (the checks'
  verdict first, then the confidence): the mean risk over every coverage, lower is better.

Sets: easy-VQA's official test split; pictures as people draw them (``vqa_engine.tools.near_set`` at an
evaluation seed no training or validation uses, every kind of variation, the ones training never
saw included, reported per kind too); out-of-distribution pictures (``--ood DIR``), where no answer
is right, so coverage is the share *not* flagged. ``draw_risk_coverage`` draws the curves (PNG).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vqa_engine.checks.selection import aurc, risk_coverage
from vqa_engine.modular.predictor import Predictor
from vqa_engine.preprocess import image_to_tensor
from vqa_engine.tools import near_set
from vqa_engine.tools.easyvqa import Split

#: the evaluation's near-distribution pictures (training uses 1,000 + its seed, validation 2,000)
NEAR_EVAL_SEED = 3_000
NEAR_EVAL_PICTURES = 2_000


def _judge(
    predictor: Predictor,
    images: torch.Tensor,
    rows: Sequence[int],
    questions: Sequence[str],
    answers: Sequence[str | None],
) -> list[tuple[bool, bool, float]]:
    """(answered, correct, trust) of each question; ``None`` answers: nothing is right."""
    judged: list[tuple[bool, bool, float]] = []
    for start in range(0, len(questions), 512):
        batch_rows = torch.tensor(rows[start : start + 512])
        predictions = predictor.predict_batch(
            images[batch_rows], list(questions[start : start + 512]), top_k=1
        )
        for prediction, truth in zip(predictions, answers[start : start + 512], strict=True):
            answered = not prediction.abstain
            judged.append(
                (answered, prediction.answer == truth, prediction.confidence - (0 if answered else 1))
            )
    return judged


def figures(judged: Sequence[tuple[bool, bool, float]]) -> dict[str, float | int]:
    kept = [correct for answered, correct, _ in judged if answered]
    curve = risk_coverage((trust, correct) for _, correct, trust in judged)
    accuracy = sum(kept) / len(kept) if kept else 0.0
    return {
        "questions": len(judged),
        "coverage": len(kept) / len(judged) if judged else 0.0,
        "accuracy_answered": accuracy,
        "risk_answered": 1 - accuracy if kept else 0.0,
        "aurc": aurc(curve),
    }


def near_pictures(
    config: object, *, seed: int = NEAR_EVAL_SEED, count: int = NEAR_EVAL_PICTURES
) -> tuple[torch.Tensor, list[int], list[str], list[str], list[tuple[str, ...]]]:
    """(images, row of each question, questions, answers, kinds of each question's picture)."""
    images, rows, questions, answers, kinds = [], [], [], [], []
    for row, picture in enumerate(near_set.pictures(seed, count)):
        images.append(image_to_tensor(picture.image, config))  # type: ignore[arg-type]
        for question, answer in picture.questions:
            rows.append(row)
            questions.append(question)
            answers.append(answer)
            kinds.append(picture.params.kinds)
    return torch.stack(images), rows, questions, answers, kinds


def evaluate_selective(
    predictor: Predictor,
    test: Split,
    ood_images: torch.Tensor,
    ood_rows: Sequence[int],
    ood_questions: Sequence[str],
    *,
    near_count: int = NEAR_EVAL_PICTURES,
    near_seed: int = NEAR_EVAL_SEED,
) -> tuple[dict[str, object], dict[str, list[tuple[float, float]]]]:
    """Every set's figures, and the risk–coverage curves of the sets with right answers."""
    config = predictor.package.config
    test_judged = _judge(predictor, test.images, test.image_rows.tolist(), test.questions, test.answers)
    images, rows, questions, answers, kinds = near_pictures(config, seed=near_seed, count=near_count)
    near_judged = _judge(predictor, images, rows, questions, answers)
    ood_judged = _judge(predictor, ood_images, ood_rows, ood_questions, [None] * len(ood_questions))
    by_kind: dict[str, list[tuple[bool, bool, float]]] = defaultdict(list)
    for item, picture_kinds in zip(near_judged, kinds, strict=True):
        for kind in picture_kinds:
            by_kind[kind].append(item)
    ood = figures(ood_judged)
    result: dict[str, object] = {
        "easy_vqa_test": figures(test_judged),
        "near": {
            **figures(near_judged),
            "pictures": near_count,
            "seed": near_seed,
            "held_out_kinds": list(near_set.HELD_OUT_KINDS),
            "by_kind": {kind: figures(items) for kind, items in sorted(by_kind.items())},
        },
        "ood": {"questions": ood["questions"], "flagged": 1 - float(ood["coverage"])},
    }
    curves = {
        "easy-VQA test": risk_coverage((t, c) for _, c, t in test_judged),
        "pictures as people draw them": risk_coverage((t, c) for _, c, t in near_judged),
        "the same with the out-of-distribution questions": risk_coverage(
            (t, c) for _, c, t in [*near_judged, *ood_judged]
        ),
    }
    return result, curves


_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def draw_risk_coverage(
    curves: dict[str, list[tuple[float, float]]],
    path: Path,
    *,
    max_risk: float = 0.1,
    target: float | None = None,
) -> None:
    """Risk (share wrong among the answered) against coverage (share answered), one line a set."""
    width, height, left, right, top, bottom = 760, 460, 70, 20, 30, 110
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(coverage: float, risk: float) -> tuple[float, float]:
        return left + coverage * plot_w, top + plot_h * (1 - min(risk, max_risk) / max_risk)

    for i in range(6):  # grid and ticks
        x, _ = xy(i / 5, 0)
        _, y = xy(0, max_risk * i / 5)
        draw.line([(x, top), (x, top + plot_h)], fill=(230, 230, 230))
        draw.line([(left, y), (left + plot_w, y)], fill=(230, 230, 230))
        draw.text((x - 10, top + plot_h + 6), f"{i * 20}%", fill="black", font=font)
        draw.text((left - 44, y - 6), f"{max_risk * i / 5:.0%}", fill="black", font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    if target is not None:
        _, y = xy(0, target)
        draw.line([(left, y), (left + plot_w, y)], fill=(120, 120, 120), width=1)
        draw.text((left + 4, y - 14), f"MAX_ANSWER_RISK {target:.0%}", fill=(90, 90, 90), font=font)
    for curve, colour in zip(curves.values(), _COLOURS, strict=False):
        points = [xy(0, curve[0][1])] + [xy(c, r) for c, r in curve] if curve else []
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    draw.text(
        (left, 8),
        "risk (wrong among the answered) against coverage (share answered)",
        fill="black",
        font=font,
    )
    for i, (name, colour) in enumerate(zip(curves, _COLOURS, strict=False)):
        y = top + plot_h + 30 + 18 * i
        draw.line([(left, y + 6), (left + 30, y + 6)], fill=colour, width=3)
        draw.text((left + 38, y), name, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
