"""The model card (README.md) a training run writes into its package: what the model is, what it
learned from, how to reproduce it, and the sections ``vqa_engine.tools.evaluate`` fills in."""

from __future__ import annotations

import platform
import shlex
import sys

import torch

from vqa_engine.modular.model_config import ModelConfig
from vqa_engine.tools import near_set
from vqa_engine.tools.easyvqa import NEAR_SEED_OFFSET
from vqa_engine.tools.train_options import TRAINING_IMAGES, TrainOptions, TrainResult
from vqa_engine.tools.training_data import OUTLIER_KINDS, OUTLIER_SEED_OFFSET


def data_section(options: TrainOptions, result: TrainResult) -> str:
    """The card's "Data" section: easy-VQA, the drawn pictures, the outliers, the held-out share."""
    return f"""## Data
easy-VQA 1.0 (the `easy-vqa` package): 64×64 synthetic images of one coloured shape each; and
{options.near_pictures:,} pictures of the same task as people draw them
(`python -m vqa_engine.tools.near_set`, seed {options.seed + NEAR_SEED_OFFSET}; kinds of variation
{", ".join(options.near_kinds)}; the others,
{", ".join(k for k in near_set.ALL_KINDS if k not in options.near_kinds) or "none"}, are held out for
the evaluation); and {options.outlier_pictures:,} pictures no answer fits ({", ".join(OUTLIER_KINDS)}:
`vqa_engine.tools.ood_set`'s generators and `near_set.several`, seed {options.seed + OUTLIER_SEED_OFFSET},
no photographs), trained
towards a uniform answer distribution (outlier exposure, weight {options.outlier_weight}).
Trained on {result.train_questions:,} questions; {result.val_questions:,} questions about
{options.val_fraction:.0%} of the training pictures were held out to fit the softmax temperature.
The official test split and the evaluation's pictures were not used for training or model selection."""


def render_card(options: TrainOptions, result: TrainResult, config: ModelConfig) -> str:
    """The package's README.md: what it is, what it was trained on, how to reproduce it."""
    command = "python -m vqa_engine.tools.train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"""---
license: mit
library_name: vqa-chat
tags: [visual-question-answering, easy-vqa]
datasets: [easy-vqa]
training_images: {TRAINING_IMAGES}
---
# {options.out.name}

A small modular visual-question-answering model for vqa-chat: a
{config.image_encoder} image encoder, a {config.question_encoder} question encoder,
{config.fusion} fusion and an MLP classifier over {config.num_answers} answers.

{data_section(options, result)}

## Model
| | |
|---|---|
| parameters | {result.parameters:,} |
| weights (`model.safetensors`) | {result.weights_bytes / 1e6:.2f} MB |
| input | {config.image_size}×{config.image_size} RGB, {config.resize_mode} to square |
| softmax temperature | {result.temperature} |

## Training
`{command}` — {options.epochs} epochs, each batch every question about {options.images_per_batch} images,
AdamW + one-cycle (max lr {options.lr}), seed {options.seed}, {options.threads} CPU threads;
{result.seconds / 60:.1f} minutes on {platform.machine()} with torch {torch.__version__}.
Validation accuracy {result.val_accuracy:.2%}.

## Evaluation
<!-- evaluation:start -->
Run `python -m vqa_engine.tools.evaluate {options.out} --update-card` to fill this section.
<!-- evaluation:end -->

## Answer checks
`familiarity.safetensors` holds statistics of the image encoder's features over the training
pictures, drawn ones included (fitted on 80% of them, calibrated on the other 20%, chosen by seed
{options.seed}); `question_forms.json` the answers each training question form got;
`checks_selection.json` what each pair of thresholds (familiarity, confidence) does on a
validation split of its own (`vqa_engine.tools.calibrate`: drawn pictures and out-of-distribution ones
at seeds no training or evaluation set uses), from which the thresholds for `MAX_ANSWER_RISK` are
chosen. An answer is marked as a guess (`abstain`) when the picture is unlike the training
pictures, the question has words the model never learned, the answer's type does not fit the
question, or the model is not sure enough.
<!-- checks:start -->
Run `python -m vqa_engine.tools.evaluate {options.out} --ood DIR --update-card` to fill this section.
<!-- checks:end -->

## Limits
It knows only easy-VQA's world: one shape (circle, rectangle, triangle) in one of eight colours.
On photographs it still picks from those 13 answers, with high confidence; the answer checks
mark such answers as guesses. The confidence is calibrated only on easy-VQA-like images.
"""
