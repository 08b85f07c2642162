"""Evaluate a model package on easy-VQA: accuracy (overall and per answer type), the most common
confusions, and calibration (expected calibration error); with ``--ood DIR``, the answer checks
too (``vqa_engine.tools.evaluate_checks``), with coverage, risk and AURC per set of pictures
(``vqa_engine.tools.evaluate_selective``).

    python -m vqa_engine.tools.evaluate models/easy-vqa-film [--limit N] [--ood DIR] [--near-pictures N]
        [--output FILE] [--update-card]

Nothing is written unless asked: ``--output`` for the JSON, ``--update-card`` for the model card.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from vqa_engine.checks.options import CheckOptions
from vqa_engine.errors import VQAError
from vqa_engine.modular.package import CARD_FILE, load_package
from vqa_engine.modular.predictor import Predictor
from vqa_engine.tools.easyvqa import answer_type, load_split
from vqa_engine.tools.evaluate_checks import (
    ChecksEvaluation,
    evaluate_checks,
    format_checks_report,
    update_card_checks,
)
from vqa_engine.tools.evaluate_selective import NEAR_EVAL_PICTURES

ECE_BINS = 15
_CARD_SECTION = re.compile(r"<!-- evaluation:start -->.*?<!-- evaluation:end -->", re.DOTALL)


@dataclass
class Evaluation:
    package: str
    split: str
    questions: int
    accuracy: float
    by_type: dict[str, dict[str, float]]  # type -> {questions, accuracy}
    confusions: list[dict[str, object]]  # most frequent (truth, predicted) errors
    ece: float
    nll: float
    mean_confidence: float
    reliability: list[dict[str, float]] = field(default_factory=list)  # per confidence bin
    seconds: float = 0.0


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """ECE over equal-width confidence bins, and the bins themselves (a reliability diagram)."""
    edges = torch.linspace(0, 1, bins + 1)
    ece, table = 0.0, []
    n = len(confidence)
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        count = int(in_bin.sum())
        if not count:
            continue
        conf = float(confidence[in_bin].mean())
        acc = float(correct[in_bin].float().mean())
        ece += count / n * abs(acc - conf)
        table.append({"low": lo, "high": hi, "questions": count, "confidence": conf, "accuracy": acc})
    return ece, table


def evaluate(
    package_dir: Path, *, split: str = "test", limit: int = 0, batch_size: int = 512, progress: bool = True
) -> Evaluation:
    """Run the package over a split (its first ``limit`` questions when set)."""
    started = time.perf_counter()
    package = load_package(package_dir)
    predictor = Predictor(package)
    data = load_split(split, package.config, progress=progress)
    n = min(limit, len(data)) if limit else len(data)
    answer_id = {a: i for i, a in enumerate(package.answers)}
    labels = torch.tensor([answer_id.get(a, -1) for a in data.answers[:n]], dtype=torch.long)

    chunks = []
    for start in tqdm(range(0, n, batch_size), desc="evaluating", disable=not progress, leave=False):
        end = min(start + batch_size, n)
        rows = data.image_rows[start:end]
        chunks.append(predictor.probabilities(data.images[rows], data.questions[start:end]))
    probs = torch.cat(chunks)
    confidence, predicted = probs.max(dim=1)
    correct = predicted == labels

    by_type: dict[str, dict[str, float]] = {}
    types = [answer_type(a) for a in data.answers[:n]]
    for kind in sorted(set(types)):
        mask = torch.tensor([t == kind for t in types])
        by_type[kind] = {"questions": int(mask.sum()), "accuracy": float(correct[mask].float().mean())}

    confusion = Counter(
        (data.answers[i], package.answers[int(predicted[i])])
        for i in torch.nonzero(~correct).flatten().tolist()
    )
    confusions = [{"truth": t, "predicted": p, "count": c} for (t, p), c in confusion.most_common(10)]
    ece, reliability = expected_calibration_error(confidence, correct)
    known = labels >= 0
    nll = float(torch.nn.functional.nll_loss(probs[known].clamp_min(1e-12).log(), labels[known]))
    return Evaluation(
        package=str(package_dir),
        split=split,
        questions=n,
        accuracy=float(correct.float().mean()),
        by_type=by_type,
        confusions=confusions,
        ece=ece,
        nll=nll,
        mean_confidence=float(confidence.mean()),
        reliability=reliability,
        seconds=time.perf_counter() - started,
    )


def format_report(result: Evaluation) -> str:
    """A plain-text table of the evaluation (also the model card's evaluation section)."""
    lines = [
        f"easy-VQA {result.split} split, {result.questions:,} questions",
        "",
        "| answer type | questions | accuracy |",
        "|---|---:|---:|",
        *(
            f"| {kind} | {int(v['questions']):,} | {v['accuracy']:.2%} |"
            for kind, v in result.by_type.items()
        ),
        f"| **all** | {result.questions:,} | {result.accuracy:.2%} |",
        "",
        f"Expected calibration error ({ECE_BINS} bins): {result.ece:.3%}; "
        f"mean confidence {result.mean_confidence:.2%}; NLL {result.nll:.4f}.",
        "",
    ]
    errors = result.questions - round(result.accuracy * result.questions)
    if result.confusions:
        lines.append(f"Most common confusions ({errors} error{'s' if errors != 1 else ''} in all):")
        lines += [f"- {c['truth']} → {c['predicted']}: {c['count']}" for c in result.confusions]
    else:
        lines.append("No errors.")
    return "\n".join(lines)


def update_card(package_dir: Path, result: Evaluation) -> None:
    """Replace the evaluation section of the package's model card."""
    path = package_dir / CARD_FILE
    card = path.read_text(encoding="utf-8") if path.is_file() else "## Evaluation\n"
    section = f"<!-- evaluation:start -->\n{format_report(result)}\n<!-- evaluation:end -->"
    if _CARD_SECTION.search(card):
        card = _CARD_SECTION.sub(lambda _: section, card)
    else:
        card = card.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(card, encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vqa_engine.tools.evaluate", description=__doc__.splitlines()[0]
    )
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--split", choices=("test", "train"), default="test", help="easy-VQA split (default test)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N questions only (default: all)")
    p.add_argument("--batch-size", type=int, default=512, help="questions per forward pass (default 512)")
    p.add_argument(
        "--ood",
        type=Path,
        help="measure the answer checks too, with this out-of-distribution folder (vqa_engine.tools.ood_set)",
    )
    p.add_argument(
        "--questions-per-image", type=int, default=10, help="with --ood: test questions per picture"
    )
    p.add_argument(
        "--near-pictures",
        type=int,
        default=NEAR_EVAL_PICTURES,
        help="with --ood: pictures as people draw them to judge the answers on "
        f"(vqa_engine.tools.near_set at an evaluation seed; default {NEAR_EVAL_PICTURES:,})",
    )
    p.add_argument("--output", type=Path, default=None, help="also write the results as JSON to this file")
    p.add_argument(
        "--update-card", action="store_true", help="write the results into the model card (README.md)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    checks: ChecksEvaluation | None = None
    try:
        result = evaluate(
            a.package, split=a.split, limit=a.limit, batch_size=a.batch_size, progress=not a.quiet
        )
        if a.ood is not None:
            package = load_package(a.package)
            checks = evaluate_checks(
                package,
                load_split("test", package.config, progress=not a.quiet),
                a.ood,
                options=CheckOptions(),
                questions_per_image=a.questions_per_image,
                near_pictures=a.near_pictures,
                limit=a.limit,
                batch_size=a.batch_size,
                progress=not a.quiet,
            )
    except VQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(result))
    if checks is not None:
        print("\n" + format_checks_report(checks))
    if a.output is not None:
        checked = {k: v for k, v in asdict(checks).items() if k != "curves"} if checks is not None else None
        payload = asdict(result) | ({"checks": checked} if checked is not None else {})
        a.output.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {a.output}")
    if a.update_card:
        update_card(a.package, result)
        if checks is not None:
            update_card_checks(a.package, checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
