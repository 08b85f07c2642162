"""What a training run is asked to do (``TrainOptions``) and what it reports (``TrainResult``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.tools import near_set
from vqa_engine.tools.easyvqa import NEAR_PICTURES

#: where a run without --out writes: a new folder each time, never the bundled model
RUNS_DIR = Path("runs")


def new_run_folder(runs: Path = RUNS_DIR, *, now: float | None = None) -> Path:
    """A folder name under ``runs`` that does not exist yet (time-stamped)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    folder = runs / f"easy-vqa-{stamp}"
    n = 2
    while folder.exists():
        folder = runs / f"easy-vqa-{stamp}-{n}"
        n += 1
    return folder


#: what the training pictures look like, for "this picture doesn't look like the ones I was trained on (…)"
TRAINING_IMAGES = "one coloured shape on a plain background"


@dataclass
class TrainOptions:
    out: Path = field(default_factory=new_run_folder)
    epochs: int = 9
    images_per_batch: int = 16  # each batch holds every training question about these images
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.05
    limit: int = 0  # use only the first N training questions (0: all); for quick checks
    near_pictures: int = NEAR_PICTURES  # pictures as people draw them (vqa_engine.tools.near_set), mixed in
    near_kinds: tuple[str, ...] = near_set.TRAINING_KINDS
    outlier_pictures: int = 1500  # pictures no answer fits, taught to be uncertain about (outlier exposure)
    outlier_weight: float = 0.1
    threads: int = 2
    progress: bool = True
    config: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class TrainResult:
    package: Path
    seconds: float
    val_accuracy: float
    val_questions: int
    train_questions: int
    temperature: float
    parameters: int
    weights_bytes: int
