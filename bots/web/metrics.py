"""``GET /metrics``: what a Prometheus server scrapes.

Questions by platform and outcome and their latency come from the chat core's ``observe`` hook
(one call per question, every platform); the engine's counters (batches, queue, cache, model)
are read from ``engine.stats()`` at scrape time, so nothing is counted twice. One registry per
process, built in ``service.builders`` (never prometheus_client's global one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from vqa_engine.serving.engine import EngineStats

#: seconds, from a cached answer (well under a millisecond) to a queue under load
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: questions per forward pass (MAX_BATCH_SIZE is at most 1024)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The process's metrics; ``observe`` is the chat core's hook, ``render`` the scrape."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        engine_stats: Callable[[], EngineStats],
        platforms: Callable[[], Mapping[str, bool]],
        redis_up: Callable[[], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.requests = Counter(
            "vqa_requests",
            "Questions by platform and outcome (answered, rate_limited, busy, rejected:<reason>, ...)",
            ["platform", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "vqa_request_duration_seconds",
            "From a question's arrival at the chat core to its reply, by platform",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        registry.register(EngineCollector(engine_stats, platforms, redis_up))
        ProcessCollector(registry=registry)  # resident memory, CPU seconds, open files

    def observe(self, platform: str, outcome: str, latency_s: float) -> None:
        """One question ended (the chat core calls this once per question)."""
        self.requests.labels(platform, outcome).inc()
        self.latency.labels(platform).observe(latency_s)

    def count(self, platform: str, outcome: str) -> None:
        """A request refused before it became a question (a bad API key, a form it cannot read...)."""
        self.requests.labels(platform, outcome).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class EngineCollector(Collector):
    """The engine's counters and the platforms' connections, read when scraped."""

    def __init__(
        self,
        engine_stats: Callable[[], EngineStats],
        platforms: Callable[[], Mapping[str, bool]],
        redis_up: Callable[[], bool] | None = None,
    ) -> None:
        self.engine_stats = engine_stats
        self.platforms = platforms
        self.redis_up = redis_up  # None: no REDIS_URL

    def collect(self) -> Iterator[Metric]:
        stats = self.engine_stats()
        requests = CounterMetricFamily(
            "vqa_engine_requests", "Questions the engine saw, by outcome", labels=["outcome"]
        )
        for outcome, n in stats.requests.items():
            requests.add_metric([outcome], n)
        yield requests
        yield batch_histogram(stats.batch_sizes)
        yield GaugeMetricFamily(
            "vqa_engine_queue_depth", "Decoded questions waiting for a forward pass", value=stats.queue_depth
        )
        yield GaugeMetricFamily(
            "vqa_engine_in_flight", "Questions admitted and not yet answered", value=stats.in_flight
        )
        yield CounterMetricFamily(
            "vqa_engine_cache_hits", "Answers served from the cache", value=stats.cache_hits
        )
        yield CounterMetricFamily(
            "vqa_engine_cache_misses", "Questions the cache could not answer", value=stats.cache_misses
        )
        yield GaugeMetricFamily(
            "vqa_model_loaded",
            "1 once the model is loaded and answering",
            value=int(stats.state == "running"),
        )
        info = InfoMetricFamily("vqa_model", "The model answering")
        info.add_metric(
            [],
            {
                "model_id": stats.model_id,
                "revision": stats.revision or "",
                "device": stats.device,
                "state": stats.state,
            },
        )
        yield info
        connected = GaugeMetricFamily(
            "vqa_platform_connected", "1 while a front end is connected", labels=["platform"]
        )
        for platform, up in sorted(self.platforms().items()):
            connected.add_metric([platform], int(up))
        yield connected
        if self.redis_up is not None:
            yield GaugeMetricFamily(
                "vqa_redis_up", "1 while the shared state in Redis is reachable", value=int(self.redis_up())
            )


def batch_histogram(sizes: Mapping[int, int]) -> HistogramMetricFamily:
    """Forward passes by batch size, in Prometheus's cumulative buckets."""
    buckets: list[tuple[str, float]] = []
    for bound in BATCH_BUCKETS:
        buckets.append((str(float(bound)), sum(n for size, n in sizes.items() if size <= bound)))
    buckets.append(("+Inf", sum(sizes.values())))
    return HistogramMetricFamily(
        "vqa_engine_batch_size",
        "Questions per forward pass",
        buckets=buckets,
        sum_value=sum(size * n for size, n in sizes.items()),
    )
