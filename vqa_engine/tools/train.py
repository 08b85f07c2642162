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
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
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
from vqa_engine.preprocess import image_to_tensor
from vqa_engine.tools import near_set
from vqa_engine.tools.calibrate import fit_image_statistics, training_source, write_selection
from vqa_engine.tools.easyvqa import (
    NEAR_PICTURES,
    NEAR_SEED_OFFSET,
    Split,
    answer_space,
    joined,
    load_split,
    near_split,
)
from vqa_engine.tools.ood_set import GENERATORS

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


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # the backward of features[image_index] accumulates in parallel: without this, two runs drift
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


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


def train(options: TrainOptions) -> TrainResult:
    """Train, calibrate, and write the package to ``options.out``."""
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    generator = seed_everything(options.seed)
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
    answerable_images = data.images.shape[0]  # the pictures with right answers come first
    if options.outlier_pictures:
        outliers = outlier_split(
            options.config,
            data.questions,
            seed=options.seed + OUTLIER_SEED_OFFSET,
            count=options.outlier_pictures,
        )
        data = joined(data, outliers)
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

    n_train_images = len(torch.unique(data.image_rows[train_idx]))
    steps_per_epoch = math.ceil(n_train_images / options.images_per_batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    val_accuracy = float("nan")
    val_logits = torch.empty(0, config.num_answers)
    for epoch in range(1, options.epochs + 1):
        model.train()
        bar = tqdm(
            image_batches(data, train_idx, options.images_per_batch, generator),
            desc=f"epoch {epoch}/{options.epochs}",
            disable=not options.progress,
            leave=False,
        )
        correct = seen = 0
        for image_rows, idx, image_index in bar:
            logits = model(data.images[image_rows], tokens[idx], lengths[idx], image_index)
            target = labels[idx]
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
        val_logits = batched_logits(model, data, val_idx, tokens, lengths)
        val_accuracy = (
            float((val_logits.argmax(1) == labels[val_idx]).float().mean()) if len(val_idx) else float("nan")
        )
        print(
            f"epoch {epoch}: train accuracy {correct / max(seen, 1):.4%}, "
            f"validation accuracy {val_accuracy:.4%} ({len(val_idx)} questions)",
            file=sys.stderr,
        )

    temperature = fit_temperature(val_logits, labels[val_idx])  # the last epoch's logits
    model.config = replace(config, temperature=temperature)
    model.eval()
    used_images = torch.unique(data.image_rows)
    used_images = used_images[used_images < answerable_images]  # the training pictures, no outlier
    familiarity = fit_image_statistics(
        model,
        data.images[used_images],
        seed=options.seed,
        source=training_source(len(used_images)),
    )
    answerable = [i for i in train_idx.tolist() if data.answers[i] != NO_ANSWER]
    forms = QuestionForms.build(
        (data.questions[i] for i in answerable), (data.answers[i] for i in answerable), answers
    )
    seconds = time.perf_counter() - started
    result = TrainResult(
        package=options.out,
        seconds=seconds,
        val_accuracy=val_accuracy,
        val_questions=len(val_idx),
        train_questions=len(train_idx),
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

## Data
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
The official test split and the evaluation's pictures were not used for training or model selection.

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vqa_engine.tools.train", description=__doc__.splitlines()[0])
    d = TrainOptions(out=RUNS_DIR)
    c = ModelConfig()
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
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch CPU threads (default {d.threads})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
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
    return p


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
