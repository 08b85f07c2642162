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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vqa_engine.tools.train", description=__doc__.splitlines()[0])
    d = TrainOptions(out=RUNS_DIR)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"package folder to write (default: a new folder under {RUNS_DIR}/, named by the time)",
    )
    p.add_argument(
        "--epochs", type=int, default=d.epochs, help=f"passes over the training data (default {d.epochs})"
    )
    p.add_argument(
        "--images-per-batch",
        type=int,
        default=d.images_per_batch,
        help=f"images per step; each step holds every question about them (default {d.images_per_batch})",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help=f"peak learning rate of the one-cycle schedule (default {d.lr})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"random seed: the same seed gives the same weights (default {d.seed})",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help=f"share of training images held out to fit the softmax temperature (default {d.val_fraction})",
    )
    p.add_argument("--limit", type=int, default=0, help="train on the first N questions only (default: all)")
    add_data_arguments(p, d)
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch CPU threads (default {d.threads})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_architecture_arguments(p)
    return p


def add_data_arguments(p: argparse.ArgumentParser, d: TrainOptions) -> None:
    """What the run learns from beside easy-VQA: drawn pictures and outliers."""
    p.add_argument(
        "--near-pictures",
        type=int,
        default=d.near_pictures,
        help="pictures as people draw them (python -m vqa_engine.tools.near_set) mixed into training "
        f"(default {d.near_pictures}; 0: easy-VQA alone)",
    )
    p.add_argument(
        "--outlier-pictures",
        type=int,
        default=d.outlier_pictures,
        help="pictures no answer fits (noise, text, several shapes...) trained towards uncertainty "
        f"(default {d.outlier_pictures}; 0: none)",
    )
    p.add_argument(
        "--outlier-weight",
        type=float,
        default=d.outlier_weight,
        help=f"weight of the outliers' loss beside the answers' (default {d.outlier_weight})",
    )


def add_architecture_arguments(p: argparse.ArgumentParser) -> None:
    """The model's parts and sizes (``ModelConfig``'s fields a run may change)."""
    c = ModelConfig()
    p.add_argument(
        "--image-encoder",
        choices=IMAGE_ENCODERS,
        default=c.image_encoder,
        help=f"image encoder; torchvision backbones train from scratch (default {c.image_encoder})",
    )
    p.add_argument(
        "--question-encoder",
        choices=QUESTION_ENCODERS,
        default=c.question_encoder,
        help=f"question encoder (default {c.question_encoder})",
    )
    p.add_argument(
        "--fusion",
        choices=FUSIONS,
        default=c.fusion,
        help=f"how image and question meet (default {c.fusion})",
    )
    p.add_argument(
        "--cnn-channels",
        default=",".join(map(str, c.cnn_channels)),
        help="channels of each stride-2 stage of the cnn encoder, comma-separated (default %(default)s)",
    )
    p.add_argument(
        "--film-blocks", type=int, default=c.film_blocks, help=f"FiLM blocks (default {c.film_blocks})"
    )
    p.add_argument(
        "--film-channels",
        type=int,
        default=c.film_channels,
        help=f"channels of the FiLM blocks (default {c.film_channels})",
    )


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    a = build_parser().parse_args(argv)
    c = ModelConfig()
    config = replace(
        c,
        image_encoder=a.image_encoder,
        question_encoder=a.question_encoder,
        fusion=a.fusion,
        cnn_channels=tuple(int(x) for x in a.cnn_channels.split(",")),
        film_blocks=a.film_blocks,
        film_channels=a.film_channels,
    )
    return TrainOptions(
        out=a.out or new_run_folder(),
        epochs=a.epochs,
        images_per_batch=a.images_per_batch,
        lr=a.lr,
        seed=a.seed,
        val_fraction=a.val_fraction,
        limit=a.limit,
        near_pictures=a.near_pictures,
        outlier_pictures=a.outlier_pictures,
        outlier_weight=a.outlier_weight,
        threads=a.threads,
        progress=not a.quiet,
        config=config,
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
