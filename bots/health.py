"""``/health`` and ``/stats`` texts for admins, from the engine's and the chat core's counters."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vqa_engine.engine import EngineStats


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _model_lines(stats: EngineStats) -> list[str]:
    """Which model answers and how: one line, or one per member of an ensemble."""
    revision = f" @ {stats.revision}" if stats.revision else ""
    if not stats.members:
        return [
            f"model: {stats.model_id}{revision}",
            f"backend: {_runs(stats.backend, stats.answers, stats.dtype, stats.quantize)}",
        ]
    lines = [f"model: ensemble of {len(stats.members)}"]
    for member in stats.members:
        rev = f" @ {member.revision}" if member.revision else ""
        runs = _runs(member.backend, member.answers, member.dtype, member.quantize)
        lines.append(f"  {member.model_id}{rev} (weight {member.weight:.2f}): {runs}")
    return lines


def _runs(backend: str, answers: int | None, dtype: str, quantize: str) -> str:
    space = "generated answers" if answers is None else f"{answers:,} answers"
    int8 = ", int8 on" if quantize == "int8" else ""
    return f"{backend or 'unknown'}, {space}, {dtype or '?'}{int8}"


def format_health(stats: EngineStats, *, platforms: list[str]) -> str:
    """Is it up, which model exactly, and is it keeping up."""
    status = "OK" if stats.state == "running" else stats.state.upper()
    return "\n".join(
        [
            f"{status} — up {duration(stats.uptime_s)}",
            *_model_lines(stats),
            f"device: {stats.device}",
            f"platforms: {', '.join(platforms) or 'none'}",
            f"queue: {stats.queue_depth} waiting, {stats.in_flight} in flight",
            f"latency: p50 {_ms(stats.latency_p50_ms)}, p95 {_ms(stats.latency_p95_ms)}",
            f"memory: {stats.memory_rss_mb:.0f} MB",
        ]
    )


def format_stats(stats: EngineStats, outcomes: Counter[tuple[str, str]], *, remembered_images: int) -> str:
    """What happened since start-up: chat outcomes per platform, and the engine's counters."""
    lines = ["chat requests since start-up:"]
    platforms = sorted({platform for platform, _ in outcomes})
    if not platforms:
        lines.append("  none yet")
    for platform in platforms:
        mine = {outcome: n for (p, outcome), n in outcomes.items() if p == platform}
        total = sum(mine.values())
        parts = ", ".join(f"{outcome} {n}" for outcome, n in sorted(mine.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {platform}: {total} ({parts})")
    requests = stats.requests
    cache_total = stats.cache_hits + stats.cache_misses
    hit_rate = f"{stats.cache_hits / cache_total:.0%}" if cache_total else "–"
    lines += [
        "engine:",
        "  " + ", ".join(f"{outcome} {n}" for outcome, n in requests.items() if n or outcome == "answered"),
        f"  batches {stats.batches}, mean size {stats.mean_batch_size:.1f}, largest {stats.largest_batch}",
        f"  latency p50 {_ms(stats.latency_p50_ms)}, p95 {_ms(stats.latency_p95_ms)}",
        f"  cache hits {stats.cache_hits} ({hit_rate})",
        f"images remembered for follow-ups: {remembered_images}",
    ]
    return "\n".join(lines)
