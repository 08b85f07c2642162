"""Train a ModularVQA model on easy-VQA and write a model package.

    python -m vqa_engine.tools.train --out my-model      # default: a new folder under runs/

Seeded: the same command, seed and thread count give the same weights. A slice of the training
images (not questions: no image is shared) is held out to pick the softmax temperature. The
package also records what the answer checks need (``vqa_engine.tools.calibrate``): statistics of the
image encoder's features over the training images, calibrated on a held-out share of them, and
the answers each training question form was trained to give.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vqa_engine.checks.questions import QuestionForms
from vqa_engine.modular.model import ModularVQA
from vqa_engine.modular.model_config import FUSIONS, IMAGE_ENCODERS, QUESTION_ENCODERS, ModelConfig
from vqa_engine.modular.package import CARD_FILE, WEIGHTS_FILE, save_package
from vqa_engine.modular.predictor import encode_questions
from vqa_engine.modular.vocab import Vocabulary
from vqa_engine.tools.calibrate import fit_image_statistics, training_source, write_selection
from vqa_engine.tools.easyvqa import (
    NEAR_SEED_OFFSET,
    Split,
    answer_space,
    joined,
    load_split,
    near_split,
)
from vqa_engine.tools.train_card import render_card
from vqa_engine.tools.train_options import RUNS_DIR, TrainOptions, TrainResult, new_run_folder
from vqa_engine.tools.training_data import (
    NO_ANSWER,
    OUTLIER_SEED_OFFSET,
    image_batches,
    outlier_split,
    split_by_image,
)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # the backward of features[image_index] accumulates in parallel: without this, two runs drift
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


@torch.inference_mode()
def batched_logits(
    model: ModularVQA,
    data: Split,
    index: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    model.eval()
    out = [
        model(data.images[data.image_rows[idx]], tokens[idx], lengths[idx]) for idx in index.split(batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, model.config.num_answers)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The softmax temperature minimising validation NLL (Guo et al., 2017), kept within [0.25, 4].

    With no validation errors NLL falls forever as the temperature drops, which would make every
    answer look certain (photos included): then the model is left as trained (1.0).
    """
    if len(labels) == 0 or bool((logits.argmax(1) == labels).all()):
        return 1.0
    best_t, best_nll = 1.0, math.inf
    for t in torch.logspace(math.log10(0.25), math.log10(4.0), steps=121).tolist():
        nll = nn.functional.cross_entropy(logits / t, labels).item()
        if nll < best_nll:
            best_t, best_nll = t, nll
    return round(best_t, 4)


def training_split(options: TrainOptions, generator: torch.Generator) -> tuple[Split, int]:
    """easy-VQA's training split, the drawn pictures and the outliers, in that order (the random
    draws happen in this order, which keeps a seed's weights the same); and how many pictures
    have right answers (they come first)."""
    data = load_split("train", options.config, progress=options.progress)
    if options.limit:
        data.questions, data.answers = data.questions[: options.limit], data.answers[: options.limit]
        data.image_rows = data.image_rows[: options.limit]
    if options.near_pictures:
        near = near_split(
            options.config,
            seed=options.seed + NEAR_SEED_OFFSET,
            count=options.near_pictures,
            kinds=options.near_kinds,
        )
        data = joined(data, near)
    answerable_images = data.images.shape[0]
    if options.outlier_pictures:
        outliers = outlier_split(
            options.config,
            data.questions,
            seed=options.seed + OUTLIER_SEED_OFFSET,
            count=options.outlier_pictures,
        )
        data = joined(data, outliers)
    return data, answerable_images


@dataclass
class Run:
    """One training run's model and what it learns from."""

    options: TrainOptions
    data: Split
    model: ModularVQA
    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor  # -1: an outlier (no right answer)
    train_idx: torch.Tensor
    val_idx: torch.Tensor


