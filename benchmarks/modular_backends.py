"""The bundled model three ways: torch, onnxruntime (its ONNX export) and torch with int8 Linear layers.

    python -m benchmarks.modular_backends [--seconds 2] [--repeats 3] [--threads 1 2]

The ONNX package is exported in the run (``vqa_engine.tools.export``). For each backend: questions per
second of the forward pass (``Backend.scores`` on prepared inputs) at batch 1 and 32, the three
interleaved ``--repeats`` times (medians), with 1 and with 2 intra-op threads (one thread is the
steadier figure on a shared machine: two threads wait for each other whenever another process
holds a core); then every one of the 9,673 easy-VQA test questions: accuracy, and how often the
top answer equals torch's and by how much any probability differs.
Prints a table; writes ``benchmarks/results/modular_backends.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BUNDLED_MODEL, result_path, write_result
from benchmarks.workloads import easy_vqa_test_split
from vqa_engine.backends.base import Backend, DenseScores
from vqa_engine.backends.folder import open_folder
from vqa_engine.backends.modular import ModularBackend
from vqa_engine.backends.quantize import quantize_linear_int8
from vqa_engine.modular.package import load_package
from vqa_engine.tools.export import export_onnx

#: a test split as easy_vqa_test_split() gives it: images, image rows, questions, answers
Split = tuple[list[bytes], list[int], list[str], list[str]]
#: questions per second, by "backend|threads|batch", one figure per round
Speeds = dict[str, list[float]]


def probabilities(
    backend: Backend, inputs: list[object], rows: list[int], questions: list[str]
) -> torch.Tensor:
    out = []
    for start in range(0, len(questions), 512):
        batch = [inputs[r] for r in rows[start : start + 512]]
        scores = backend.scores(batch, questions[start : start + 512], top_k=1)
        assert isinstance(scores, DenseScores)
        out.append(scores.probs)
    return torch.cat(out)


def rate(backend: Backend, inputs: list[object], questions: list[str], batch: int, seconds: float) -> float:
    items, texts = inputs[:batch], questions[:batch]
    backend.scores(items, texts, top_k=1)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        backend.scores(items, texts, top_k=1)
        done += batch
    return done / (time.perf_counter() - started)


def speeds(split: Split, onnx: Path, args: argparse.Namespace) -> tuple[Speeds, dict[str, Backend]]:
    """The forward pass's speed on prepared inputs, interleaved rounds; the backends as made for
    the last thread count."""
    images, rows, questions, _ = split
    speed: Speeds = {}
    backends: dict[str, Backend] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)  # onnxruntime sessions made now take the same count
        backends = make_backends(onnx)
        prepared = {name: [b.preprocess(images[r]) for r in rows[:32]] for name, b in backends.items()}
        for _ in range(args.repeats):
            for batch in (1, 32):
                for name, backend in backends.items():
                    key = f"{name}|{threads}|{batch}"
                    rate_now = rate(backend, prepared[name], questions, batch, args.seconds)
                    speed.setdefault(key, []).append(rate_now)
    return speed, backends


def compare(split: Split, backends: dict[str, Backend], speed: Speeds, threads: list[int]) -> dict[str, Any]:
    """Per backend: accuracy and agreement with torch on every test question, and its speeds."""
    images, rows, questions, answers = split
    every = {name: [b.preprocess(image) for image in images] for name, b in backends.items()}
    probs = {name: probabilities(b, every[name], rows, questions) for name, b in backends.items()}
    index = {a: i for i, a in enumerate(backends["torch"].answers or [])}
    truth = torch.tensor([index[a] for a in answers])
    reference = probs["torch"]
    table: dict[str, Any] = {}
    for name in backends:
        top = probs[name].argmax(1)
        row: dict[str, Any] = {
            "accuracy": float((top == truth).float().mean()),
            "same_top_answer_as_torch": int((top == reference.argmax(1)).sum()),
            "max_probability_difference": float((probs[name] - reference).abs().max()),
        }
        for n in threads:
            for batch in (1, 32):
                mine, torchs = speed[f"{name}|{n}|{batch}"], speed[f"torch|{n}|{batch}"]
                row[f"{n}t_batch{batch}_per_s"] = statistics.median(mine)
                row[f"{n}t_batch{batch}_vs_torch"] = statistics.median(
                    a / b for a, b in zip(mine, torchs, strict=True)
                )
        table[name] = row
    return table


def report(table: dict[str, Any], threads: list[int], questions: int) -> None:
    for n in threads:
        print(f"{n} thread(s):")
        print(f"{'backend':>18} | {'batch 1 q/s':>11} {'vs torch':>8} | {'batch 32 q/s':>12} {'vs torch':>8}")
        for name, r in table.items():
            one, many = f"{n}t_batch1", f"{n}t_batch32"
            print(
                f"{name:>18} | {r[f'{one}_per_s']:>11.0f} {r[f'{one}_vs_torch']:>7.2f}x | "
                f"{r[f'{many}_per_s']:>12.0f} {r[f'{many}_vs_torch']:>7.2f}x"
            )
    print(f"\nall {questions:,} test questions:")
    print(f"{'backend':>18} | {'accuracy':>8} | {'same top answer':>15} | {'max |dp|':>8}")
    for name, r in table.items():
        print(
            f"{name:>18} | {r['accuracy']:>8.4%} | "
            f"{r['same_top_answer_as_torch']:>6,} / {questions:,} | "
            f"{r['max_probability_difference']:>8.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads (torch and onnxruntime)"
    )
    parser.add_argument("--output", type=Path, default=result_path("modular_backends"))
    args = parser.parse_args()
    split = easy_vqa_test_split()
    with tempfile.TemporaryDirectory() as tmp:
        export = export_onnx(load_package(BUNDLED_MODEL), Path(tmp) / "onnx")
        speed, backends = speeds(split, Path(tmp) / "onnx", args)
        table = compare(split, backends, speed, args.threads)
    result = {
        "machine": f"{platform.machine()}, torch {torch.__version__}",
        "questions": len(split[2]),
        "onnx_bytes": export.onnx_bytes,
        "threads": args.threads,
        "seconds_per_measure": args.seconds,
        "repeats": args.repeats,
        "load_average_after": os.getloadavg(),
        "backends": table,
    }
    report(table, args.threads, len(split[2]))
    write_result(args.output, result)


def make_backends(onnx: Path) -> dict[str, Backend]:
    int8_package = load_package(BUNDLED_MODEL)
    quantize_linear_int8(int8_package.model)
    return {
        "torch": open_folder(BUNDLED_MODEL),
        "onnxruntime": open_folder(onnx),
        "torch int8 Linear": ModularBackend(int8_package),
    }


if __name__ == "__main__":
    main()
