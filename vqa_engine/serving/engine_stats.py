"""The engine's counters and the snapshot ``/health`` and ``/stats`` read. Torch-free."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from vqa_engine.model_info import ModelInfo

#: how one call of ``VQAEngine.answer`` ended (the keys of ``EngineStats.requests``, in /stats and
#: the metrics); not the chat core's ``bots.events.Outcome``, which says how a chat turn ended
EngineOutcome = Literal["answered", "rejected", "busy", "timeout", "cancelled", "error", "closed"]
OUTCOMES: tuple[EngineOutcome, ...] = get_args(EngineOutcome)
#: answered-request latencies kept for the percentiles
LATENCY_WINDOW = 2048


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
    backend: str = ""  # modular, transformers-classifier, transformers-generative, onnx, ensemble
    answers: int | None = None  # size of the answer space (None: generated answers)
    dtype: str = ""
    quantize: str = "none"
    members: tuple[ModelInfo, ...] = ()  # an ensemble's models
    escalates_to: ModelInfo | None = None  # the model that answers what the first abstains on
    batch_sizes: dict[int, int] = field(default_factory=dict)  # forward passes by batch size
    answer_checks: str = ""  # which checks judge the answers (AnswerChecks.describe)
    shared_cache_hits: int = 0  # (of cache_hits) answered by the cache shared with other processes

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class StatsRecorder:
    """Counts outcomes, batches and latencies. Written by the event loop only."""

    outcomes: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batched: int = 0
    largest_batch: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def count(self, outcome: EngineOutcome, latency_ms: float | None = None) -> None:
        self.outcomes[outcome] += 1
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)

    def forward_passes(self, sizes: Sequence[int]) -> None:
        """Forward passes that produced answers, by batch size."""
        self.batches += len(sizes)
        self.batched += sum(sizes)
        self.largest_batch = max([self.largest_batch, *sizes])
        self.batch_sizes.update(sizes)

    @property
    def mean_batch_size(self) -> float:
        return round(self.batched / self.batches, 3) if self.batches else 0.0

    def requests(self) -> dict[str, int]:
        return {outcome: self.outcomes[outcome] for outcome in OUTCOMES}

    def latency_percentile(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[rank], 3)
