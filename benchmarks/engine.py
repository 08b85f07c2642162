"""The engine against the naive design and against the raw batched forward pass, in one run.

    python -m benchmarks.engine [--clients 1 8 64 256] [--seconds 4]

For each number of concurrent clients (each sends its next question as soon as the last one is
answered, with easy-VQA test images and questions, the cache off so every question reaches the
model), three ways of answering are measured back to back:

- engine: ``VQAEngine.answer`` (decode pool, micro-batching, one inference thread);
- naive: each request ``await asyncio.to_thread(predictor.predict, image, question)``;
- raw: the batched forward pass alone on already decoded images, at the engine's mean batch
  size at that load: the limit the engine can approach (it also decodes every image).

Also: event-loop lag p99 while the engine is saturated, the decode cost of a 1920×1080
JPEG photo against a 64×64 PNG, and what the answer checks cost: the same engine with the
checks on (the defaults) and off (``ANSWER_CHECKS=false``), interleaved at each load level
(``--checks-only`` measures just that). Prints a table; writes ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.common import BUNDLED_MODEL, Jobs, fresh_thread, result_path, write_result
from benchmarks.load import Ask, Load, closed_loop
from benchmarks.workloads import easy_vqa_jobs
from vqa_engine.checks.options import CheckOptions
from vqa_engine.modular.package import ModelPackage, load_package
from vqa_engine.modular.predictor import Predictor
from vqa_engine.preprocess import decode_image, image_to_tensor, load_image_tensor
from vqa_engine.serving.engine import EngineOptions, VQAEngine


async def drive(ask: Ask, jobs: Jobs, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` closed-loop clients for ``seconds``: throughput and latency percentiles."""
    return figures(await closed_loop(ask, jobs, clients, seconds))


def figures(load: Load) -> dict[str, float]:
    return {
        "per_s": load.per_s,
        "p50_ms": load.latency_ms(0.50),
        "p95_ms": load.latency_ms(0.95),
        "requests": len(load.latencies),
    }


def serial_rate(predictor: Predictor, jobs: Jobs, batch: int, seconds: float, *, threads: int) -> float:
    """Questions per second of the same work without the engine: decode ``batch`` images, then
    one forward pass, in one thread (nothing overlapped)."""

    def measure() -> float:
        torch.set_num_threads(threads)
        images = [image for image, _ in jobs[:batch]]
        questions = [q for _, q in jobs[:batch]]
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            pixels = torch.stack([predictor.preprocess(image) for image in images])
            predictor.predict_batch(pixels, questions)
            done += batch
        return done / (time.perf_counter() - started)

    return fresh_thread(measure)


def raw_rate(predictor: Predictor, jobs: Jobs, batch: int, seconds: float, *, threads: int) -> float:
    """Questions per second of the forward pass alone at ``batch``, inputs already decoded."""
    return fresh_thread(lambda: _raw_rate(predictor, jobs, batch, seconds, threads))


def _raw_rate(predictor: Predictor, jobs: Jobs, batch: int, seconds: float, threads: int) -> float:
    torch.set_num_threads(threads)
    tensors = [predictor.preprocess(image) for image, _ in jobs[:batch]]
    images = torch.stack(tensors)
    questions = [q for _, q in jobs[:batch]]
    predictor.predict_batch(images, questions)  # warm
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.predict_batch(images, questions)
        done += batch
    return done / (time.perf_counter() - started)


async def loop_lag_p99(ask: Ask, jobs: Jobs, clients: int, seconds: float) -> dict[str, float]:
    """How late a 1 ms timer fires while ``clients`` keep the engine saturated."""
    load = await closed_loop(ask, jobs, clients, seconds, watch_lag=True)
    return {
        "clients": clients,
        "lag_p50_ms": load.lag_ms(0.50),
        "lag_p99_ms": load.lag_ms(0.99),
        "lag_max_ms": max(load.lags) * 1000,
        "samples": len(load.lags),
        "per_s": load.per_s,
    }


