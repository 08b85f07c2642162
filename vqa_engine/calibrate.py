"""Give an existing package what the answer checks need, without retraining it.

    python -m vqa_engine.calibrate models/easy-vqa-film [--clusters 24] [--holdout 0.2] [--seed 0]

Writes into the package, from easy-VQA's training split (the test split is never read):

- ``familiarity.safetensors``: statistics of the image encoder's features over the training
  pictures, fitted on all but ``--holdout`` of them; the held-out pictures calibrate the
  familiarity scale, so the ``MIN_IMAGE_FAMILIARITY`` threshold is chosen on them alone.
- ``question_forms.json``: the answers each training question form was trained to give.

``python -m vqa_engine.train`` records both the same way when it writes a package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from vqa_engine.checks_options import CheckOptions
from vqa_engine.easyvqa import load_split
from vqa_engine.errors import VQAError
from vqa_engine.familiarity import FamiliarityModel, describe_images, fit_familiarity
from vqa_engine.model import ModularVQA
from vqa_engine.package import FAMILIARITY_FILE, QUESTION_FORMS_FILE, load_package
from vqa_engine.question_check import QuestionForms

DEFAULT_CLUSTERS = 24
DEFAULT_HOLDOUT = 0.2


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


def calibrate(
    package_dir: Path,
    *,
    clusters: int = DEFAULT_CLUSTERS,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    progress: bool = True,
) -> tuple[FamiliarityModel, QuestionForms]:
    """Fit both files from easy-VQA's training split and write them into the package."""
    package = load_package(package_dir, checks_data=False)
    data = load_split("train", package.config, progress=progress)
    familiarity = fit_image_statistics(
        package.model,
        data.images,
        clusters=clusters,
        holdout=holdout,
        seed=seed,
        source=f"easy-VQA train split ({data.images.shape[0]:,} pictures)",
        progress=progress,
    )
    forms = QuestionForms.build(data.questions, data.answers, package.answers)
    familiarity.save(package_dir / FAMILIARITY_FILE)
    forms.save(package_dir / QUESTION_FORMS_FILE)
    return familiarity, forms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vqa_engine.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS, help="k-means clusters")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT, help="share kept to calibrate")
    p.add_argument("--seed", type=int, default=0, help="which pictures are held out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if not 0 < a.holdout < 1:
        p.error("--holdout must be between 0 and 1")
    try:
        familiarity, forms = calibrate(
            a.package, clusters=a.clusters, holdout=a.holdout, seed=a.seed, progress=not a.quiet
        )
    except VQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = familiarity.info
    default = CheckOptions().min_image_familiarity
    flagged = sum(v < default for v in familiarity.familiarity(familiarity.heldout))
    print(
        f"wrote {a.package / FAMILIARITY_FILE}: {familiarity.size} features, {info['clusters']} clusters, "
        f"fitted on {info['pictures_fitted']:,} training pictures, "
        f"calibrated on {info['pictures_held_out']:,} held out ({flagged} of them under the default "
        f"MIN_IMAGE_FAMILIARITY={default:g}; "
        f"score threshold {familiarity.threshold_score(default):.1f})"
    )
    print(f"wrote {a.package / QUESTION_FORMS_FILE}: {len(forms.forms)} question forms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
