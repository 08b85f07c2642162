"""The web front end against the engine alone, side by side in one run.

    python -m benchmarks.web [--rounds 3] [--single 200] [--questions 1600] [--skip-rss]

- **Single question, p50**: one client asking one question at a time through ``POST
  /api/v1/answer`` (aiohttp), through the web app (Gradio's own client: upload, queue, result
  stream, as the page does), and straight into ``engine.answer`` (no HTTP); overhead = p50
  minus the engine's p50.
- **Throughput at 32 concurrent clients**: 32 closed-loop API clients (each its own API key, so
  its own user) against 32 closed-loop callers of ``engine.answer``; ratio and errors.
- **RSS**: ``python main.py`` with both bots (loopback Telegram and Discord) against the same with
  ``PORT`` set (web + both bots), after each platform answered.

The server (uvicorn, the chat core, the engine with its cache off) runs in this process on uvloop,
as ``python main.py`` runs it; the HTTP clients in a child process, as they would be elsewhere.
Prints a table; writes ``benchmarks/results/web.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Jobs, percentile, print_markdown_table, result_path, write_result
from benchmarks.load import answer_all
from benchmarks.processes import inherited_env, read_until, start_main
from benchmarks.workloads import easy_vqa_jobs
from tests.loopback import free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CLIENTS = 32
KEYS = [f"client{n}:bench-key-{n:04d}-0123456789" for n in range(CLIENTS)]


# -- the client process -------------------------------------------------------------------------


async def api_clients(url: str, jobs: Jobs, clients: int) -> dict[str, Any]:
    """``clients`` closed-loop clients, each with its own key, sharing ``jobs``."""
    import aiohttp

    latencies: list[float] = []
    errors: list[int] = []
    queue = list(reversed(jobs))
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client(n: int) -> None:
            headers = {"X-API-Key": KEYS[n].split(":", 1)[1]}
            while queue:
                image, question = queue.pop()
                form = aiohttp.FormData()
                form.add_field("image", image, filename="q.png", content_type="image/png")
                form.add_field("question", question)
                started = time.perf_counter()
                async with http.post(f"{url}/api/v1/answer", data=form, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(response.status)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors}


async def page_client(url: str, jobs: Jobs) -> dict[str, Any]:
    """One at a time through the web app's own route, as a page does: upload the image, join
    Gradio's queue, read the result stream (Gradio's documented HTTP API, /gradio_api/call/ask)."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession() as http:
        for image, question in jobs:
            started = time.perf_counter()
            form = aiohttp.FormData()
            form.add_field("files", image, filename="q.png", content_type="image/png")
            async with http.post(f"{url}/gradio_api/upload", data=form) as response:
                [path] = await response.json()
            body = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, question]}
            async with http.post(f"{url}/gradio_api/call/ask", json=body) as response:
                event = (await response.json())["event_id"]
            async with http.get(f"{url}/gradio_api/call/ask/{event}") as response:
                stream = await response.text()
            latencies.append(time.perf_counter() - started)
            lines = stream.strip().splitlines()
            if (
                lines[-2:-1] != ["event: complete"]
                or " — " not in json.loads(lines[-1].removeprefix("data: "))[1]
            ):
                errors.append(stream[-200:])
    return {"latencies": latencies, "elapsed": sum(latencies), "errors": errors}


def gradio_client(url: str, jobs: Jobs) -> dict[str, Any]:
    """One at a time through Gradio's client, as the page asks."""
    from gradio_client import Client, handle_file

    client = Client(f"{url}/", verbose=False)
    latencies: list[float] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for n, (image, question) in enumerate(jobs):
            path = Path(folder) / f"{n}.png"
            path.write_bytes(image)
            files.append((path, question))
        client.predict(handle_file(str(files[0][0])), files[0][1], api_name="/ask")  # warm up
        for path, question in files:
            started = time.perf_counter()
            _, text = client.predict(handle_file(str(path)), question, api_name="/ask")
            latencies.append(time.perf_counter() - started)
            if " — " not in text:
                errors.append(text)
    return {"latencies": latencies, "elapsed": sum(latencies), "errors": errors}


def client_main(args: argparse.Namespace) -> None:
    jobs = easy_vqa_jobs(args.questions)
    if args.client == "gradio":
        result = gradio_client(args.url, jobs)
    elif args.client == "page":
        result = asyncio.run(page_client(args.url, jobs))
    else:
        result = asyncio.run(api_clients(args.url, jobs, args.concurrency))
    print(json.dumps(result))