def decode_costs(package: ModelPackage, runs: int = 30) -> dict[str, float]:
    """Milliseconds from bytes to the model's input tensor."""
    photo = Image.new("RGB", (1920, 1080))
    photo.paste((40, 90, 200), (600, 200, 1300, 900))  # a blue square on black
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 90, 200)).save(buf, format="PNG")
    png = buf.getvalue()
    config = package.config

    def timed(fn: Callable[[], object]) -> float:
        fn()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    return {
        "png_64_ms": timed(lambda: load_image_tensor(png, config)),
        "jpeg_1080p_ms": timed(lambda: load_image_tensor(jpeg, config)),
        "jpeg_1080p_full_decode_ms": timed(lambda: image_to_tensor(decode_image(jpeg), config)),
        "jpeg_bytes": len(jpeg),
    }


def summarise(
    clients: int, rounds: list[tuple[dict[str, float], dict[str, float], float, float, float, float]]
) -> dict[str, object]:
    """Medians over the rounds; the ratios are medians of per-round ratios."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    engines = [r[0] for r in rounds]
    naives = [r[1] for r in rounds]
    return {
        "clients": clients,
        "engine": {key: med([e[key] for e in engines]) for key in ("per_s", "p50_ms", "p95_ms")},
        "naive": {key: med([n[key] for n in naives]) for key in ("per_s", "p50_ms", "p95_ms")},
        "engine_mean_batch": round(med([r[2] for r in rounds]), 2),
        "raw_batch": max(1, round(med([r[2] for r in rounds]))),
        "raw_per_s": med([r[3] for r in rounds]),
        "raw_default_threads_per_s": med([r[4] for r in rounds]),
        "engine_vs_naive": med([r[0]["per_s"] / r[1]["per_s"] for r in rounds]),
        "engine_vs_raw": med([r[0]["per_s"] / r[3] for r in rounds]),
        "engine_vs_raw_default_threads": med([r[0]["per_s"] / r[4] for r in rounds]),
        "serial_decode_forward_per_s": med([r[5] for r in rounds]),
        "engine_vs_serial": med([r[0]["per_s"] / r[5] for r in rounds]),
        "rounds": [
            {
                "engine_per_s": r[0]["per_s"],
                "naive_per_s": r[1]["per_s"],
                "mean_batch": r[2],
                "raw_per_s": r[3],
            }
            for r in rounds
        ],
    }


async def run(
    clients_levels: list[int], seconds: float, max_batch: int, repeats: int, torch_threads: int
) -> dict[str, object]:
    jobs = easy_vqa_jobs()
    package = load_package(BUNDLED_MODEL)
    predictor = Predictor(package)
    options = EngineOptions(
        max_batch_size=max_batch, cache_size=0, max_queue=4096, torch_threads=torch_threads
    )
    rows = []
    default_threads = torch.get_num_threads()
    async with VQAEngine(lambda: load_package(BUNDLED_MODEL), options=options) as engine:
        engine_threads = fresh_thread(torch.get_num_threads)  # what the engine set (threads read it)

        async def naive(image: bytes, question: str) -> object:
            return await asyncio.to_thread(predictor.predict, image, question)

        await drive(engine.answer, jobs, 8, 0.5)  # warm threads and allocator
        await drive(naive, jobs, 8, 0.5)
        for clients in clients_levels:
            rounds = []
            for _ in range(repeats):  # interleaved, so machine noise hits all three alike
                before = engine.stats()
                eng = await drive(engine.answer, jobs, clients, seconds)
                batches = engine.stats().batches - before.batches
                mean_batch = (eng["requests"] / batches) if batches else 1.0
                nai = await drive(naive, jobs, clients, seconds)
                batch = max(1, round(mean_batch))
                raw = raw_rate(predictor, jobs, batch, seconds / 2, threads=engine_threads)
                raw_default = raw_rate(predictor, jobs, batch, seconds / 2, threads=default_threads)
                serial = serial_rate(predictor, jobs, batch, seconds / 2, threads=engine_threads)
                rounds.append((eng, nai, mean_batch, raw, raw_default, serial))
            rows.append(summarise(clients, rounds))
        lag = await loop_lag_p99(engine.answer, jobs, max(clients_levels), seconds)
    return {
        "machine": (
            f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
        ),
        "max_batch_size": max_batch,
        "torch_threads": {"engine": engine_threads, "torch_default": default_threads},
        "seconds_per_measure": seconds,
        "repeats": repeats,
        "rows": rows,
        "loop_lag": lag,
        "decode": decode_costs(package),
    }


async def checks_cost(
    clients_levels: list[int], seconds: float, max_batch: int, repeats: int, torch_threads: int
) -> dict[str, object]:
    """Throughput of one engine with the answer checks on and one with them off, interleaved."""
    jobs = easy_vqa_jobs()
    options = EngineOptions(
        max_batch_size=max_batch, cache_size=0, max_queue=4096, torch_threads=torch_threads
    )

    def load() -> ModelPackage:
        return load_package(BUNDLED_MODEL)

    on = VQAEngine(load, options=options, checks=CheckOptions())
    off = VQAEngine(load, options=options, checks=CheckOptions(answer_checks=False))
    rows = []
    async with on, off:
        for engine in (on, off):
            await drive(engine.answer, jobs, 8, 0.5)  # warm
        abstained = sum(p.abstain for p in await asyncio.gather(*(on.answer(i, q) for i, q in jobs)))
        for clients in clients_levels:
            rounds = []
            for r in range(repeats):
                pair = (on, off) if r % 2 == 0 else (off, on)  # alternate which goes first
                measured = {}
                for engine in pair:
                    cpu = time.process_time()
                    measured[id(engine)] = await drive(engine.answer, jobs, clients, seconds)
                    # the process's CPU time per answer: what bounds throughput on a machine of its
                    # own, and far less disturbed than the wall clock by other work on a shared one
                    measured[id(engine)]["cpu_ms"] = (
                        (time.process_time() - cpu) * 1000 / max(1, measured[id(engine)]["requests"])
                    )
                rounds.append((measured[id(on)], measured[id(off)]))
            rows.append(
                {
                    "clients": clients,
                    "checks_on_per_s": statistics.median(a["per_s"] for a, _ in rounds),
                    "checks_off_per_s": statistics.median(b["per_s"] for _, b in rounds),
                    "on_vs_off": statistics.median(a["per_s"] / b["per_s"] for a, b in rounds),
                    "on_vs_off_rounds": [a["per_s"] / b["per_s"] for a, b in rounds],
                    "cpu_ms_per_answer_on": statistics.median(a["cpu_ms"] for a, _ in rounds),
                    "cpu_ms_per_answer_off": statistics.median(b["cpu_ms"] for _, b in rounds),
                    "cpu_off_vs_on": statistics.median(b["cpu_ms"] / a["cpu_ms"] for a, b in rounds),
                    "p50_ms_on": statistics.median(a["p50_ms"] for a, _ in rounds),
                    "p50_ms_off": statistics.median(b["p50_ms"] for _, b in rounds),
                }
            )
    return {
        "rows": rows,
        "workload_abstained": abstained,
        "workload": len(jobs),
        "batch_step": batch_step_cost(),
    }


def batch_step_cost(batches: tuple[int, ...] = (1, 8, 32), rounds: int = 300) -> list[dict[str, float]]:
    """The batch step alone (``predict_batch``: forward pass, answers, checks) with the checks on
    and off, interleaved call by call, in thread CPU time at one torch thread: the checks' own
    cost, which the wall clock of a shared machine hides in its noise."""
    package = load_package(BUNDLED_MODEL)
    on, off = Predictor(package), Predictor(package, checks=CheckOptions(answer_checks=False))
    jobs = easy_vqa_jobs()

    def measure() -> list[dict[str, float]]:
        torch.set_num_threads(1)
        rows = []
        for batch in batches:
            pixels = torch.stack([on.preprocess(image) for image, _ in jobs[: batch * 7 : 7]])
            questions = [q for _, q in jobs[: batch * 7 : 7]]
            times: dict[int, list[float]] = {id(on): [], id(off): []}
            for _ in range(rounds):
                for predictor in (on, off):
                    started = time.thread_time()
                    predictor.predict_batch(pixels, questions, top_k=10)
                    times[id(predictor)].append(time.thread_time() - started)
            t_on, t_off = statistics.median(times[id(on)]), statistics.median(times[id(off)])
            rows.append(
                {"batch": batch, "on_ms": t_on * 1000, "off_ms": t_off * 1000, "off_vs_on": t_off / t_on}
            )
        return rows

    return fresh_thread(measure)


def report_checks(checks: dict[str, Any]) -> None:
    print(
        f"\n{'clients':>7} | {'checks on/s':>11} {'off/s':>7} {'on÷off':>7} | {'p50 on':>7} {'p50 off':>7} | "
        f"{'CPU ms on':>9} {'off':>5} {'off÷on':>7}"
    )
    for row in checks["rows"]:
        print(
            f"{row['clients']:>7} | {row['checks_on_per_s']:>11.0f} {row['checks_off_per_s']:>7.0f} "
            f"{row['on_vs_off']:>7.1%} | {row['p50_ms_on']:>7.1f} {row['p50_ms_off']:>7.1f} | "
            f"{row['cpu_ms_per_answer_on']:>9.3f} {row['cpu_ms_per_answer_off']:>5.3f} "
            f"{row['cpu_off_vs_on']:>7.1%}"
        )
    print(
        f"\n{'batch':>5} | {'step on ms':>10} {'off ms':>7} {'off÷on':>7}   (thread CPU time, 1 torch thread)"
    )
    for row in checks["batch_step"]:
        print(f"{row['batch']:>5} | {row['on_ms']:>10.3f} {row['off_ms']:>7.3f} {row['off_vs_on']:>7.1%}")
    print(
        f"answer checks on vs off, same run (medians of per-round ratios); CPU: the process's CPU time per "
        f"answer; {checks['workload_abstained']} of the {checks['workload']} test-split questions "
        "abstained with the checks on"
    )


def report(result: dict[str, Any]) -> None:
    print(
        f"{'clients':>7} | {'engine/s':>8} {'p50 ms':>7} {'p95 ms':>7} | {'naive/s':>7} {'p50 ms':>7} "
        f"{'p95 ms':>7} | {'batch':>5} {'raw/s':>7} {'raw*/s':>7} {'serial/s':>8} | {'eng/naive':>9} "
        f"{'eng/raw':>7} {'eng/raw*':>8} {'eng/serial':>10}"
    )
    for row in result["rows"]:
        e, n = row["engine"], row["naive"]
        print(
            f"{row['clients']:>7} | {e['per_s']:>8.0f} {e['p50_ms']:>7.1f} {e['p95_ms']:>7.1f} | "
            f"{n['per_s']:>7.0f} {n['p50_ms']:>7.1f} {n['p95_ms']:>7.1f} | {row['engine_mean_batch']:>5.1f} "
            f"{row['raw_per_s']:>7.0f} {row['raw_default_threads_per_s']:>7.0f} "
            f"{row['serial_decode_forward_per_s']:>8.0f} | "
            f"{row['engine_vs_naive']:>8.2f}x {row['engine_vs_raw']:>7.0%} "
            f"{row['engine_vs_raw_default_threads']:>8.0%} {row['engine_vs_serial']:>10.0%}"
        )
    threads = result["torch_threads"]
    print(
        f"raw: the forward pass alone at the engine's torch threads ({threads['engine']}); "
        f"raw*: at torch's default ({threads['torch_default']}); serial: decode + forward, one thread"
    )
    lag = result["loop_lag"]
    print(
        f"\nevent-loop lag at {lag['clients']} clients (engine saturated, {lag['per_s']:.0f}/s): "
        f"p50 {lag['lag_p50_ms']:.2f} ms, p99 {lag['lag_p99_ms']:.2f} ms, max {lag['lag_max_ms']:.2f} ms"
    )
    d = result["decode"]
    print(
        f"decode to input tensor: 64x64 PNG {d['png_64_ms']:.2f} ms; "
        f"1920x1080 JPEG {d['jpeg_1080p_ms']:.2f} ms "
        f"with draft mode, {d['jpeg_1080p_full_decode_ms']:.2f} ms full decode"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per load level")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: the engine's default")
    parser.add_argument("--checks-only", action="store_true", help="only the answer checks' cost")
    parser.add_argument("--output", type=Path, default=result_path("engine"))
    args = parser.parse_args()
    settings = (args.clients, args.seconds, args.max_batch, args.repeats, args.torch_threads)
    if args.checks_only:
        result = {}
        if args.output.is_file():  # keep the rest of an earlier full run
            result = json.loads(args.output.read_text())
    else:
        result = asyncio.run(run(*settings))
        report(result)
    result["checks"] = asyncio.run(checks_cost(*settings))
    report_checks(result["checks"])
    write_result(args.output, result)


if __name__ == "__main__":
    main()
