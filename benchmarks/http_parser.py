"""uvicorn's two HTTP parsers under the API at 32 concurrent clients: h11 (pure Python, uvicorn's
choice when httptools is not installed) against httptools (C), each against the engine alone in
the same run. Needs ``pip install httptools``; it is not a dependency (benchmarks/README.md).

    python -m benchmarks.http_parser [--rounds 6] [--questions 1600]

The same server and clients as ``benchmarks/web.py`` (whose functions it reuses); only uvicorn's
``http`` setting differs. Prints a table; writes ``benchmarks/results/http_parser.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from benchmarks import web as bench
from benchmarks.common import print_markdown_table, result_path, write_result
from benchmarks.workloads import easy_vqa_jobs


@contextlib.contextmanager
def uvicorn_parser(parser: str) -> Iterator[None]:
    """Every ``uvicorn.Config`` made meanwhile takes ``http=parser`` (the server is built by the
    service's own code, which does not take that setting)."""
    original = uvicorn.Config.__init__

    def with_parser(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "http": parser})

    uvicorn.Config.__init__ = with_parser  # type: ignore[method-assign]
    try:
        yield
    finally:
        uvicorn.Config.__init__ = original  # type: ignore[method-assign]


async def one(parser: str, questions: int) -> dict[str, Any]:
    jobs = easy_vqa_jobs(questions)
    with tempfile.TemporaryDirectory() as folder, uvicorn_parser(parser):
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
    parser.add_argument("--output", type=Path, default=result_path("http_parser"))
    args = parser.parse_args()
    runs = uvloop.run(measure(args.rounds, args.questions))
    print_markdown_table(
        ["round", "parser", "API q/s", "engine alone q/s", "API ÷ engine", "errors"],
        [
            [
                run["round"],
                run["parser"],
                run["api_per_s"],
                run["engine_per_s"],
                f"{run['ratio']:.0%}",
                run["errors"],
            ]
            for run in runs
        ],
        left={1},
    )
    write_result(args.output, {"date": time.strftime("%Y-%m-%d"), "runs": runs})


if __name__ == "__main__":
    main()
