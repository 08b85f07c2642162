"""Measure the answer checks: on the official test split, on an out-of-distribution folder, and on
off-template questions. ``python -m vqa_engine.tools.evaluate PACKAGE --ood DIR`` runs it.

- **Test split**: the share of questions answered without ``abstain``, the accuracy on those, and
  why the others abstained; the share of test pictures flagged ``unfamiliar_image``.
- **Out-of-distribution pictures** (``DIR/<kind>/*``, e.g. built by ``python -m
  vqa_engine.tools.ood_set``): the share flagged ``unfamiliar_image``, per kind and in all, and the AUROC
  of the familiarity score between them and the test pictures. Beside it, on the same
  (picture, question) pairs, the AUROC of the energy score and of the softmax confidence, and the
  share that the confidence rule alone would flag (the fallback of packages without statistics).
- **Off-template questions** (``DIR/questions.tsv``): each asked about test pictures; the share
  the question checks flag, per kind, and for questions in the vocabulary's own words, how often the
  answer's type is not the one a person expects and how often that is flagged.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from vqa_engine.checks.options import CheckOptions
from vqa_engine.errors import ModelPackageError, VQAInputError
from vqa_engine.modular.package import CARD_FILE, ModelPackage
from vqa_engine.modular.package_format import RISK_COVERAGE_FILE
from vqa_engine.modular.predictor import Predictor, encode_questions
from vqa_engine.prediction import REASONS, Prediction
from vqa_engine.preprocess import load_image_tensor
from vqa_engine.tools.calibrate import image_descriptors
from vqa_engine.tools.checks_report import ChecksEvaluation, format_checks_report
from vqa_engine.tools.easyvqa import Split, answer_type
from vqa_engine.tools.evaluate_selective import (
    NEAR_EVAL_PICTURES,
    draw_risk_coverage,
    evaluate_selective,
)
from vqa_engine.tools.ood_set import IMAGE_SUFFIXES, QUESTIONS_FILE, read_question_set

_CARD_SECTION = re.compile(r"<!-- checks:start -->.*?<!-- checks:end -->", re.DOTALL)
QUESTION_KINDS_FLAGGED = ("unknown_words", "gibberish", "emoji")  # every one of these should be flagged


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve for "higher means positive" (ties count half)."""
    values = torch.cat([negative, positive]).double()
    ordered, order = values.sort()
    _, inverse, counts = torch.unique(ordered, return_inverse=True, return_counts=True)
    average_rank = (counts.cumsum(0) - counts).double() + (counts.double() + 1) / 2  # 1-based
    ranks = torch.empty_like(values)
    ranks[order] = average_rank[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def read_ood_images(folder: Path, package: ModelPackage) -> tuple[torch.Tensor, list[str], list[str]]:
    """Every picture in ``folder``'s sub-folders: (normalised images, kind of each, file of each)."""
    images, kinds, files = [], [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            images.append(load_image_tensor(path.read_bytes(), package.config))
        except VQAInputError as exc:
            raise ModelPackageError(f"{path}: {exc}") from exc
        kinds.append(path.parent.name if path.parent != folder else "other")
        files.append(str(path.relative_to(folder)))
    if not images:
        raise ModelPackageError(f"{folder} holds no images")
    return torch.stack(images), kinds, files


class _Runner:
    """Batched predictions (with the checks) and the raw scores the detectors compare."""

    def __init__(self, package: ModelPackage, options: CheckOptions, batch_size: int, progress: bool) -> None:
        self.package = package
        self.predictor = Predictor(package, checks=options)
        self.batch_size = batch_size
        self.progress = progress

    @torch.inference_mode()
    def run(
        self, images: torch.Tensor, rows: torch.Tensor, questions: list[str], desc: str
    ) -> tuple[list[Prediction], torch.Tensor]:
        """Predictions for (images[rows[i]], questions[i]) and each pair's energy score."""
        predictions: list[Prediction] = []
        energies = []
        config = self.package.config
        for start in tqdm(
            range(0, len(questions), self.batch_size), desc=desc, disable=not self.progress, leave=False
        ):
            end = min(start + self.batch_size, len(questions))
            batch_images = images[rows[start:end]]
            batch_questions = questions[start:end]
            predictions += self.predictor.predict_batch(batch_images, batch_questions, top_k=1)
            tokens, lengths = encode_questions(
                self.package.vocab, batch_questions, config.max_question_tokens
            )
            logits = self.package.model(batch_images, tokens, lengths).float() / config.temperature
            energies.append(-config.temperature * torch.logsumexp(logits, dim=1))
        return predictions, torch.cat(energies)


def evaluate_checks(
    package: ModelPackage,
    test: Split,
    ood_dir: Path,
    *,
    options: CheckOptions = CheckOptions(),
    questions_per_image: int = 10,
    images_per_question: int = 20,
    limit: int = 0,
    batch_size: int = 512,
    seed: int = 0,
    near_pictures: int = NEAR_EVAL_PICTURES,
    progress: bool = True,
) -> ChecksEvaluation:
    """Run every measurement in the module docstring (``test`` is the official test split, its
    first ``limit`` questions when set)."""
    started = time.perf_counter()
    if limit:
        test = Split(
            test.questions[:limit], test.answers[:limit], test.image_rows[:limit], test.images, test.image_ids
        )
    runner = _Runner(package, options, batch_size, progress)
    checks = runner.predictor.checks
    generator = torch.Generator().manual_seed(seed)
    # the thresholds in force (the settings', or the validation table's choice)
    thresholds = {"min_image_familiarity": checks.min_familiarity, "min_confidence": checks.min_confidence}
    result = ChecksEvaluation(
        str(package.path), checks.image_check, options={**options.model_dump(), **thresholds}, test={}
    )

    test_predictions, test_energy, test_scores = _measure_test(runner, package, test, progress, result)
    ood_images, pair_rows, pair_questions, ood_predictions, ood_energy, ood_scores = _measure_ood(
        runner, package, ood_dir, test, questions_per_image, generator, progress, result, test_scores
    )

    # will each answer be right? coverage and risk per set, and the risk–coverage curves
    result.selective, result.curves = evaluate_selective(
        runner.predictor, test, ood_images, pair_rows.tolist(), pair_questions, near_count=near_pictures
    )

    result.detectors = _detectors(
        test_predictions, ood_predictions, test_energy, ood_energy, test_scores, ood_scores, test, pair_rows
    )

    # off-template questions about test pictures
    question_file = ood_dir / QUESTIONS_FILE
    if question_file.is_file():
        flagged = result.test["question_checks_flagged"]
        result.questions = _question_set(runner, test, question_file, images_per_question, generator, flagged)
    result.seconds = time.perf_counter() - started
    return result


def _measure_test(
    runner: _Runner, package: ModelPackage, test: Split, progress: bool, result: ChecksEvaluation
) -> tuple[list[Prediction], torch.Tensor, torch.Tensor | None]:
    """The official test split, every question: answered, right, flagged (into ``result.test``)."""
    checks = runner.predictor.checks
    test_predictions, test_energy = runner.run(test.images, test.image_rows, test.questions, "test split")
    answered = [not p.abstain for p in test_predictions]
    correct = [p.answer == a for p, a in zip(test_predictions, test.answers, strict=True)]
    kept = [c for c, a in zip(correct, answered, strict=True) if a]
    reasons = Counter(p.reason for p in test_predictions if p.reason)
    question_flags = sum(
        checks.question_reason(p, q) is not None
        for p, q in zip(test_predictions, test.questions, strict=True)
    )
    n = len(test_predictions)
    test_scores = _image_scores(package, test.images, progress)
    result.test = {
        "questions": n,
        "answered": sum(answered) / n,
        "accuracy_all": sum(correct) / n,
        "accuracy_answered": sum(kept) / max(1, len(kept)),
        "abstained_by_reason": {r: reasons.get(r, 0) for r in REASONS},
        "question_checks_flagged": question_flags / n,
        "images": int(test.images.shape[0]),
        "images_unfamiliar": _unfamiliar_share(package, test_scores, checks.min_familiarity),
    }
    return test_predictions, test_energy, test_scores


def _measure_ood(
    runner: _Runner,
    package: ModelPackage,
    ood_dir: Path,
    test: Split,
    questions_per_image: int,
    generator: torch.Generator,
    progress: bool,
    result: ChecksEvaluation,
    test_scores: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[Prediction], torch.Tensor, torch.Tensor | None]:
    """Out-of-distribution pictures, each asked ``questions_per_image`` of the test questions
    (into ``result.ood``); returns what the later measurements reuse."""
    checks = runner.predictor.checks
    ood_images, kinds, _ = read_ood_images(ood_dir, package)
    ood_scores = _image_scores(package, ood_images, progress)
    by_kind: dict[str, dict[str, float]] = {}
    if ood_scores is not None:
        familiar = _familiarity(package, ood_scores)
        flagged = [f < checks.min_familiarity for f in familiar]
        for kind in sorted(set(kinds)):
            picks = [flag for flag, k in zip(flagged, kinds, strict=True) if k == kind]
            by_kind[kind] = {"images": len(picks), "unfamiliar": sum(picks) / len(picks)}
    distinct = sorted(set(test.questions))
    pair_rows = torch.arange(len(ood_images)).repeat_interleave(questions_per_image)
    pair_questions = [
        distinct[int(i)] for i in torch.randint(len(distinct), (len(pair_rows),), generator=generator)
    ]
    ood_predictions, ood_energy = runner.run(ood_images, pair_rows, pair_questions, "ood pairs")
    for kind, figures in by_kind.items():  # any reason: what a user is told is a guess
        abstained = [
            p.abstain
            for p, row in zip(ood_predictions, pair_rows.tolist(), strict=True)
            if kinds[row] == kind
        ]
        figures["answers_abstained"] = sum(abstained) / len(abstained)
    result.ood = {
        "folder": str(ood_dir),
        "images": len(kinds),
        "questions_per_image": questions_per_image,
        "unfamiliar": (
            sum(v["unfamiliar"] * v["images"] for v in by_kind.values()) / len(kinds) if by_kind else None
        ),
        "by_kind": by_kind,
        "auroc": auroc(ood_scores, test_scores)
        if ood_scores is not None and test_scores is not None
        else None,
        "pairs_abstained": sum(p.abstain for p in ood_predictions) / len(ood_predictions),
        "pairs_low_confidence_rule": (
            sum(p.confidence < checks.min_confidence for p in ood_predictions) / len(ood_predictions)
        ),
    }
    return ood_images, pair_rows, pair_questions, ood_predictions, ood_energy, ood_scores


def _detectors(
    test_predictions: list[Prediction],
    ood_predictions: list[Prediction],
    test_energy: torch.Tensor,
    ood_energy: torch.Tensor,
    test_scores: torch.Tensor | None,
    ood_scores: torch.Tensor | None,
    test: Split,
    pair_rows: torch.Tensor,
) -> list[dict[str, object]]:
    """The detectors side by side, on (picture, question) pairs: test questions vs OOD pairs."""
    test_confidence = torch.tensor([p.confidence for p in test_predictions])
    ood_confidence = torch.tensor([p.confidence for p in ood_predictions])
    detectors: list[dict[str, object]] = [
        {"name": "energy score (-T logsumexp(logits / T))", "auroc": auroc(ood_energy, test_energy)},
        {
            "name": "softmax confidence (1 - max probability)",
            "auroc": auroc(-ood_confidence, -test_confidence),
        },
    ]
    if ood_scores is not None and test_scores is not None:
        name = "familiarity (Mahalanobis to the nearest cluster)"
        detectors.insert(
            0, {"name": name, "auroc": auroc(ood_scores[pair_rows], test_scores[test.image_rows])}
        )
    return detectors


def _image_scores(package: ModelPackage, images: torch.Tensor, progress: bool) -> torch.Tensor | None:
    if package.familiarity is None or not hasattr(package.model, "forward_with_features"):
        return None
    return package.familiarity.scores(image_descriptors(package.model, images, progress=progress))


def _familiarity(package: ModelPackage, scores: torch.Tensor) -> list[float]:
    assert package.familiarity is not None
    return package.familiarity.familiarity(scores)


def _unfamiliar_share(package: ModelPackage, scores: torch.Tensor | None, threshold: float) -> float | None:
    if scores is None:
        return None
    values = _familiarity(package, scores)
    return sum(v < threshold for v in values) / len(values)


def _question_set(
    runner: _Runner,
    test: Split,
    path: Path,
    images_per_question: int,
    generator: torch.Generator,
    test_flagged: object,
) -> dict[str, object]:
    rows = read_question_set(path)
    picks = torch.randperm(test.images.shape[0], generator=generator)[:images_per_question]
    image_rows = picks.repeat(len(rows))
    questions = [q for _, _, q in rows for _ in range(len(picks))]
    predictions, _ = runner.run(test.images, image_rows, questions, "question set")
    checks = runner.predictor.checks
    per_kind: dict[str, dict[str, float]] = {}
    must_flag = flagged_must = 0
    wrong = wrong_flagged = right = right_flagged = 0
    for i, (kind, expected, question) in enumerate(rows):
        verdicts = [
            checks.question_reason(p, question) is not None
            for p in predictions[i * len(picks) : (i + 1) * len(picks)]
        ]
        entry = per_kind.setdefault(kind, {"questions": 0, "pairs": 0, "flagged": 0.0})
        entry["questions"] += 1
        entry["pairs"] += len(verdicts)
        entry["flagged"] += sum(verdicts)
        if kind in QUESTION_KINDS_FLAGGED:
            must_flag += len(verdicts)
            flagged_must += sum(verdicts)
        elif expected != "-":
            for p, flag in zip(predictions[i * len(picks) : (i + 1) * len(picks)], verdicts, strict=True):
                if answer_type(p.answer) != expected:
                    wrong, wrong_flagged = wrong + 1, wrong_flagged + flag
                else:
                    right, right_flagged = right + 1, right_flagged + flag
    for entry in per_kind.values():
        entry["flagged"] = entry["flagged"] / entry["pairs"]
    return {
        "file": str(path),
        "images_per_question": len(picks),
        "by_kind": per_kind,
        "known_words_wrong_type": wrong / max(1, wrong + right),
        "known_words_wrong_type_flagged": wrong_flagged / max(1, wrong),
        "known_words_right_type_flagged": right_flagged / max(1, right),
        "off_template_flagged": (flagged_must + wrong_flagged) / max(1, must_flag + wrong),
        "off_template_pairs": must_flag + wrong,
        "test_questions_flagged": test_flagged,
    }


def update_card_checks(package_dir: Path, result: ChecksEvaluation) -> None:
    """Replace (or add) the answer checks section of the package's model card, and draw its
    risk–coverage picture beside it."""
    if result.curves:
        target = result.options.get("max_answer_risk")
        draw_risk_coverage(
            result.curves,
            package_dir / RISK_COVERAGE_FILE,
            target=float(target) if target else None,  # type: ignore[arg-type]
        )
    path = package_dir / CARD_FILE
    card = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = f"<!-- checks:start -->\n{format_checks_report(result)}\n<!-- checks:end -->"
    if _CARD_SECTION.search(card):
        card = _CARD_SECTION.sub(lambda _: section, card)
    else:
        card = card.rstrip("\n") + "\n\n## Answer checks\n" + section + "\n"
    path.write_text(card, encoding="utf-8")