def run_client(kind: str, url: str, questions: int, concurrency: int = 1) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.web", "--client", kind, "--url", url]
    command += ["--questions", str(questions), "--concurrency", str(concurrency)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the server (this process) ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def server(tmp: Path) -> AsyncIterator[tuple[str, Any]]:
    """The web front end as the service wires it, on 127.0.0.1, with the engine's cache off."""
    from bots.prediction_log import PredictionLog
    from config import Settings, load_settings
    from service.builders import HttpAddress, build_core, build_metrics, build_web_server, model_loader
    from vqa_engine.options import EngineOptions
    from vqa_engine.serving.engine import VQAEngine

    settings = load_settings(
        Settings,
        cache_size=0,
        rate_limit="1000000/minute",
        api_keys=",".join(KEYS),
        prediction_log=tmp / "predictions.jsonl",
        device="cpu",
        web_host="127.0.0.1",
    )
    engine = VQAEngine(model_loader(settings), options=settings.section(EngineOptions))
    metrics = build_metrics(engine, dict)
    with PredictionLog(settings.prediction_log) as log:
        core = build_core(settings, engine, log, platforms=lambda: ["web"], observe=metrics.observe)
        web = build_web_server(settings, core, engine, metrics, HttpAddress("127.0.0.1", 0), dict)
        await web.start()
        await engine.start()
        try:
            yield f"http://127.0.0.1:{web.port}", engine
        finally:
            await web.stop()
            await engine.close()


async def engine_alone(engine: Any, jobs: Jobs, clients: int) -> dict[str, Any]:
    """``clients`` closed-loop callers of ``engine.answer`` until ``jobs`` are answered."""
    load = await answer_all(engine.answer, jobs, clients)
    return {"latencies": load.latencies, "elapsed": load.elapsed, "errors": []}


async def with_cpu(work: Any) -> dict[str, Any]:
    """``work``'s result with the CPU seconds this process and its finished children spent."""
    before = (time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN))
    result: dict[str, Any] = await work
    mine = time.process_time() - before[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    theirs = after.ru_utime + after.ru_stime - before[1].ru_utime - before[1].ru_stime
    return result | {"cpu_server_s": mine, "cpu_clients_s": theirs}


async def measure(rounds: int, single: int, questions: int) -> dict[str, Any]:
    jobs = easy_vqa_jobs(max(single, questions))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with server(Path(folder)) as (url, engine):
            await engine_alone(engine, jobs[:64], 8)  # warm up
            for r in range(rounds):
                row: dict[str, Any] = {"round": r + 1}
                row["engine_1"] = await engine_alone(engine, jobs[:single], 1)
                row["api_1"] = await asyncio.to_thread(run_client, "api", url, single, 1)
                row["web_1"] = await asyncio.to_thread(run_client, "page", url, single, 1)
                row["gradio_1"] = await asyncio.to_thread(run_client, "gradio", url, single // 4, 1)
                row["engine_32"] = await with_cpu(engine_alone(engine, jobs[:questions], CLIENTS))
                row["api_32"] = await with_cpu(asyncio.to_thread(run_client, "api", url, questions, CLIENTS))
                runs.append(row)
                print(f"round {r + 1} done", file=sys.stderr)
    return {"runs": [summarise_round(row) for row in runs]}


def summarise_round(row: dict[str, Any]) -> dict[str, Any]:
    def p50_ms(run: dict[str, Any]) -> float:
        return round(percentile(run["latencies"], 0.5) * 1000, 2)

    def rate(run: dict[str, Any]) -> float:
        return round(len(run["latencies"]) / run["elapsed"], 1)

    engine = p50_ms(row["engine_1"])
    return {
        "round": row["round"],
        "p50_ms": {
            "engine": engine,
            "api": p50_ms(row["api_1"]),
            "web": p50_ms(row["web_1"]),
            "gradio_client": p50_ms(row["gradio_1"]),
        },
        "overhead_ms": {
            "api": round(p50_ms(row["api_1"]) - engine, 2),
            "web": round(p50_ms(row["web_1"]) - engine, 2),
            "gradio_client": round(p50_ms(row["gradio_1"]) - engine, 2),
        },
        "per_s_32": {"engine": rate(row["engine_32"]), "api": rate(row["api_32"])},
        "api_vs_engine_32": round(rate(row["api_32"]) / rate(row["engine_32"]), 3),
        "p50_ms_32": {"engine": p50_ms(row["engine_32"]), "api": p50_ms(row["api_32"])},
        "cpu_ms_per_question_32": {
            "engine_alone": round(
                row["engine_32"]["cpu_server_s"] / len(row["engine_32"]["latencies"]) * 1000, 3
            ),
            "api_server": round(row["api_32"]["cpu_server_s"] / len(row["api_32"]["latencies"]) * 1000, 3),
            "api_clients": round(row["api_32"]["cpu_clients_s"] / len(row["api_32"]["latencies"]) * 1000, 3),
        },
        "errors": {
            "api_1": len(row["api_1"]["errors"]),
            "web_1": len(row["web_1"]["errors"]),
            "gradio_1": len(row["gradio_1"]["errors"]),
            "api_32": len(row["api_32"]["errors"]),
        },
    }


# -- memory ------------------------------------------------------------------------------------


async def rss_of_main(env: dict[str, str], ready: str, ask: Any) -> float:
    """Start ``python main.py``, wait for ``ready`` in its log, let ``ask`` put questions, then
    read its resident memory (MB) and stop it."""
    import psutil

    child = await start_main(env=env, stdout=asyncio.subprocess.DEVNULL)
    assert child.stderr is not None
    try:
        await read_until(child.stderr, ready)
        await ask()
        rss = psutil.Process(child.pid).memory_info().rss / 2**20
    finally:
        child.send_signal(signal.SIGTERM)
        await child.communicate()
    return round(rss, 1)


async def memory(rounds: int) -> dict[str, Any]:
    import aiohttp

    from tests.fake_discord import FakeDiscord
    from tests.fake_telegram import FakeTelegram

    image = easy_vqa_jobs(1)[0][0]
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with FakeTelegram() as telegram, FakeDiscord() as discord_fake:
            discord_fake.add_user(7001)
            base = inherited_env(drop=("PORT", "WEB_PORT")) | telegram.env() | discord_fake.env()
            base |= {"PREDICTION_LOG": f"{folder}/p.jsonl", "DEVICE": "cpu", "LOG_LEVEL": "INFO"}
            port = 0

            async def ask_bots() -> None:
                telegram.send_photo(42, 42, image, caption="what color is the shape?")
                await telegram.wait_for_reply(42, timeout=60)
                dm = discord_fake.dm_channel(7001)
                discord_fake.send_message(
                    dm, 7001, "what color is the shape?", attachments=[discord_fake.attachment(image)]
                )
                await discord_fake.wait_for_message(dm, timeout=60)

            async def ask_all() -> None:
                await ask_bots()
                async with aiohttp.ClientSession() as http:
                    form = aiohttp.FormData()
                    form.add_field("image", image, filename="q.png", content_type="image/png")
                    form.add_field("question", "what color is the shape?")
                    async with http.post(f"http://127.0.0.1:{port}/api/v1/answer", data=form) as response:
                        assert response.status == 200

            for _ in range(rounds):
                bots = await rss_of_main(base, "serving on telegram, discord", ask_bots)
                port = free_port()
                env = base | {"PORT": str(port), "WEB_HOST": "127.0.0.1"}
                both = await rss_of_main(env, "serving on web, telegram, discord", ask_all)
                results.append({"bots_mb": bots, "web_and_bots_mb": both, "added_mb": round(both - bots, 1)})
    return {"runs": results}


# -- report ------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    runs = result["latency_and_throughput"]["runs"]
    print("\nSingle question, one client (p50 ms; overhead = minus the engine's p50)")
    columns = ["round", "engine", "API", "web app", "Gradio's client"]
    print_markdown_table(
        [*columns, "overhead: API", "web app", "Gradio's client"],
        [
            [run["round"], *run["p50_ms"].values(), *run["overhead_ms"].values()]  # in the columns' order
            for run in runs
        ],
    )
    print(f"\nThroughput, {CLIENTS} concurrent clients (questions/s)")
    print_markdown_table(
        [
            "round",
            "engine alone",
            "POST /api/v1/answer",
            "API ÷ engine",
            "p50 engine / API ms",
            "CPU ms/question: engine alone / API server / API clients",
            "errors",
        ],
        [throughput_row(run) for run in runs],
    )
    if "memory" in result:
        print("\nResident memory of python main.py (MB)")
        print_markdown_table(
            ["round", "both bots", "web + both bots", "added by the web front end"],
            [
                [n, run["bots_mb"], run["web_and_bots_mb"], run["added_mb"]]
                for n, run in enumerate(result["memory"]["runs"], start=1)
            ],
        )


def throughput_row(run: dict[str, Any]) -> list[object]:
    r, p, c = run["per_s_32"], run["p50_ms_32"], run["cpu_ms_per_question_32"]
    return [
        run["round"],
        r["engine"],
        r["api"],
        f"{run['api_vs_engine_32']:.0%}",
        f"{p['engine']} / {p['api']}",
        f"{c['engine_alone']} / {c['api_server']} / {c['api_clients']}",
        sum(run["errors"].values()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=200, help="questions per single-client run")
    parser.add_argument("--questions", type=int, default=1600, help="questions per 32-client run")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--output", type=Path, default=result_path("web"))
    parser.add_argument("--client", choices=["api", "page", "gradio"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    import uvloop

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "latency_and_throughput": uvloop.run(measure(args.rounds, args.single, args.questions)),
    }
    if not args.skip_rss:
        result["memory"] = uvloop.run(memory(2))
    summary = result["latency_and_throughput"]["runs"]
    result["summary"] = {
        "api_overhead_p50_ms_median": statistics.median(r["overhead_ms"]["api"] for r in summary),
        "web_overhead_p50_ms_median": statistics.median(r["overhead_ms"]["web"] for r in summary),
        "api_vs_engine_32_median": statistics.median(r["api_vs_engine_32"] for r in summary),
        "errors": sum(sum(r["errors"].values()) for r in summary),
    }
    report(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
