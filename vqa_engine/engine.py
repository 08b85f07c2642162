"""The shared async engine: every platform's questions become few batched forward passes.

One engine per process. Its public surface is ``await engine.answer(image, question)``; inside,
each question goes through small stages::

    clean question -> admit (bounded) -> hash -> cache -> decode (thread pool)
        -> queue (one Future each) -> batch -> forward (one inference thread) -> unbatch

The event loop only moves Futures around: hashing large images, decoding and the forward pass
all run on threads, so a long batch never stalls Discord heartbeats or Telegram polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Literal

import psutil
import torch
from cachetools import LRUCache

from vqa_engine.checks_options import CheckOptions
from vqa_engine.errors import (
    EngineBusyError,
    EngineClosedError,
    EngineTimeoutError,
    InferenceError,
    VQAInputError,
)
from vqa_engine.options import MAX_TOP_K, EngineOptions
from vqa_engine.package import ModelPackage
from vqa_engine.prediction import Prediction
from vqa_engine.predictor import Predictor
from vqa_engine.preprocess import ImageLimits, clean_question
from vqa_engine.vocab import tokenize

log = logging.getLogger(__name__)

#: images up to this size are hashed on the event loop (well under a millisecond)
INLINE_HASH_BYTES = 256 * 1024
#: answered-request latencies kept for the percentiles in ``stats()``
LATENCY_WINDOW = 2048

Outcome = Literal["answered", "rejected", "busy", "timeout", "cancelled", "error", "closed"]
OUTCOMES: tuple[Outcome, ...] = ("answered", "rejected", "busy", "timeout", "cancelled", "error", "closed")


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for ``/health`` and ``/stats``."""

    state: str
    model_id: str
    revision: str | None
    device: str
    uptime_s: float
    requests: dict[str, int]  # by outcome (see OUTCOMES)
    cache_hits: int
    cache_misses: int
    batches: int
    mean_batch_size: float
    largest_batch: int
    queue_depth: int  # decoded, waiting for a forward pass
    in_flight: int  # admitted and not yet answered (decoding, queued or in a batch)
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    memory_rss_mb: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(eq=False)
class _Request:
    image: bytes | None  # dropped once decoded
    question: str
    future: asyncio.Future[Prediction]  # touched on the event loop only
    pixels: torch.Tensor | None = None  # (3, S, S) uint8, set by a decode thread


@dataclass
class _Counters:
    outcomes: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    cache_misses: int = 0
    batches: int = 0
    batched: int = 0
    largest_batch: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


#: what a batch produced for one request: its prediction, or the exception it gets
_Outcome = tuple[_Request, Prediction | None, BaseException | None]


