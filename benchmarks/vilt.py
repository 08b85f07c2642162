"""A full-size ViLT through the engine, in float32 and with QUANTIZE=int8, in one run.

    python -m benchmarks.vilt [--seconds 8] [--clients 16] [--rounds 4]

The model has the shapes and processor settings of ``dandelin/vilt-b32-finetuned-vqa`` (ViLT-B/32,
3,129 answers, 117.6 M parameters, images resized to a 384-pixel shorter side) with random weights:
they compute at the same speed as trained ones, and nothing is downloaded. It is written once
with ``save_pretrained`` and loaded by ``vqa_engine.loading.loader.load_backend`` as a user's model is.

Both variants are loaded in this process and measured in turn, ``--rounds`` times:

- batch 1: one prepared question through the backend;
- engine: ``--clients`` closed-loop clients on ``VQAEngine.answer`` (384×384 JPEGs, 12-token
  questions, the cache off), with the event-loop lag (how late a 1 ms timer fires) meanwhile;
- naive: the same clients, each ``await asyncio.to_thread(backend.predict, ...)``;
- raw: the batched forward pass alone at the engine's mean batch size, inputs prepared (and
  the CPU time of decoding and preparing one photo, which the engine does and raw does not);
- idle: the event-loop lag with nothing running in this process (what the machine itself adds).

Each is measured in wall time and in this process's CPU time (questions per CPU second): the
machine is shared, and under load a design that runs more threads takes a larger share of the
CPUs, so wall-time ratios drift with the load; the CPU-time ratio says which design does less
work per question. Medians over the rounds, and the best round. Memory (RSS once loaded, peak
while answering a batch of 16) is measured in a child process per variant.
Prints a table; writes ``benchmarks/results/vilt.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Jobs, percentile, result_path, write_result
from benchmarks.load import Ask, closed_loop, loop_lag

QUESTIONS = [
    "what color is the car parked on the left side of the street?",
    "how many people are standing next to the red bus today?",
    "is there a dog sitting on the wooden bench in the park?",
    "what is the man in the blue shirt holding in his hand?",
]
WORDS = sorted({w for q in QUESTIONS for w in q.replace("?", " ?").split()})


def build_model(folder: Path) -> None:
    """ViLT-B/32 for VQA with random weights, its processor, and a 30,522-token vocabulary."""
    import torch
    from transformers import (
        BertTokenizer,
        ViltConfig,
        ViltForQuestionAnswering,
        ViltImageProcessor,
        ViltProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    filler = [f"[unused{i}]" for i in range(30522 - len(specials) - len(WORDS))]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate([*specials, *WORDS, *filler])})
    images = ViltImageProcessor(  # type: ignore[call-arg]
        size={"shortest_edge": 384}, size_divisor=32, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    answers = [f"answer {i}" for i in range(3129)]
    config = ViltConfig(  # type: ignore[call-arg]
        num_labels=3129, id2label=dict(enumerate(answers)), label2id={a: i for i, a in enumerate(answers)}
    )
    torch.manual_seed(0)
    model = ViltForQuestionAnswering(config).eval()
    model.save_pretrained(folder)
    ViltProcessor(images, tokenizer).save_pretrained(folder)


def photos(n: int, size: int = 384) -> list[bytes]:
    """Distinct 384×384 JPEGs: coloured rectangles and ellipses on a gradient."""
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    out = []
    for _ in range(n):
        image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(size - 60), rng.randrange(size - 60)
            colour = tuple(rng.randrange(256) for _ in range(3))
            box = (x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


async def drive(ask: Ask, jobs: Jobs, clients: int, seconds: float) -> dict[str, float]:
    """Closed-loop clients for ``seconds`` (each finishes its last question); loop lag meanwhile."""
    load = await closed_loop(ask, jobs, clients, seconds, watch_lag=True)
    return {
        "per_s": load.per_s,
        "per_cpu_s": load.per_cpu_s,  # questions per second of this process's CPU time
        "answered": len(load.latencies),
        "p50_ms": load.latency_ms(0.5),
        "p95_ms": load.latency_ms(0.95),
        "loop_lag_p99_ms": load.lag_ms(0.99),
        "loop_lag_max_ms": max(load.lags) * 1000,
    }


async def idle_lag(seconds: float) -> dict[str, float]:
    """How late a 1 ms timer fires with nothing else in this process: the machine's own share."""
    async with loop_lag() as lags:
        await asyncio.sleep(seconds)
    return {"loop_lag_p99_ms": percentile(lags, 0.99) * 1000, "loop_lag_max_ms": max(lags) * 1000}


