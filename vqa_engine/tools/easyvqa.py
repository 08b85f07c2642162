"""The easy-VQA dataset (the ``easy-vqa`` package), and pictures of its task as people draw them
(``vqa_engine.tools.near_set``), read through the same preprocessing as chat images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.preprocess import image_to_tensor, load_image_tensor
from vqa_engine.tools import near_set

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


#: the pictures as people draw them that training mixes in (and ``calibrate`` fits the checks on):
#: this many, from this seed plus the run's seed (validation and evaluation use other seeds)
NEAR_PICTURES = 6_000
NEAR_SEED_OFFSET = 1_000


def training_pictures(config: ModelConfig, *, seed: int = 0, near_pictures: int = NEAR_PICTURES) -> Split:
    """easy-VQA's training split and the drawn pictures a training run with ``seed`` mixes in."""
    data = load_split("train", config, progress=False)
    if not near_pictures:
        return data
    near = near_split(
        config, seed=seed + NEAR_SEED_OFFSET, count=near_pictures, kinds=near_set.TRAINING_KINDS
    )
    return joined(data, near)


def near_split(config: ModelConfig, *, seed: int, count: int, kinds: tuple[str, ...]) -> Split:
    """``count`` pictures as people draw them (seeded) with their questions, preprocessed as the
    engine prepares a chat image."""
    images: list[torch.Tensor] = []
    questions: list[str] = []
    answers: list[str] = []
    rows: list[int] = []
    for row, (image, asked) in enumerate(near_set.samples(seed, count, kinds)):
        images.append(image_to_tensor(image, config))
        for question, answer in asked:
            questions.append(question)
            answers.append(answer)
            rows.append(row)
    stacked = torch.stack(images) if images else torch.empty(0, 3, config.image_size, config.image_size)
    return Split(
        questions, answers, torch.tensor(rows, dtype=torch.long), stacked, [-1 - r for r in range(count)]
    )


def joined(first: Split, second: Split) -> Split:
    """Both splits' questions over both splits' images (the second's rows shifted past the first's)."""
    shift = first.images.shape[0]
    return Split(
        first.questions + second.questions,
        first.answers + second.answers,
        torch.cat([first.image_rows, second.image_rows + shift]),
        torch.cat([first.images, second.images]),
        first.image_ids + second.image_ids,
    )
