"""The chat side of a benchmark: the chat core as the service builds it, around an engine that
times its answers (what a bot adds is its latency minus the time inside the engine)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from benchmarks.workloads import digest
from tests.core_builder import build_test_core

if TYPE_CHECKING:
    from bots.core import Answerer, ChatCore
    from bots.prediction_log import PredictionLog
    from vqa_engine import Prediction
    from vqa_engine.conversation import History
    from vqa_engine.serving.engine import EngineStats, VQAEngine
    from vqa_engine.serving.model_facts import ModelFacts


class TimedEngine:
    """The engine, recording how long each question spent inside ``answer`` (by image digest)."""

    def __init__(self, engine: VQAEngine) -> None:
        self.engine = engine
        self.inside: dict[str, float] = {}

    async def answer(
        self, image: bytes, question: str, *, top_k: int | None = None, history: History = ()
    ) -> Prediction:
        started = time.perf_counter()
        try:
            return await self.engine.answer(image, question, top_k=top_k, history=history)
        finally:
            self.inside[digest(image)] = time.perf_counter() - started

    def stats(self) -> EngineStats:
        return self.engine.stats()

    @property
    def model_facts(self) -> ModelFacts:
        return self.engine.model_facts


def chat_core(
    engine: VQAEngine | TimedEngine, prediction_log: PredictionLog, *, rate_limit: str = "100000/minute"
) -> ChatCore:
    """The service's chat core with its default settings, but a rate limit that benchmarks do not
    reach (they measure throughput, not the limit)."""
    answerer: Answerer = engine  # all the core asks of an engine, which a TimedEngine does too
    return build_test_core(cast("VQAEngine", answerer), prediction_log, rate_limit=rate_limit)