async def start_variants(folder: Path, clients: int, images: list[bytes]) -> dict[str, Any]:
    """Per variant (float32, int8): its backend, a started engine on it, and 16 prepared inputs."""
    from vqa_engine.loading.loader import load_backend
    from vqa_engine.options import ModelOptions
    from vqa_engine.serving.engine import EngineOptions, VQAEngine

    variants: dict[str, Any] = {}
    for quantize in ("none", "int8"):
        options = ModelOptions.model_validate(
            {"model_repo_id": str(folder), "quantize": quantize, "device": "cpu"}
        )
        backend = load_backend(options)
        engine = VQAEngine(constant(backend), options=EngineOptions(max_batch_size=clients, cache_size=0))
        await engine.start()
        variants[quantize] = (backend, engine, [backend.preprocess(image) for image in images[:16]])
    return variants


async def one_round(
    backend: Any, engine: Any, inputs: list[object], jobs: Jobs, clients: int, seconds: float
) -> dict[str, Any]:
    """Every measurement of one variant, once."""
    image = jobs[0][0]

    async def naive(image: bytes, question: str) -> object:
        return await asyncio.to_thread(backend.predict, image, question)

    single = timed(lambda: backend.predict_batch([inputs[0]], [QUESTIONS[0]], top_k=3), 4)
    prepare = timed(lambda: backend.preprocess(image), 8)
    before = engine.stats()
    eng = await drive(engine.answer, jobs, clients, seconds)
    after = engine.stats()
    mean_batch = (after.requests["answered"] - before.requests["answered"]) / max(
        1, after.batches - before.batches
    )
    return {
        "batch1": single,
        "prepare": prepare,
        "engine": eng,
        "engine_mean_batch": mean_batch,
        "naive": await drive(naive, jobs, clients, seconds),
        "raw": raw_rate(backend, inputs, max(1, round(mean_batch)), seconds / 2),
        "idle": await idle_lag(seconds / 4),
    }


async def measure(folder: Path, seconds: float, clients: int, rounds: int) -> dict[str, Any]:
    """Both variants in this process, measured in turn ``rounds`` times."""
    import torch

    images = photos(64)
    jobs = [(images[i], QUESTIONS[i % len(QUESTIONS)]) for i in range(len(images))]
    variants = await start_variants(folder, clients, images)
    results: dict[str, list[dict[str, Any]]] = {q: [] for q in variants}
    try:
        for _, engine, _ in variants.values():  # warm the threads and allocator
            await drive(engine.answer, jobs, clients, 2.0)
        for _ in range(rounds):
            for quantize, (backend, engine, inputs) in variants.items():
                results[quantize].append(await one_round(backend, engine, inputs, jobs, clients, seconds))
    finally:
        for _, engine, _ in variants.values():
            await engine.close()
    return {
        "torch_threads": torch.get_num_threads(),
        "dtype": {q: v[0].info.dtype for q, v in variants.items()},
        "parameters_m": round(sum(p.numel() for p in variants["none"][0].model.parameters()) / 1e6, 1),
        "rounds": results,
    }


def constant(backend: Any) -> Any:
    """A loader that hands the engine an already loaded backend."""
    return lambda: backend