def epoch(
    run: Run,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    number: int,
) -> tuple[int, int]:
    """One pass over the training pictures: (right answers, questions with a right answer)."""
    options, model = run.options, run.model
    model.train()
    bar = tqdm(
        image_batches(run.data, run.train_idx, options.images_per_batch, generator),
        desc=f"epoch {number}/{options.epochs}",
        disable=not options.progress,
        leave=False,
    )
    loss_fn = nn.CrossEntropyLoss()
    correct = seen = 0
    for image_rows, idx, image_index in bar:
        logits = model(run.data.images[image_rows], run.tokens[idx], run.lengths[idx], image_index)
        target = run.labels[idx]
        known = target >= 0
        loss = loss_fn(logits[known], target[known]) if bool(known.any()) else logits.sum() * 0
        if not bool(known.all()):  # outliers: cross-entropy to the uniform distribution
            uniform = -torch.log_softmax(logits[~known], dim=1).mean(dim=1).mean()
            loss = loss + options.outlier_weight * uniform
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        correct += int((logits[known].argmax(1) == target[known]).sum())
        seen += int(known.sum())
        bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{correct / seen:.4f}")
    return correct, seen


def fit(run: Run, generator: torch.Generator) -> tuple[float, torch.Tensor]:
    """Every epoch; the last validation accuracy and the validation logits."""
    options = run.options
    n_train_images = len(torch.unique(run.data.image_rows[run.train_idx]))
    steps_per_epoch = math.ceil(n_train_images / options.images_per_batch)
    optimizer = torch.optim.AdamW(run.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch
    )
    val_accuracy = float("nan")
    val_logits = torch.empty(0, run.model.config.num_answers)
    for number in range(1, options.epochs + 1):
        correct, seen = epoch(run, optimizer, schedule, generator, number)
        val_logits = batched_logits(run.model, run.data, run.val_idx, run.tokens, run.lengths)
        val_labels = run.labels[run.val_idx]
        val_accuracy = (
            float((val_logits.argmax(1) == val_labels).float().mean()) if len(val_labels) else math.nan
        )
        print(
            f"epoch {number}: train accuracy {correct / max(seen, 1):.4%}, "
            f"validation accuracy {val_accuracy:.4%} ({len(run.val_idx)} questions)",
            file=sys.stderr,
        )
    return val_accuracy, val_logits


def prepare(options: TrainOptions, generator: torch.Generator) -> tuple[Run, Vocabulary, list[str], int]:
    """The data, the vocabulary, the answers and a fresh model."""
    data, answerable_images = training_split(options, generator)
    train_idx, val_idx = split_by_image(data, options.val_fraction, generator)
    vocab = Vocabulary.build(data.questions[i] for i in train_idx.tolist())
    answers = answer_space()
    config = replace(options.config, vocab_size=len(vocab), num_answers=len(answers), temperature=1.0)
    model = ModularVQA(config)
    tokens, lengths = encode_questions(vocab, data.questions, config.max_question_tokens)
    answer_id = {a: i for i, a in enumerate(answers)} | {NO_ANSWER: -1}
    labels = torch.tensor([answer_id[a] for a in data.answers], dtype=torch.long)
    # outliers take part in training only: validation (temperature) and the checks' data skip them
    val_idx = val_idx[labels[val_idx] >= 0]
    run = Run(options, data, model, tokens, lengths, labels, train_idx, val_idx)
    return run, vocab, answers, answerable_images


def train(options: TrainOptions) -> TrainResult:
    """Train, calibrate, and write the package to ``options.out``."""
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    generator = seed_everything(options.seed)
    run, vocab, answers, answerable_images = prepare(options, generator)
    val_accuracy, val_logits = fit(run, generator)
    model, data = run.model, run.data
    temperature = fit_temperature(val_logits, run.labels[run.val_idx])  # the last epoch's logits
    model.config = replace(model.config, temperature=temperature)
    model.eval()
    used_images = torch.unique(data.image_rows)
    used_images = used_images[used_images < answerable_images]  # the training pictures, no outlier
    familiarity = fit_image_statistics(
        model, data.images[used_images], seed=options.seed, source=training_source(len(used_images))
    )
    answerable = [i for i in run.train_idx.tolist() if data.answers[i] != NO_ANSWER]
    forms = QuestionForms.build(
        (data.questions[i] for i in answerable), (data.answers[i] for i in answerable), answers
    )
    result = TrainResult(
        package=options.out,
        seconds=time.perf_counter() - started,
        val_accuracy=val_accuracy,
        val_questions=len(run.val_idx),
        train_questions=len(run.train_idx),
        temperature=temperature,
        parameters=model.num_parameters(),
        weights_bytes=0,
    )
    save_package(options.out, model, vocab, answers, familiarity=familiarity, question_forms=forms)
    write_selection(options.out)  # the thresholds' validation table, from the package as written
    # the card quotes the weights' size, known once they are written
    result.weights_bytes = (options.out / WEIGHTS_FILE).stat().st_size
    (options.out / CARD_FILE).write_text(render_card(options, result, model.config), encoding="utf-8")
    return result


