"""An ensemble of two bundled-architecture models trained with different seeds, against each alone.

    python -m benchmarks.ensemble --second runs/easy-vqa-seed1 [--seconds 3] [--repeats 3]

The first member is the bundled model (seed 0); the second is the same architecture trained with
another seed (``python -m vqa_engine.tools.train --seed 1 --out DIR``; trained here when ``--second``
is not given). On every one of the 9,673 easy-VQA test questions: accuracy, expected calibration
error and NLL of the top answer's confidence, for each member and for the ensemble (equal
weights). Then throughput through the engine (64 closed-loop clients, the cache off), the three
interleaved ``--repeats`` times. Prints a table; writes ``benchmarks/results/ensemble.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BUNDLED_MODEL, ROOT, Jobs, result_path, write_result
from benchmarks.load import closed_loop
from benchmarks.workloads import easy_vqa_test_split
from vqa_engine.backends.base import Backend
from vqa_engine.loading.loader import load_backend
from vqa_engine.options import ModelOptions
from vqa_engine.serving.engine import EngineOptions, VQAEngine
from vqa_engine.tools.evaluate import expected_calibration_error


def evaluate(
    backend: Backend, images: list[bytes], rows: list[int], questions: list[str], answers: list[str]
) -> dict[str, float]:
    """Accuracy, ECE and NLL of the top answer over the test split."""
    inputs = [backend.preprocess(image) for image in images]
    correct, confidence = [], []
    for start in range(0, len(questions), 512):
        batch = [inputs[r] for r in rows[start : start + 512]]
        for prediction, truth in zip(
            backend.predict_batch(batch, questions[start : start + 512], top_k=1),
            answers[start : start + 512],
            strict=True,
        ):
            correct.append(prediction.answer == truth)
            confidence.append(prediction.confidence)
    right = torch.tensor(correct)
    conf = torch.tensor(confidence, dtype=torch.float64)
    ece, _ = expected_calibration_error(conf, right)
    # NLL of the top answer's confidence as a yes/no forecast of being right
    nll = -torch.where(right, conf.clamp_min(1e-12).log(), (1 - conf).clamp_min(1e-12).log()).mean()
    return {
        "accuracy": float(right.float().mean()),
        "errors": int((~right).sum()),
        "ece": ece,
        "nll": float(nll),
    }


async def throughput(backend: Backend, jobs: Jobs, clients: int, seconds: float) -> float:
    options = EngineOptions(cache_size=0, max_queue=4096)
    async with VQAEngine(lambda: backend, options=options) as engine:
        return (await closed_loop(engine.answer, jobs, clients, seconds)).per_s


def second_member(folder: Path) -> Path:
    """A model of the bundled recipe trained with seed 1, into ``folder``."""
    command = [sys.executable, "-m", "vqa_engine.tools.train", "--seed", "1", "--quiet", "--out", str(folder)]
    subprocess.run(command, check=True, cwd=ROOT)
    return folder


def measure(second: Path, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """The number of test questions, and per model: its quality and its engine throughput
    (``--repeats`` interleaved rounds) beside the bundled model's."""
    specs = {
        "seed 0 (bundled)": str(BUNDLED_MODEL),
        "seed 1": str(second),
        "ensemble of both": f"{BUNDLED_MODEL}:1,{second}:1",
    }
    backends = {
        name: load_backend(ModelOptions(model_repo_id=spec, device="cpu")) for name, spec in specs.items()
    }
    images, rows, questions, answers = easy_vqa_test_split()
    quality = {name: evaluate(b, images, rows, questions, answers) for name, b in backends.items()}
    jobs = [(images[rows[i]], questions[i]) for i in range(512)]
    speed: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, backend in backends.items():
            speed[name].append(asyncio.run(throughput(backend, jobs, args.clients, args.seconds)))
    solo = speed["seed 0 (bundled)"]
    return len(questions), {
        name: {
            **quality[name],
            "engine_per_s": statistics.median(speed[name]),
            "vs_bundled": statistics.median(a / b for a, b in zip(speed[name], solo, strict=True)),
        }
        for name in backends
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--second", type=Path, default=None, help="the second member (default: train one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients")
    parser.add_argument("--output", type=Path, default=result_path("ensemble"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        count, table = measure(args.second or second_member(Path(tmp) / "seed1"), args)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "questions": count,
        "clients": args.clients,
        "seconds_per_measure": args.seconds,
        "repeats": args.repeats,
        "models": table,
    }
    print(
        f"{'model':>17} | {'accuracy':>9} {'errors':>6} | {'ECE':>7} | {'NLL':>7} | "
        f"{'engine q/s':>10} {'vs bundled':>10}"
    )
    for name, r in table.items():
        print(
            f"{name:>17} | {r['accuracy']:>9.4%} {r['errors']:>6} | {r['ece']:>7.3%} | {r['nll']:>7.4f} | "
            f"{r['engine_per_s']:>10.0f} {r['vs_bundled']:>9.2f}x"
        )
    write_result(args.output, result)


if __name__ == "__main__":
    main()
