"""``/health`` says which model answers and how: backend, answer count, dtype, int8, members."""

from __future__ import annotations

from dataclasses import replace

from bots.replies import format_health
from vqa_engine.model_info import ModelInfo
from vqa_engine.serving.engine_stats import EngineStats

VILT = ModelInfo(
    model_id="dandelin/vilt-b32-finetuned-vqa",
    revision="4355f59",
    backend="transformers-classifier",
    answers=3129,
    dtype="float32",
    quantize="none",
    device="cpu",
    input_size=384,
)
BLIP = replace(
    VILT, model_id="Salesforce/blip-vqa-base", revision=None, backend="transformers-generative", answers=None
)


def stats_of(info: ModelInfo) -> EngineStats:
    return EngineStats(
        state="running",
        model_id=info.model_id,
        revision=info.revision,
        device=info.device,
        uptime_s=61.0,
        requests={"answered": 3},
        cache_hits=0,
        cache_misses=3,
        batches=2,
        mean_batch_size=1.5,
        largest_batch=2,
        queue_depth=0,
        in_flight=0,
        latency_p50_ms=210.0,
        latency_p95_ms=250.0,
        memory_rss_mb=1149.0,
        backend=info.backend,
        answers=info.answers,
        dtype=info.dtype,
        quantize=info.quantize,
        members=info.members,
    )


def test_one_model() -> None:
    health = format_health(stats_of(VILT), platforms=["telegram"])
    assert "model: dandelin/vilt-b32-finetuned-vqa @ 4355f59" in health
    assert "backend: transformers-classifier, 3,129 answers, float32" in health
    assert "int8" not in health


def test_int8_is_shown() -> None:
    quantized = replace(VILT, dtype="int8 (dynamic Linear) + float32", quantize="int8")
    health = format_health(stats_of(quantized), platforms=[])
    assert (
        "backend: transformers-classifier, 3,129 answers, int8 (dynamic Linear) + float32, int8 on" in health
    )


def test_a_generative_model() -> None:
    health = format_health(stats_of(BLIP), platforms=[])
    assert "model: Salesforce/blip-vqa-base\n" in health
    assert "backend: transformers-generative, generated answers, float32" in health


def test_an_ensemble_lists_its_members() -> None:
    members = (
        replace(VILT, weight=0.75),
        replace(BLIP, weight=0.25, quantize="int8", dtype="int8 + float32"),
    )
    ensemble = replace(VILT, model_id="a,b", backend="ensemble", answers=None, members=members)
    health = format_health(stats_of(ensemble), platforms=[])
    assert "model: ensemble of 2\n" in health
    lines = health.splitlines()
    assert (
        "  dandelin/vilt-b32-finetuned-vqa @ 4355f59 (weight 0.75): "
        "transformers-classifier, 3,129 answers, float32" in lines
    )
    assert (
        "  Salesforce/blip-vqa-base (weight 0.25): "
        "transformers-generative, generated answers, int8 + float32, int8 on" in lines
    )