class VQAEngine:
    """Answers questions about images for every chat platform of the process.

    ``loader`` builds the model package (it may download it); it runs in ``start()`` off the
    event loop, never at import or construction. Use as ``async with VQAEngine(...)``.

    Threads: the event loop admits questions and settles Futures; a small pool decodes images;
    one inference thread forms batches and runs the forward passes. Decoded requests go from a
    decode thread straight to the inference thread (a deque under a condition variable), and a
    finished batch wakes the loop once, so the loop's work per question stays a few microseconds.
    """

    def __init__(
        self,
        loader: Callable[[], ModelPackage],
        *,
        options: EngineOptions = EngineOptions(),
        limits: ImageLimits = ImageLimits(),
        checks: CheckOptions = CheckOptions(),
    ) -> None:
        self._loader = loader
        self.options = options
        self._limits = limits
        self._checks = checks
        self._state: Literal["new", "starting", "running", "closing", "closed"] = "new"
        self._predictor: Predictor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # shared with the decode and inference threads, under ``_cond``
        self._cond = threading.Condition()
        self._ready: deque[_Request] = deque()  # decoded, waiting for a forward pass
        self._decoding = 0  # submitted to the decode pool, not yet ready
        self._stopping = False
        # event loop only
        self._idle = asyncio.Event()  # nothing admitted is unanswered
        self._idle.set()
        self._in_flight = 0
        self._cache: LRUCache[tuple[str, str, str], Prediction] | None = (
            LRUCache(maxsize=options.cache_size) if options.cache_size else None
        )
        self._counters = _Counters()
        self._started_at = 0.0
        self._model_key = ""  # the cache is per model revision
        self._decode_pool: ThreadPoolExecutor | None = None
        self._inference: threading.Thread | None = None
        self._process = psutil.Process()

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> VQAEngine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Load the model (off the loop) and start batching. Raises what the loader raises."""
        if self._state != "new":
            raise RuntimeError(f"the engine cannot start: it is {self._state}")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        try:
            self._predictor = await asyncio.to_thread(self._load)
        except BaseException:
            self._state = "closed"
            raise
        self._decode_pool = ThreadPoolExecutor(
            max_workers=self.options.preprocess_threads, thread_name_prefix="vqa-decode"
        )
        self._inference = threading.Thread(target=self._inference_loop, name="vqa-inference", daemon=True)
        self._inference.start()
        self._started_at = time.monotonic()
        package = self._predictor.package
        self._model_key = f"{package.model_id}@{package.revision}"
        self._state = "running"
        log.info(
            "model %s%s ready on %s (%d answers)",
            package.model_id,
            f"@{package.revision}" if package.revision else "",
            self._predictor.device,
            len(package.answers),
        )

    async def close(self, *, drain_timeout: float | None = None) -> None:
        """Refuse new questions, answer every admitted one, then stop.

        After ``drain_timeout`` seconds, questions still waiting get ``EngineClosedError``.
        """
        if self._state in ("closing", "closed"):
            return
        if self._state in ("new", "starting"):
            self._state = "closed"
            return
        self._state = "closing"
        drained = True
        try:
            async with asyncio.timeout(drain_timeout):
                await self._idle.wait()
        except TimeoutError:
            drained = False
            log.warning("closing with %d questions unanswered after %.1f s", self._in_flight, drain_timeout)
        with self._cond:
            self._stopping = True
            leftovers = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        for request in leftovers:
            if not request.future.done():
                request.future.set_exception(
                    EngineClosedError("the bot is shutting down; please ask again later")
                )
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        if drained and self._inference is not None:
            await asyncio.to_thread(self._inference.join)
        self._state = "closed"
        log.info("engine closed")

    def _load(self) -> Predictor:
        if self.options.torch_threads:  # read by the inference thread, started after this
            torch.set_num_threads(self.options.torch_threads)
        package = self._loader()
        predictor = Predictor(package, limits=self._limits, checks=self._checks)
        size = package.config.image_size
        predictor.predict_batch(torch.zeros(1, 3, size, size, dtype=torch.uint8), ["warm up"])
        return predictor

    # -- the public call --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def package(self) -> ModelPackage:
        if self._predictor is None:
            raise EngineClosedError("the model is not loaded yet; please try again in a minute")
        return self._predictor.package

    async def answer(self, image: bytes, question: str, *, top_k: int | None = None) -> Prediction:
        """Answer ``question`` about the encoded ``image`` (PNG, JPEG, WebP, GIF, BMP).

        Raises a ``VQAInputError`` subclass for an image or question that cannot be used,
        ``EngineBusyError`` when the queue is full, ``EngineTimeoutError``, ``EngineClosedError``
        while shutting down, and ``InferenceError`` when the model fails on this input.
        All their messages are fit to show a user.
        """
        started = time.perf_counter()
        k = self.options.top_k if top_k is None else max(1, min(top_k, MAX_TOP_K))
        if self._state != "running":
            self._count("closed")
            raise EngineClosedError("the bot is restarting; please ask again in a minute")
        try:
            question = clean_question(question)
        except VQAInputError:
            self._count("rejected")
            raise
        if self._in_flight >= self.options.max_queue:
            self._count("busy")
            raise EngineBusyError("I'm busy answering other questions; please try again in a few seconds")

        self._in_flight += 1
        self._idle.clear()
        outcome: Outcome = "error"
        try:
            async with asyncio.timeout(self.options.request_timeout_s):
                prediction = await self._answer(image, question)
            outcome = "answered"
            return prediction.truncated(k)
        except TimeoutError:
            outcome = "timeout"
            raise EngineTimeoutError(
                "that took too long; I'm probably very busy, please try again in a minute"
            ) from None
        except VQAInputError:
            outcome = "rejected"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
            self._count(outcome, (time.perf_counter() - started) * 1000 if outcome == "answered" else None)

    async def _answer(self, image: bytes, question: str) -> Prediction:
        assert self._decode_pool is not None and self._loop is not None
        cache, key = self._cache, None
        if cache is not None:
            if len(image) <= INLINE_HASH_BYTES:
                digest = _digest(image)
            else:
                digest = await self._loop.run_in_executor(self._decode_pool, _digest, image)
            key = (digest, " ".join(tokenize(question)), self._model_key)
            cached = cache.get(key)
            if cached is not None:
                self._counters.cache_hits += 1
                return cached
            self._counters.cache_misses += 1

        request = _Request(image, question, self._loop.create_future())
        with self._cond:
            self._decoding += 1
        self._decode_pool.submit(self._decode, request)
        prediction = await request.future
        if cache is not None and key is not None:
            cache[key] = prediction
        return prediction

    # -- decode threads ---------------------------------------------------------------------

    def _decode(self, request: _Request) -> None:
        """Decode one image and hand it to the inference thread (or its error to the caller)."""
        assert self._predictor is not None and self._loop is not None and request.image is not None
        error: BaseException | None = None
        if not request.future.done():  # a caller that gave up costs no decoding
            try:
                request.pixels = self._predictor.preprocess(request.image)
            except Exception as exc:
                error = exc
        request.image = None
        with self._cond:
            self._decoding -= 1
            if request.pixels is not None:
                self._ready.append(request)
            self._cond.notify()
        if error is not None:
            self._call_on_loop(_settle_error, request.future, error)

    def _call_on_loop(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed under a late batch
            self._loop.call_soon_threadsafe(callback, *args)

    # -- the inference thread ---------------------------------------------------------------

    def _inference_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                outcomes, passes = self._run(batch)
                self._call_on_loop(self._settle, outcomes, passes)

    def _next_batch(self) -> list[_Request] | None:
        """Up to ``max_batch_size`` live requests; waits up to ``max_wait_ms`` for more only
        while some are still being decoded, so a lone question goes at once. None: stop."""
        max_batch = self.options.max_batch_size
        with self._cond:
            while not self._ready:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.options.max_wait_ms / 1000
            batch: list[_Request] = []
            while True:
                while self._ready and len(batch) < max_batch:
                    request = self._ready.popleft()
                    if not request.future.done():  # cancelled callers are dropped here
                        batch.append(request)
                if len(batch) >= max_batch or self._decoding == 0 or self._stopping:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def _run(self, batch: list[_Request]) -> tuple[list[_Outcome], list[int]]:
        """One forward pass; if it fails, each request alone once, so only a culprit fails."""
        try:
            return list(zip(batch, self._forward(batch), [None] * len(batch), strict=True)), [len(batch)]
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0], None, exc)], []
            log.warning("a batch of %d failed (%s); retrying each question alone", len(batch), exc)
        outcomes: list[_Outcome] = []
        passes = []
        for request in batch:
            try:
                [prediction] = self._forward([request])
            except Exception as exc:
                outcomes.append((request, None, exc))
            else:
                outcomes.append((request, prediction, None))
                passes.append(1)
        return outcomes, passes

    def _forward(self, batch: Sequence[_Request]) -> list[Prediction]:
        assert self._predictor is not None
        pixels = torch.stack([r.pixels for r in batch if r.pixels is not None])
        questions = [r.question for r in batch]
        k = min(MAX_TOP_K, len(self._predictor.package.answers))
        predictions = self._predictor.predict_batch(pixels, questions, top_k=k)
        if len(predictions) != len(questions):
            raise RuntimeError(
                f"the model returned {len(predictions)} answers for {len(questions)} questions"
            )
        return predictions

    # -- back on the event loop -------------------------------------------------------------

    def _settle(self, outcomes: list[_Outcome], passes: list[int]) -> None:
        counters = self._counters
        counters.batches += len(passes)
        counters.batched += sum(passes)
        counters.largest_batch = max([counters.largest_batch, *passes])
        for request, prediction, error in outcomes:
            if request.future.done():
                continue
            if error is not None:
                log.error("the model failed on a question: %r", request.question, exc_info=error)
                failure = InferenceError(
                    "the model could not answer that one; please try another image or question"
                )
                failure.__cause__ = error
                request.future.set_exception(failure)
            else:
                request.future.set_result(prediction)  # type: ignore[arg-type]

    # -- stats ------------------------------------------------------------------------------

    def _count(self, outcome: Outcome, latency_ms: float | None = None) -> None:
        self._counters.outcomes[outcome] += 1
        if latency_ms is not None:
            self._counters.latencies_ms.append(latency_ms)

    def stats(self) -> EngineStats:
        """Counters since start-up; latency percentiles over the last answered questions."""
        counters = self._counters
        latencies = sorted(counters.latencies_ms)
        package = self._predictor.package if self._predictor else None
        return EngineStats(
            state=self._state,
            model_id=package.model_id if package else "",
            revision=package.revision if package else None,
            device=str(self._predictor.device) if self._predictor else "",
            uptime_s=round(time.monotonic() - self._started_at, 3) if self._started_at else 0.0,
            requests={outcome: counters.outcomes[outcome] for outcome in OUTCOMES},
            cache_hits=counters.cache_hits,
            cache_misses=counters.cache_misses,
            batches=counters.batches,
            mean_batch_size=round(counters.batched / counters.batches, 3) if counters.batches else 0.0,
            largest_batch=counters.largest_batch,
            queue_depth=len(self._ready),
            in_flight=self._in_flight,
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p95_ms=_percentile(latencies, 0.95),
            memory_rss_mb=round(self._process.memory_info().rss / 2**20, 1),
        )


def _settle_error(future: asyncio.Future[Prediction], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[rank], 3)
