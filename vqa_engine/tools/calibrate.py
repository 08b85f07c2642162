"""Give an existing package what the answer checks need, without retraining it.

    python -m vqa_engine.tools.calibrate models/easy-vqa-film [--clusters 24] [--holdout 0.2] [--seed 0]

Writes into the package, from the pictures training learns from (easy-VQA's training split and
the drawn pictures of ``vqa_engine.tools.near_set`` it mixes in; the test split is never read):

- ``familiarity.safetensors``: statistics of the image encoder's features over the training
  pictures, fitted on all but ``--holdout`` of them; the held-out pictures calibrate the
  familiarity scale, so the ``MIN_IMAGE_FAMILIARITY`` threshold is chosen on them alone.
- ``question_forms.json``: the answers each training question form was trained to give.
- ``checks_selection.json``: what each pair of thresholds (familiarity, confidence) does on a
  validation split of its own (``measure_selection``): pictures as people draw them
  (``vqa_engine.tools.near_set``, a seed no training or evaluation set uses) with their questions, and
  out-of-distribution pictures (noise, gradients, text, textures, several shapes); the checks
  pick the thresholds from it for ``MAX_ANSWER_RISK``.

``python -m vqa_engine.tools.train`` records both the same way when it writes a package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vqa_engine.checks.familiarity import FamiliarityModel, describe_images, fit_familiarity
from vqa_engine.checks.options import CheckOptions
from vqa_engine.checks.questions import QuestionForms
from vqa_engine.checks.selection import Scored, SelectionTable
from vqa_engine.errors import VQAError
from vqa_engine.modular.model import ModularVQA
from vqa_engine.modular.package import (
    FAMILIARITY_FILE,
    QUESTION_FORMS_FILE,
    SELECTION_FILE,
    ModelPackage,
    load_package,
)
from vqa_engine.modular.predictor import Predictor
from vqa_engine.preprocess import image_to_tensor
from vqa_engine.tools import near_set
from vqa_engine.tools.easyvqa import NEAR_PICTURES, training_pictures
from vqa_engine.tools.ood_set import GENERATORS

DEFAULT_CLUSTERS = 24
DEFAULT_HOLDOUT = 0.2
#: the validation split's seed (training's near-distribution pictures use 1,000 + the run's seed,
#: ``vqa_engine.tools.evaluate`` other seeds still)
VALIDATION_SEED = 2_000
VALIDATION_PICTURES = 1_500
#: out-of-distribution kinds the thresholds are chosen against (photos and unseen colours stay
#: for the evaluation alone), and pictures of each
VALIDATION_OOD_KINDS = ("noise", "gradient", "text", "texture", "multi_shape")
VALIDATION_OOD_PER_KIND = 80


@torch.inference_mode()
def image_descriptors(
    model: ModularVQA, images: torch.Tensor, *, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """(N, D) familiarity descriptors of normalised images (N, 3, S, S), in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [
        describe_images(model.image_encoder.feature_maps(batch.to(device))).cpu()
        for batch in tqdm(images.split(batch_size), desc="image features", disable=not progress, leave=False)
    ]
    return torch.cat(chunks)


def training_source(pictures: int) -> str:
    """How the statistics' file names the pictures it was fitted on."""
    return f"easy-VQA train split and pictures as people draw them ({pictures:,} pictures)"


def fit_image_statistics(
    model: ModularVQA,
    images: torch.Tensor,
    *,
    clusters: int = DEFAULT_CLUSTERS,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    source: str = "",
    progress: bool = False,
) -> FamiliarityModel:
    """Familiarity statistics of ``model`` over training images (some held out to calibrate)."""
    descriptors = image_descriptors(model, images, progress=progress)
    info = {"source": source}
    return fit_familiarity(descriptors, clusters=clusters, holdout=holdout, seed=seed, info=info)


@torch.inference_mode()
def _scored(
    package: ModelPackage, images: list[torch.Tensor], questions: list[tuple[int, str, str | None]]
) -> list[Scored]:
    """What the checks see for each (image row, question, right answer or None: none is right)."""
    predictor = Predictor(package, checks=CheckOptions(min_image_familiarity=0.0, min_confidence=0.0))
    stacked = torch.stack(images)
    scored: list[Scored] = []
    for start in range(0, len(questions), 512):
        batch = questions[start : start + 512]
        rows = torch.tensor([row for row, _, _ in batch])
        asked = [question for _, question, _ in batch]
        for prediction, (_, question, truth) in zip(
            predictor.predict_batch(stacked[rows], asked, top_k=1), batch, strict=True
        ):
            scored.append(
                Scored(
                    familiarity=prediction.familiarity,
                    confidence=prediction.confidence,
                    question_flagged=predictor.checks.question_reason(prediction, question) is not None,
                    correct=prediction.answer == truth,
                )
            )
    return scored


