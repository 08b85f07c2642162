"""Optional speed-ups for the engine, measured before any is offered: ``torch.compile`` and
dynamic int8 quantization, against the plain model, on speed and on test accuracy, in one run.

    python -m benchmarks.speedups [--batch 32] [--seconds 3] [--limit 0]

A variant is worth a setting only if it is faster at the engine's batch sizes and loses no
accuracy. Prints a table; writes ``benchmarks/results/speedups.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import BUNDLED_MODEL, result_path, write_result
from vqa_engine.modular.package import ModelPackage, load_package
from vqa_engine.modular.predictor import Predictor
from vqa_engine.tools.easyvqa import Split, load_split


def quantized(package: ModelPackage, layers: set[type[nn.Module]]) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic is deprecated in favour of torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(package.model), layers, dtype=torch.qint8)


def compiled(package: ModelPackage) -> nn.Module:
    return torch.compile(copy.deepcopy(package.model))  # type: ignore[return-value]


def accuracy(predictor: Predictor, limit: int) -> float:
    data = load_split("test", predictor.package.config, progress=False)
    n = min(limit, len(data)) if limit else len(data)
    answer_id = {a: i for i, a in enumerate(predictor.package.answers)}
    correct = 0
    for start in range(0, n, 512):
        end = min(start + 512, n)
        probs = predictor.probabilities(data.images[data.image_rows[start:end]], data.questions[start:end])
        predicted = probs.argmax(dim=1).tolist()
        correct += sum(p == answer_id[a] for p, a in zip(predicted, data.answers[start:end], strict=True))
    return correct / n


def rate(predictor: Predictor, images: torch.Tensor, questions: list[str], seconds: float) -> float:
    """Questions per second of ``probabilities`` at this batch, median of 5 slices."""
    predictor.probabilities(images, questions)
    slices = []
    for _ in range(5):
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds / 5:
            predictor.probabilities(images, questions)
            done += len(questions)
        slices.append(done / (time.perf_counter() - started))
    return statistics.median(slices)


def prepare(
    variants: dict[str, Callable[[], nn.Module]], base: ModelPackage, data: Split, batches: list[int]
) -> tuple[dict[str, Predictor], list[dict[str, object]]]:
    """A predictor per variant, run once at each batch size (``torch.compile`` compiles then),
    and a row per variant with the seconds that took."""
    predictors: dict[str, Predictor] = {}
    rows: list[dict[str, object]] = []
    for name, build in variants.items():
        started = time.perf_counter()
        package = copy.copy(base)
        package.model = build()  # type: ignore[assignment]
        predictors[name] = Predictor(package)
        for batch in batches:
            predictors[name].probabilities(data.images[data.image_rows[:batch]], data.questions[:batch])
        rows.append({"variant": name, "prepare_s": time.perf_counter() - started})
    return predictors, rows


def report(rows: list[dict[str, Any]], batches: list[int]) -> None:
    """The table, and each row's speed beside the plain model's (added to the rows)."""
    plain = rows[0]
    print(
        f"{'variant':<16} "
        + " ".join(f"{'batch ' + str(b) + '/s':>12} {'vs plain':>8}" for b in batches)
        + f" {'accuracy':>9} {'prepare s':>9}"
    )
    for row in rows:
        cells = []
        for b in batches:
            key = f"per_s_batch_{b}"
            cells.append(f"{row[key]:>12.0f} {row[key] / plain[key]:>7.2f}x")
            row[f"vs_plain_batch_{b}"] = row[key] / plain[key]
        print(
            f"{row['variant']:<16} " + " ".join(cells) + f" {row['accuracy']:>9.4%} {row['prepare_s']:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--limit", type=int, default=0, help="test questions for accuracy (0: all)")
    parser.add_argument("--variants", nargs="+", help="a subset, by name (default: all)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of the speed runs")
    parser.add_argument("--output", type=Path, default=result_path("speedups"))
    args = parser.parse_args()

    base = load_package(BUNDLED_MODEL)
    variants: dict[str, Callable[[], nn.Module]] = {
        "plain": lambda: base.model,
        "torch.compile": lambda: compiled(base),
        "int8 Linear+GRU": lambda: quantized(base, {nn.Linear, nn.GRU}),
        "int8 GRU only": lambda: quantized(base, {nn.GRU}),
    }
    if args.variants:
        variants = {name: variants[name] for name in ["plain", *args.variants] if name in variants}
    data = load_split("test", base.config, progress=False)
    predictors, rows = prepare(variants, base, data, args.batch)
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # interleaved, so the machine's noise hits every variant alike
        for name, predictor in predictors.items():
            for batch in args.batch:
                images = data.images[data.image_rows[:batch]]
                per_s = rate(predictor, images, data.questions[:batch], args.seconds)
                samples.setdefault((name, batch), []).append(per_s)
    for row in rows:
        name = str(row["variant"])
        for batch in args.batch:
            row[f"per_s_batch_{batch}"] = statistics.median(samples[(name, batch)])
        row["accuracy"] = accuracy(predictors[name], args.limit)
        print(f"{name}: {row}", file=sys.stderr)
    report(rows, args.batch)
    write_result(args.output, {"torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
