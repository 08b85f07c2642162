"""uvicorn's two HTTP parsers under the API at 32 concurrent clients: h11 (pure Python, uvicorn's
choice when httptools is not installed) against httptools (C), each against the engine alone in
the same run. Needs ``pip install httptools``; it is not a dependency (benchmarks/README.md).

    python benchmarks/http_parser.py [--rounds 6] [--questions 1600]

The same server and clients as ``benchmarks/web.py`` (whose functions it reuses); only uvicorn's
``http`` setting differs. Prints a table; writes ``benchmarks/results/http_parser.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import web as bench

_config_init = uvicorn.Config.__init__
_parser = {"http": "auto"}


def _with_parser(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    kwargs["http"] = _parser["http"]
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _with_parser  # type: ignore[method-assign]  # this benchmark only


async def one(parser: str, questions: int) -> dict[str, Any]:
    _parser["http"] = parser
    jobs = bench.workload(questions)
    with tempfile.TemporaryDirectory() as folder:
        async with bench.server(Path(folder)) as (url, engine):
            await asyncio.to_thread(bench.run_client, "api", url, 200, bench.CLIENTS)  # warm up
            api = await asyncio.to_thread(bench.run_client, "api", url, questions, bench.CLIENTS)
            alone = await bench.engine_alone(engine, jobs, bench.CLIENTS)
    api_rate = len(api["latencies"]) / api["elapsed"]
    engine_rate = len(alone["latencies"]) / alone["elapsed"]
    return {
        "parser": parser,
        "api_per_s": round(api_rate, 1),
        "engine_per_s": round(engine_rate, 1),
        "ratio": round(api_rate / engine_rate, 3),
        "errors": len(api["errors"]),
    }


async def measure(rounds: int, questions: int) -> list[dict[str, Any]]:
    runs = []
    for r in range(rounds):
        for parser in ("h11", "httptools"):
            runs.append({"round": r + 1} | await one(parser, questions))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--questions", type=int, default=1600)
    parser.add_argument(
        "--output", type=Path, default=bench.ROOT / "benchmarks" / "results" / "http_parser.json"
    )
    args = parser.parse_args()
    runs = uvloop.run(measure(args.rounds, args.questions))
    print("| round | parser | API q/s | engine alone q/s | API ÷ engine | errors |")
    print("|---:|---|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run['round']} | {run['parser']} | {run['api_per_s']} | {run['engine_per_s']} "
            f"| {run['ratio']:.0%} | {run['errors']} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