def measure_selection(package: ModelPackage, *, seed: int = VALIDATION_SEED) -> SelectionTable:
    """The validation table of ``vqa_engine.checks.selection`` for a loaded package (with its statistics)."""
    config = package.config
    images: list[torch.Tensor] = []
    in_dist: list[tuple[int, str, str | None]] = []
    for image, asked in near_set.samples(seed, VALIDATION_PICTURES, near_set.TRAINING_KINDS):
        in_dist += [(len(images), question, answer) for question, answer in asked]
        images.append(image_to_tensor(image, config))
    distinct = sorted({question for _, question, _ in in_dist})
    ood: list[tuple[int, str, str | None]] = []
    for k, kind in enumerate(VALIDATION_OOD_KINDS):
        for i in range(VALIDATION_OOD_PER_KIND):
            rng = np.random.default_rng([seed, k, i])
            picture = GENERATORS[kind](rng)
            picks = rng.choice(len(distinct), size=2, replace=False)
            ood += [(len(images), distinct[int(q)], None) for q in picks]
            images.append(image_to_tensor(picture, config))
    info: dict[str, object] = {
        "in_distribution": f"{VALIDATION_PICTURES:,} pictures as people draw them "
        f"(vqa_engine.tools.near_set seed {seed}, kinds {', '.join(near_set.TRAINING_KINDS)})",
        "out_of_distribution": f"{VALIDATION_OOD_PER_KIND} pictures each of "
        f"{', '.join(VALIDATION_OOD_KINDS)} (vqa_engine.tools.ood_set, seed {seed})",
    }
    return SelectionTable.measure(_scored(package, images, in_dist), _scored(package, images, ood), info)


def write_selection(package_dir: Path) -> SelectionTable:
    """Measure a written package's validation table and add it to the package."""
    table = measure_selection(load_package(package_dir))
    table.save(package_dir / SELECTION_FILE)
    return table


def calibrate(
    package_dir: Path,
    *,
    clusters: int = DEFAULT_CLUSTERS,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    near_pictures: int = NEAR_PICTURES,
    progress: bool = True,
) -> tuple[FamiliarityModel, QuestionForms]:
    """Fit the files from the pictures a training run with ``seed`` learns from (easy-VQA's
    training split and ``near_pictures`` drawn ones) and write them into the package."""
    package = load_package(package_dir, checks_data=False)
    data = training_pictures(package.config, seed=seed, near_pictures=near_pictures)
    familiarity = fit_image_statistics(
        package.model,
        data.images,
        clusters=clusters,
        holdout=holdout,
        seed=seed,
        source=training_source(data.images.shape[0]),
        progress=progress,
    )
    forms = QuestionForms.build(data.questions, data.answers, package.answers)
    familiarity.save(package_dir / FAMILIARITY_FILE)
    forms.save(package_dir / QUESTION_FORMS_FILE)
    (package_dir / SELECTION_FILE).unlink(missing_ok=True)  # measured with the old statistics
    write_selection(package_dir)
    return familiarity, forms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vqa_engine.tools.calibrate", description=__doc__.splitlines()[0]
    )
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS, help="k-means clusters")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT, help="share kept to calibrate")
    p.add_argument(
        "--seed", type=int, default=0, help="the training run's seed: its drawn pictures, the held-out share"
    )
    p.add_argument(
        "--near-pictures",
        type=int,
        default=NEAR_PICTURES,
        help=f"drawn pictures the training run mixed in (default {NEAR_PICTURES:,})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if not 0 < a.holdout < 1:
        p.error("--holdout must be between 0 and 1")
    try:
        familiarity, forms = calibrate(
            a.package,
            clusters=a.clusters,
            holdout=a.holdout,
            seed=a.seed,
            near_pictures=a.near_pictures,
            progress=not a.quiet,
        )
    except VQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = familiarity.info
    chosen = SelectionTable.load(a.package / SELECTION_FILE).choose(CheckOptions().max_answer_risk)
    flagged = sum(v < chosen.min_familiarity for v in familiarity.familiarity(familiarity.heldout))
    print(
        f"wrote {a.package / FAMILIARITY_FILE}: {familiarity.size} features, {info['clusters']} clusters, "
        f"fitted on {info['pictures_fitted']:,} training pictures, "
        f"calibrated on {info['pictures_held_out']:,} held out"
    )
    print(f"wrote {a.package / QUESTION_FORMS_FILE}: {len(forms.forms)} question forms")
    print(
        f"wrote {a.package / SELECTION_FILE}: at the default MAX_ANSWER_RISK "
        f"({CheckOptions().max_answer_risk:g}), familiarity >= {chosen.min_familiarity:g} and confidence >= "
        f"{chosen.min_confidence:g} answer {chosen.coverage:.1%} of the validation questions, "
        f"{chosen.risk:.2%} of them wrong, {chosen.ood_flagged:.1%} of out-of-distribution ones flagged "
        f"({flagged} of the {info['pictures_held_out']:,} held-out training pictures unfamiliar)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
