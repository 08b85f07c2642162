"""Load as users make it: closed-loop clients (each asks its next question when the last is
answered), with the event loop's lag watched meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.common import Jobs, percentile

#: one question asked and answered: ``await ask(image, question)``
Ask = Callable[[bytes, str], Awaitable[object]]


@dataclass
class Load:
    """What a run of clients measured: each answer's latency, the run's wall and CPU seconds (this
    process), and how late a 1 ms timer fired meanwhile (when watched)."""

    latencies: list[float]
    elapsed: float
    cpu_s: float
    lags: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.elapsed

    @property
    def per_cpu_s(self) -> float:
        """Questions per second of this process's CPU time."""
        return len(self.latencies) / self.cpu_s

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def lag_ms(self, q: float) -> float:
        return percentile(self.lags, q) * 1000


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """How late a 1 ms timer fires (seconds), sampled while the block runs."""
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    watcher = asyncio.create_task(monitor())
    try:
        yield lags
    finally:
        done.set()
        await watcher


async def closed_loop(ask: Ask, jobs: Jobs, clients: int, seconds: float, *, watch_lag: bool = False) -> Load:
    """``clients`` closed-loop clients for ``seconds`` (each finishes its last question), client
    ``c`` taking jobs ``c``, ``c + clients``, ...; with ``watch_lag``, the loop's lag meanwhile."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            image, question = jobs[i % len(jobs)]
            started = time.perf_counter()
            await ask(image, question)
            latencies.append(time.perf_counter() - started)
            i += clients

    async with contextlib.AsyncExitStack() as stack:
        lags = await stack.enter_async_context(loop_lag()) if watch_lag else []
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Load(latencies, elapsed, cpu, lags)


async def answer_all(ask: Ask, jobs: Jobs, clients: int) -> Load:
    """``clients`` closed-loop clients sharing ``jobs`` until every one is answered."""
    latencies: list[float] = []
    queue = list(reversed(jobs))

    async def client() -> None:
        while queue:
            image, question = queue.pop()
            started = time.perf_counter()
            await ask(image, question)
            latencies.append(time.perf_counter() - started)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Load(latencies, time.perf_counter() - started, time.process_time() - cpu)
