"""The shared async engine: every platform's questions become few batched forward passes.

One engine per process. Its public surface is ``await engine.answer(image, question)``; inside,
each question goes through small stages, each its own module::

    clean question -> admit (bounded) -> cache (prediction_cache) -> decode (decode thread,
        backend.preprocess) -> queue (batch_queue) -> forward (inference thread,
        backend.predict_batch) -> settle Futures on the loop -> stats (engine_stats)

The event loop only moves Futures around: hashing large images, decoding and the forward pass
all run on threads, so a long batch never stalls Discord heartbeats or Telegram polling. The
engine knows nothing of the model: a ``Backend`` (ours, transformers, ONNX, an ensemble) does.
This module imports no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

import psutil

from vqa_engine.checks.options import CheckOptions
from vqa_engine.conversation import History, history_key
from vqa_engine.errors import (
    EngineBusyError,
    EngineClosedError,
    EngineError,
    EngineTimeoutError,
    InferenceError,
    ModelServerError,
    VQAInputError,
)
from vqa_engine.model_info import ModelInfo
from vqa_engine.options import MAX_TOP_K, EngineOptions
from vqa_engine.prediction import Prediction
from vqa_engine.preprocess import ImageLimits, clean_question
from vqa_engine.serving.batch_queue import BatchQueue
from vqa_engine.serving.engine_stats import OUTCOMES, EngineOutcome, EngineStats, StatsRecorder
from vqa_engine.serving.model_facts import ModelFacts, facts_of
from vqa_engine.serving.prediction_cache import CacheKey, PredictionCache, SharedPredictions, image_digest

if TYPE_CHECKING:
    from vqa_engine.backends.base import Backend
    from vqa_engine.modular.package import ModelPackage

__all__ = ["OUTCOMES", "EngineOptions", "EngineStats", "VQAEngine"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: images up to this size are hashed on the event loop (well under a millisecond)
INLINE_HASH_BYTES = 256 * 1024
#: after a failed batch, questions are retried alone until this many of them fail too: then the
#: failure is taken as systematic (out of memory, a broken model) and the rest fail unrun
MAX_FAILURES_ALONE = 2

Loader = Callable[[], "Backend | ModelPackage"]


@dataclass(eq=False)
class _Request:
    image: bytes | None  # dropped once decoded
    question: str
    future: asyncio.Future[Prediction]  # touched on the event loop only
    history: History = ()  # the earlier turns about this image, read by models that write
    inputs: object = None  # the backend's input for the image, set by a decode thread


#: what a batch produced for one request: its prediction, or the exception it gets
_RequestResult = tuple[_Request, Prediction | None, BaseException | None]


class VQAEngine:
    """Answers questions about images for every chat platform of the process.

    ``loader`` builds the model: a ``Backend`` (``vqa_engine.loading.loader.load_backend``), or one of
    our ``ModelPackage``s. It runs in ``start()`` off the event loop, never at import or
    construction. Use as ``async with VQAEngine(...)``.

    Threads: the event loop admits questions and settles Futures; a small pool decodes images;
    one inference thread forms batches and runs the forward passes. Decoded requests go from a
    decode thread straight to the inference thread (``BatchQueue``), and a finished batch wakes
    the loop once, so the loop's work per question stays a few microseconds.
    """

    def __init__(
        self,
        loader: Loader,
        *,
        options: EngineOptions = EngineOptions(),
        limits: ImageLimits = ImageLimits(),
        checks: CheckOptions = CheckOptions(),
        shared_cache: SharedPredictions | None = None,
    ) -> None:
        self._loader = loader
        self.options = options
        self._limits = limits
        self._checks = checks  # when an answer is only a guess (vqa_engine.checks.answer_checks)
        self._state: Literal["new", "starting", "running", "closing", "closed"] = "new"
        self._backend: Backend | None = None
        self._facts: ModelFacts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: BatchQueue[_Request] = BatchQueue(keep=lambda r: not r.future.done())
        # event loop only
        self._idle = asyncio.Event()  # nothing admitted is unanswered
        self._idle.set()
        self._in_flight = 0
        # ``shared_cache``: answers shared by several processes (Redis), behind this one's LRU
        self._cache = PredictionCache(options.cache_size, shared=shared_cache)
        self._stats = StatsRecorder()
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
        """Load the model (off the loop), warm it up and start batching.

        Raises what the loader raises, and ``EngineClosedError`` when ``close()`` was called
        while the model was loading (the engine then stays closed).
        """
        if self._state != "new":
            raise RuntimeError(f"the engine cannot start: it is {self._state}")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        try:
            backend = await in_daemon_thread(self._load, name="vqa-load")
        except BaseException:
            self._state = "closed"
            raise
        if self._state != "starting":  # close() ran while the model loaded: stay closed
            raise EngineClosedError("the engine was closed while the model was loading", retry_after_s=60)
        self._backend = backend
        self._decode_pool = ThreadPoolExecutor(
            max_workers=self.options.preprocess_threads, thread_name_prefix="vqa-decode"
        )
        self._inference = threading.Thread(target=self._inference_loop, name="vqa-inference", daemon=True)
        self._inference.start()
        self._started_at = time.monotonic()
        info = backend.info
        self._model_key = model_key(info)
        self._state = "running"
        log.info("model ready: %s%s", info.describe(), ", QUANTIZE=int8" if info.quantize == "int8" else "")

    async def close(self, *, drain_timeout: float | None = None) -> None:
        """Refuse new questions, answer every admitted one, then stop.

        After ``drain_timeout`` seconds, questions still waiting get ``EngineClosedError``.
        Closing while ``start()`` loads the model makes that ``start()`` fail.
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
        for request in self._queue.close():
            if not request.future.done():
                request.future.set_exception(
                    EngineClosedError("the bot is shutting down; please ask again later", retry_after_s=60)
                )
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        if drained and self._inference is not None:
            await asyncio.to_thread(self._inference.join)
        self._state = "closed"
        log.info("engine closed")

    def _load(self) -> Backend:
        from vqa_engine.backends.base import Backend

        if self.options.torch_threads:  # read by the inference thread, started after this
            import torch

            torch.set_num_threads(self.options.torch_threads)
        loaded = self._loader()
        if isinstance(loaded, Backend):
            backend = loaded
        else:  # one of our packages, as tests and older callers pass it
            from vqa_engine.backends.modular import ModularBackend

            backend = ModularBackend(loaded)
        backend.use_checks(self._checks)
        backend.warm_up()
        return backend

    # -- the public call --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def model_facts(self) -> ModelFacts:
        """What the model's package says about itself (for /help, /about and honest answers);
        a bare description from the model's own info when it has no package folder."""
        if self._backend is None:
            raise EngineClosedError(
                "the model is not loaded yet; please try again in a minute", retry_after_s=60
            )
        if self._facts is None:
            self._facts = facts_of(self._backend)
        return self._facts

    @property
    def model_info(self) -> ModelInfo:
        """What answers: model id, revision, backend, answers, dtype, quantisation, members."""
        if self._backend is None:
            raise EngineClosedError(
                "the model is not loaded yet; please try again in a minute", retry_after_s=60
            )
        return self._backend.info

    @property
    def input_size(self) -> int:
        """The image side, in pixels, the model reads (the largest of an ensemble's members):
        a photo smaller than this loses detail, a larger one is only downscaled."""
        return self.model_info.input_size

    async def answer(
        self, image: bytes, question: str, *, top_k: int | None = None, history: History = ()
    ) -> Prediction:
        """Answer ``question`` about the encoded ``image`` (PNG, JPEG, WebP, GIF, BMP), after the
        earlier (question, answer) turns about it in ``history`` (read by models that write).

        Raises a ``VQAInputError`` subclass for an image or question that cannot be used,
        ``EngineBusyError`` when the queue is full, ``EngineTimeoutError``, ``EngineClosedError``
        while shutting down, and ``InferenceError`` when the model fails on this input.
        All their messages are fit to show a user.
        """
        started = time.perf_counter()
        k = self.options.top_k if top_k is None else max(1, min(top_k, MAX_TOP_K))
        if self._state != "running":
            self._stats.count("closed")
            raise EngineClosedError("the bot is restarting; please ask again in a minute", retry_after_s=60)
        try:
            question = clean_question(question)
        except VQAInputError:
            self._stats.count("rejected")
            raise
        if self._in_flight >= self.options.max_queue:
            self._stats.count("busy")
            raise EngineBusyError(
                "I'm busy answering other questions; please try again in a few seconds", retry_after_s=5
            )

        self._in_flight += 1
        self._idle.clear()
        outcome: EngineOutcome = "error"
        try:
            async with asyncio.timeout(self.options.request_timeout_s):
                prediction = await self._answer(image, question, history)
            outcome = "answered"
            return prediction.truncated(k)
        except TimeoutError:
            outcome = "timeout"
            raise EngineTimeoutError(
                "that took too long; I'm probably very busy, please try again in a minute", retry_after_s=60
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
            latency = (time.perf_counter() - started) * 1000 if outcome == "answered" else None
            self._stats.count(outcome, latency)

    async def _answer(self, image: bytes, question: str, history: History) -> Prediction:
        assert self._decode_pool is not None and self._loop is not None and self._backend is not None
        key: CacheKey | None = None
        if self._cache.enabled:
            if len(image) <= INLINE_HASH_BYTES:
                digest = image_digest(image)
            else:
                digest = await self._loop.run_in_executor(self._decode_pool, image_digest, image)
            key = (digest, self._backend.question_key(question) + history_key(history), self._model_key)
            cached = await self._cache.lookup(key)
            if cached is not None:
                return cached

        request = _Request(image, question, self._loop.create_future(), history)
        self._queue.expect()
        self._decode_pool.submit(self._decode, request)
        prediction = await request.future
        if key is not None:
            await self._cache.store(key, prediction)
        return prediction

    # -- decode threads ---------------------------------------------------------------------

    def _decode(self, request: _Request) -> None:
        """Decode one image and hand it to the inference thread (or its error to the caller)."""
        assert self._backend is not None and request.image is not None
        error: BaseException | None = None
        if not request.future.done():  # a caller that gave up costs no decoding
            try:
                request.inputs = self._backend.preprocess(request.image, self._limits)
            except Exception as exc:
                error = exc
        request.image = None
        if request.inputs is None:
            self._queue.forget()
        elif not self._queue.put(request):
            error = EngineClosedError("the bot is shutting down; please ask again later", retry_after_s=60)
        if error is not None:
            self._call_on_loop(_settle_error, request.future, error)

    def _call_on_loop(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed under a late batch
            self._loop.call_soon_threadsafe(callback, *args)

    # -- the inference thread ---------------------------------------------------------------

    def _inference_loop(self) -> None:
        while True:
            batch = self._queue.next_batch(self.options.max_batch_size, self.options.max_wait_ms / 1000)
            if batch is None:
                return
            if batch:
                results, passes = self._run(batch)
                self._call_on_loop(self._settle, results, passes)

    def _run(self, batch: list[_Request]) -> tuple[list[_RequestResult], list[int]]:
        """One forward pass. If it fails, each request alone, so only a culprit fails, until
        ``MAX_FAILURES_ALONE`` of them have failed alone too: then the rest fail unrun."""
        try:
            return list(zip(batch, self._forward(batch), [None] * len(batch), strict=True)), [len(batch)]
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, ModelServerError):  # the server, not a question
                return [(request, None, exc) for request in batch], []
            log.warning("a batch of %d failed (%s); retrying each question alone", len(batch), exc)
        results: list[_RequestResult] = []
        passes = []
        failures: list[BaseException] = []
        for done, request in enumerate(batch):
            if len(failures) >= MAX_FAILURES_ALONE:
                rest = batch[done:]
                log.error(
                    "%d questions failed alone too: failing the other %d of the batch without running them",
                    len(failures),
                    len(rest),
                )
                results += [(r, None, failures[-1]) for r in rest]
                break
            try:
                [prediction] = self._forward([request])
            except Exception as exc:
                failures.append(exc)
                results.append((request, None, exc))
            else:
                results.append((request, prediction, None))
                passes.append(1)
        return results, passes

    def _forward(self, batch: Sequence[_Request]) -> list[Prediction]:
        assert self._backend is not None
        questions, inputs, histories = zip(*((r.question, r.inputs, r.history) for r in batch), strict=True)
        if any(histories):  # a follow-up in the batch: the backend reads the earlier turns
            predictions = self._backend.predict_turns(inputs, questions, histories, top_k=MAX_TOP_K)
        else:
            predictions = self._backend.predict_batch(inputs, questions, top_k=MAX_TOP_K)
        if len(predictions) != len(questions):
            raise RuntimeError(
                f"the model returned {len(predictions)} answers for {len(questions)} questions"
            )
        return predictions

    # -- back on the event loop -------------------------------------------------------------

    def _settle(self, results: list[_RequestResult], passes: list[int]) -> None:
        self._stats.forward_passes(passes)
        for request, prediction, error in results:
            if request.future.done():
                continue
            if error is not None:
                log.error("the model failed on a question: %r", request.question, exc_info=error)
                request.future.set_exception(_user_facing(error))
            else:
                request.future.set_result(prediction)  # type: ignore[arg-type]

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        """Counters since start-up; latency percentiles over the last answered questions."""
        stats = self._stats
        info = self._backend.info if self._backend is not None else None
        return EngineStats(
            state=self._state,
            model_id=info.model_id if info else "",
            revision=info.revision if info else None,
            device=info.device if info else "",
            uptime_s=round(time.monotonic() - self._started_at, 3) if self._started_at else 0.0,
            requests=stats.requests(),
            cache_hits=self._cache.hits,
            cache_misses=self._cache.misses,
            shared_cache_hits=self._cache.shared_hits,
            batches=stats.batches,
            mean_batch_size=stats.mean_batch_size,
            largest_batch=stats.largest_batch,
            batch_sizes=dict(stats.batch_sizes),
            queue_depth=len(self._queue),
            in_flight=self._in_flight,
            latency_p50_ms=stats.latency_percentile(0.50),
            latency_p95_ms=stats.latency_percentile(0.95),
            memory_rss_mb=round(self._process.memory_info().rss / 2**20, 1),
            backend=info.backend if info else "",
            answers=info.answers if info else None,
            dtype=info.dtype if info else "",
            quantize=info.quantize if info else "none",
            members=info.members if info else (),
            escalates_to=info.escalates_to if info else None,
            answer_checks=self._backend.checks.describe() if self._backend is not None else "",
        )


def model_key(info: ModelInfo) -> str:
    """What the cache's keys say about the model: its answers are not another model's (nor those
    of the same model escalating to a second)."""
    key = f"{info.model_id}@{info.revision}:{info.backend}:{info.quantize}"
    return key if info.escalates_to is None else f"{key}>{model_key(info.escalates_to)}"


def _user_facing(error: BaseException) -> BaseException:
    """A model's failure as the caller gets it: the backend's own ``EngineError`` (its message is
    written for users), otherwise a general one caused by it."""
    if isinstance(error, EngineError):
        return error
    failure = InferenceError("the model could not answer that one; please try another image or question")
    failure.__cause__ = error
    return failure


def _settle_error(future: asyncio.Future[Prediction], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def in_daemon_thread(work: Callable[[], T], *, name: str) -> T:
    """``work()`` on a daemon thread of its own.

    Unlike ``asyncio.to_thread``, a caller that gives up (a SIGTERM while a model downloads from
    a Hub that does not answer) is not held: the process can exit while the thread still waits,
    where the default executor would be joined at exit first.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
