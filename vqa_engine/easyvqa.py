"""The easy-VQA dataset (the ``easy-vqa`` package), read through the same preprocessing as chat images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vqa_engine.model_config import ModelConfig
from vqa_engine.preprocess import load_image_tensor

YES_NO = frozenset({"yes", "no"})
SHAPES = frozenset({"circle", "rectangle", "triangle"})
COLOURS = frozenset({"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"})


def answer_type(answer: str) -> str:
    """``yes/no``, ``shape``, ``colour`` or ``other``: how easy-VQA's answers group."""
    if answer in YES_NO:
        return "yes/no"
    if answer in SHAPES:
        return "shape"
    if answer in COLOURS:
        return "colour"
    return "other"


@dataclass
class Split:
    """Questions of one split, each pointing at a row of ``images``."""

    questions: list[str]
    answers: list[str]
    image_rows: torch.Tensor  # (N,) index into images
    images: torch.Tensor  # (I, 3, S, S) preprocessed
    image_ids: list[int]  # dataset id of each image row

    def __len__(self) -> int:
        return len(self.questions)


def answer_space() -> list[str]:
    """easy-VQA's answers in a stable (sorted) order."""
    import easy_vqa

    return sorted(easy_vqa.get_answers())


def load_split(name: str, config: ModelConfig, *, progress: bool = True) -> Split:
    """Load ``train`` or ``test``; every image is decoded once, from its PNG bytes."""
    import easy_vqa

    if name == "train":
        questions, answers, ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif name == "test":
        questions, answers, ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise ValueError(f"unknown split {name!r} (train or test)")
    image_ids = sorted(paths)
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}
    images = torch.stack(
        [
            load_image_tensor(Path(paths[i]).read_bytes(), config)
            for i in tqdm(image_ids, desc=f"{name} images", disable=not progress, leave=False)
        ]
    )
    rows = torch.tensor([row_of[i] for i in ids], dtype=torch.long)
    return Split(list(questions), list(answers), rows, images, image_ids)


def image_path(split: str, image_id: int) -> Path:
    """Path of one dataset image (used by examples and tests)."""
    import easy_vqa

    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return Path(paths[image_id])