#: the run's numeric options: (flag, type, what it is); each defaults to ``TrainOptions``' field
RUN_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--epochs", int, "passes over the training data"),
    ("--images-per-batch", int, "images per step; each step holds every question about them"),
    ("--lr", float, "peak learning rate of the one-cycle schedule"),
    ("--seed", int, "random seed: the same seed gives the same weights"),
    ("--val-fraction", float, "share of training images held out to fit the softmax temperature"),
    (
        "--near-pictures",
        int,
        "pictures as people draw them (python -m vqa_engine.tools.near_set) mixed "
        "into training (0: easy-VQA alone)",
    ),
    (
        "--outlier-pictures",
        int,
        "pictures no answer fits (noise, text, several shapes...) trained towards uncertainty (0: none)",
    ),
    ("--outlier-weight", float, "weight of the outliers' loss beside the answers'"),
    ("--threads", int, "torch CPU threads"),
)
#: the model's parts and sizes a run may change: (flag, type or choices, what it is), defaulting to
#: ``ModelConfig``'s field
ARCHITECTURE_OPTIONS: tuple[tuple[str, type | tuple[str, ...], str], ...] = (
    ("--image-encoder", IMAGE_ENCODERS, "image encoder; torchvision backbones train from scratch"),
    ("--question-encoder", QUESTION_ENCODERS, "question encoder"),
    ("--fusion", FUSIONS, "how image and question meet"),
    ("--film-blocks", int, "FiLM blocks"),
    ("--film-channels", int, "channels of the FiLM blocks"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vqa_engine.tools.train", description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"package folder to write (default: a new folder under {RUNS_DIR}/, named by the time)",
    )
    d = TrainOptions(out=RUNS_DIR)
    for flag, kind, meaning in RUN_OPTIONS:
        default = getattr(d, _field(flag))
        p.add_argument(flag, type=kind, default=default, help=f"{meaning} (default {default})")
    p.add_argument("--limit", type=int, default=0, help="train on the first N questions only (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    c = ModelConfig()
    for flag, choices, meaning in ARCHITECTURE_OPTIONS:
        default = getattr(c, _field(flag))
        if isinstance(choices, tuple):
            p.add_argument(flag, choices=choices, default=default, help=f"{meaning} (default {default})")
        else:
            p.add_argument(flag, type=choices, default=default, help=f"{meaning} (default {default})")
    p.add_argument(
        "--cnn-channels",
        default=",".join(map(str, c.cnn_channels)),
        help="channels of each stride-2 stage of the cnn encoder, comma-separated (default %(default)s)",
    )
    return p


def _field(flag: str) -> str:
    """``--images-per-batch`` -> ``images_per_batch``."""
    return flag[2:].replace("-", "_")


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    a = build_parser().parse_args(argv)
    config = replace(
        ModelConfig(),
        cnn_channels=tuple(int(x) for x in a.cnn_channels.split(",")),
        **{_field(flag): getattr(a, _field(flag)) for flag, _, _ in ARCHITECTURE_OPTIONS},
    )
    return TrainOptions(
        out=a.out or new_run_folder(),
        limit=a.limit,
        progress=not a.quiet,
        config=config,
        **{_field(flag): getattr(a, _field(flag)) for flag, _, _ in RUN_OPTIONS},
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    result = train(options)
    print(
        f"wrote {result.package} in {result.seconds:.0f} s: {result.parameters:,} parameters, "
        f"{result.weights_bytes / 1e6:.2f} MB, validation accuracy {result.val_accuracy:.4%}, "
        f"temperature {result.temperature}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