def timed(fn: Any, n: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of ``n`` calls."""
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"ms": statistics.median(walls) * 1000, "cpu_ms": statistics.median(cpus) * 1000}


def memory_child(folder: Path, quantize: str) -> dict[str, float]:
    """RSS once loaded and warmed up, and the peak while answering one batch of 16."""
    import psutil

    from vqa_engine.loading.loader import load_backend
    from vqa_engine.options import ModelOptions

    options = ModelOptions.model_validate(
        {"model_repo_id": str(folder), "quantize": quantize, "device": "cpu"}
    )
    backend = load_backend(options)
    backend.warm_up()
    loaded = psutil.Process().memory_info().rss / 2**20
    inputs = [backend.preprocess(image) for image in photos(16)]
    backend.predict_batch(inputs, [QUESTIONS[i % 4] for i in range(16)])
    return {"rss_loaded_mb": loaded, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def raw_rate(backend: Any, inputs: list[object], batch: int, seconds: float) -> dict[str, float]:
    """The forward pass alone at ``batch``, inputs already prepared: questions per second of wall
    and of CPU time."""
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)]
    backend.predict_batch(inputs[:batch], questions)
    passes, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or passes < 2:
        backend.predict_batch(inputs[:batch], questions)
        passes += 1
    done = passes * batch
    return {"per_s": done / (time.perf_counter() - started), "per_cpu_s": done / (time.process_time() - cpu)}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and the best round) of each figure, and medians of each round's ratios."""

    def med(key: Any) -> float:
        return statistics.median(key(r) for r in rounds)

    def best(key: Any) -> float:
        return max(key(r) for r in rounds)

    return {
        "batch1_ms": med(lambda r: r["batch1"]["ms"]),
        "batch1_ms_best": min(r["batch1"]["ms"] for r in rounds),
        "batch1_cpu_ms": med(lambda r: r["batch1"]["cpu_ms"]),
        "engine_per_s": med(lambda r: r["engine"]["per_s"]),
        "engine_per_s_best": best(lambda r: r["engine"]["per_s"]),
        "engine_per_cpu_s": med(lambda r: r["engine"]["per_cpu_s"]),
        "engine_p50_ms": med(lambda r: r["engine"]["p50_ms"]),
        "engine_p95_ms": med(lambda r: r["engine"]["p95_ms"]),
        "engine_mean_batch": med(lambda r: r["engine_mean_batch"]),
        "naive_per_s": med(lambda r: r["naive"]["per_s"]),
        "naive_per_s_best": best(lambda r: r["naive"]["per_s"]),
        "naive_per_cpu_s": med(lambda r: r["naive"]["per_cpu_s"]),
        "raw_per_s": med(lambda r: r["raw"]["per_s"]),
        "raw_per_s_best": best(lambda r: r["raw"]["per_s"]),
        "raw_per_cpu_s": med(lambda r: r["raw"]["per_cpu_s"]),
        "engine_vs_naive": med(lambda r: r["engine"]["per_s"] / r["naive"]["per_s"]),
        "engine_vs_naive_per_cpu_s": med(lambda r: r["engine"]["per_cpu_s"] / r["naive"]["per_cpu_s"]),
        "engine_vs_raw": med(lambda r: r["engine"]["per_s"] / r["raw"]["per_s"]),
        "engine_vs_raw_per_cpu_s": med(lambda r: r["engine"]["per_cpu_s"] / r["raw"]["per_cpu_s"]),
        "prepare_cpu_ms": med(lambda r: r["prepare"]["cpu_ms"]),
        # the same work without the engine: decode and prepare each photo, then the raw pass
        "engine_vs_serial_per_cpu_s": med(
            lambda r: r["engine"]["per_cpu_s"] * (1 / r["raw"]["per_cpu_s"] + r["prepare"]["cpu_ms"] / 1000)
        ),
        "loop_lag_p99_ms": med(lambda r: r["engine"]["loop_lag_p99_ms"]),
        "loop_lag_p99_ms_worst": max(r["engine"]["loop_lag_p99_ms"] for r in rounds),
        "naive_loop_lag_p99_ms": med(lambda r: r["naive"]["loop_lag_p99_ms"]),
        "idle_loop_lag_p99_ms": med(lambda r: r["idle"]["loop_lag_p99_ms"]),
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{'variant':>7} | {'batch-1 ms':>10} | {'engine q/s':>10} {'p50/p95 ms':>11} {'batch':>5} | "
        f"{'naive q/s':>9} | {'raw q/s':>7} | {'engine/naive':>12} {'per CPU s':>9} | "
        f"{'engine/raw':>10} {'per CPU s':>9} | {'lag p99 (idle)':>16} | {'RSS MB':>6} {'peak':>5}"
    )
    for quantize, r in result["variants"].items():
        print(
            f"{quantize:>7} | {r['batch1_ms']:>10.0f} | {r['engine_per_s']:>10.2f} "
            f"{r['engine_p50_ms']:>5.0f}/{r['engine_p95_ms']:<5.0f} {r['engine_mean_batch']:>5.1f} | "
            f"{r['naive_per_s']:>9.2f} | {r['raw_per_s']:>7.2f} | {r['engine_vs_naive']:>11.2f}x "
            f"{r['engine_vs_naive_per_cpu_s']:>8.2f}x | {r['engine_vs_raw']:>10.0%} "
            f"{r['engine_vs_raw_per_cpu_s']:>9.0%} | {r['loop_lag_p99_ms']:>5.2f}ms "
            f"(idle {r['idle_loop_lag_p99_ms']:.2f}) | "
            f"{r['rss_loaded_mb']:>6.0f} {r['rss_peak_mb']:>5.0f}"
        )
    print(
        "best rounds (q/s): "
        + "; ".join(
            f"{q}: engine {r['engine_per_s_best']:.2f}, naive {r['naive_per_s_best']:.2f}, "
            f"raw {r['raw_per_s_best']:.2f}"
            for q, r in result["variants"].items()
        )
    )
    for quantize, r in result["variants"].items():
        print(
            f"{quantize}: decoding and preparing one photo {r['prepare_cpu_ms']:.1f} ms CPU; engine / serial "
            f"(prepare, then the raw pass) per CPU second {r['engine_vs_serial_per_cpu_s']:.0%}"
        )
    for key, value in result["int8_vs_fp32"].items():
        print(f"int8 / fp32, {key}: {value:.2f}x")


def memory_in_children(folder: Path) -> dict[str, dict[str, float]]:
    """Per variant, ``memory_child``'s figures from a process of its own."""
    memory = {}
    for quantize in ("none", "int8"):
        command = [sys.executable, "-m", "benchmarks.vilt", "--memory-child", quantize]
        done = subprocess.run(
            [*command, "--model", str(folder)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        memory[quantize] = json.loads(done.stdout.strip().splitlines()[-1])
    return memory


def int8_vs_fp32(variants: dict[str, Any], rounds: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    fp32, int8 = variants["none"], variants["int8"]
    pairs = list(zip(rounds["none"], rounds["int8"], strict=True))
    return {
        "engine throughput (median of rounds)": statistics.median(
            b["engine"]["per_s"] / a["engine"]["per_s"] for a, b in pairs
        ),
        "engine questions per CPU second": int8["engine_per_cpu_s"] / fp32["engine_per_cpu_s"],
        "batch-1 speed": statistics.median(a["batch1"]["ms"] / b["batch1"]["ms"] for a, b in pairs),
        "raw throughput": statistics.median(b["raw"]["per_s"] / a["raw"]["per_s"] for a, b in pairs),
        "peak RSS": int8["rss_peak_mb"] / fp32["rss_peak_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of every measurement, both variants")
    parser.add_argument(
        "--model", type=Path, default=None, help="a folder for the model (default: temporary)"
    )
    parser.add_argument("--memory-child", choices=("none", "int8"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=result_path("vilt"))
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.model, args.memory_child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or Path(tmp) / "vilt-b32-vqa-random"
        if not (folder / "model.safetensors").is_file():
            build_model(folder)
        memory = memory_in_children(folder)
        load_before = os.getloadavg()
        measured = asyncio.run(measure(folder, args.seconds, args.clients, args.rounds))
        load_after = os.getloadavg()
    variants = {q: {**summarise(rounds), **memory[q]} for q, rounds in measured["rounds"].items()}
    result = {
        "machine": f"{platform.machine()}, {measured['torch_threads']} torch threads",
        "parameters_m": measured["parameters_m"],
        "dtype": measured["dtype"],
        "clients": args.clients,
        "seconds_per_measure": args.seconds,
        "rounds": args.rounds,
        "load_average_before_after": [load_before, load_after],
        "variants": variants,
        "int8_vs_fp32": int8_vs_fp32(variants, measured["rounds"]),
        "raw_rounds": measured["rounds"],
    }
    report(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
