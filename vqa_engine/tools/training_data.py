"""What a training run learns from, laid out for training: easy-VQA, drawn pictures, outliers.

The outlier pictures (outlier exposure), the split of the pictures into training and validation
(no picture in both), and the batches that hold every question about a few pictures.
"""

from __future__ import annotations

import numpy as np
import torch

from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.preprocess import image_to_tensor
from vqa_engine.tools import near_set
from vqa_engine.tools.easyvqa import Split
from vqa_engine.tools.ood_set import GENERATORS

#: outlier exposure (Hendrycks et al., 2019): pictures no answer fits, from these generators of
#: ``vqa_engine.tools.ood_set`` (never its photographs), at their own seed offset; trained towards a
#: uniform answer distribution, so that the confidence says "I can't tell" about such pictures
OUTLIER_GENERATORS = {
    **{kind: GENERATORS[kind] for kind in ("noise", "gradient", "text", "texture", "multi_shape")},
    "several_drawn_shapes": near_set.several,  # scenes of shapes as people draw them
}
OUTLIER_KINDS = tuple(OUTLIER_GENERATORS)
OUTLIER_SEED_OFFSET = 4_000
#: the answer an outlier question is "trained to give": none (its label is -1)
NO_ANSWER = ""


def outlier_split(config: ModelConfig, questions: list[str], *, seed: int, count: int) -> Split:
    """``count`` outlier pictures, two of ``questions`` each (answers ``NO_ANSWER``)."""
    distinct = sorted(set(questions))
    images: list[torch.Tensor] = []
    asked: list[str] = []
    rows: list[int] = []
    for i in range(count):
        k = i % len(OUTLIER_KINDS)
        rng = np.random.default_rng([seed, k, i])
        images.append(image_to_tensor(OUTLIER_GENERATORS[OUTLIER_KINDS[k]](rng), config))
        for q in rng.choice(len(distinct), size=2, replace=False):
            asked.append(distinct[int(q)])
            rows.append(i)
    stacked = torch.stack(images) if images else torch.empty(0, 3, config.image_size, config.image_size)
    return Split(asked, [NO_ANSWER] * len(asked), torch.tensor(rows, dtype=torch.long), stacked, [-1] * count)


def split_by_image(
    data: Split, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Question indices for training and validation; no image appears in both."""
    n_images = data.images.shape[0]
    n_val = round(n_images * fraction)
    is_val = torch.zeros(n_images, dtype=torch.bool)
    is_val[torch.randperm(n_images, generator=generator)[:n_val]] = True
    question_is_val = is_val[data.image_rows]
    all_idx = torch.arange(len(data))
    return all_idx[~question_is_val], all_idx[question_is_val]


def image_batches(
    data: Split, question_idx: torch.Tensor, images_per_batch: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of (image rows, question indices, each question's position in the image rows).

    Grouping questions by image lets the model encode each image once per step: about ten
    questions share an image in easy-VQA, so an epoch costs a third of question-by-question batching.
    """
    by_image: dict[int, list[int]] = {}
    for q, row in zip(question_idx.tolist(), data.image_rows[question_idx].tolist(), strict=True):
        by_image.setdefault(row, []).append(q)
    rows = torch.tensor(sorted(by_image), dtype=torch.long)
    rows = rows[torch.randperm(len(rows), generator=generator)]
    batches = []
    for chunk in rows.split(images_per_batch):
        questions: list[int] = []
        positions: list[int] = []
        for pos, row in enumerate(chunk.tolist()):
            questions += by_image[row]
            positions += [pos] * len(by_image[row])
        batches.append((chunk, torch.tensor(questions), torch.tensor(positions)))
    return batches
