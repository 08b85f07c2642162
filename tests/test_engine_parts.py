"""The engine's torch-free parts, without threads or a model: the batch queue, the prediction
cache, the stats, the options and what MODEL_REPO_ID may say."""

from __future__ import annotations

import threading

import pytest

from tests.children import run_child
from vqa_engine.errors import ModelNotFoundError
from vqa_engine.loading.model_spec import MemberSpec, normalised_weights, parse_model_spec
from vqa_engine.options import ModelOptions
from vqa_engine.prediction import Candidate, Prediction
from vqa_engine.serving.batch_queue import BatchQueue
from vqa_engine.serving.engine_stats import StatsRecorder
from vqa_engine.serving.prediction_cache import PredictionCache, image_digest

# -- the batch queue ---------------------------------------------------------------------------


def test_batches_come_out_in_order_and_never_larger_than_asked() -> None:
    queue: BatchQueue[int] = BatchQueue()
    for item in range(7):
        assert queue.put(item)
    assert len(queue) == 7
    assert queue.next_batch(3, 0) == [0, 1, 2]
    assert queue.next_batch(3, 0) == [3, 4, 5]
    assert queue.next_batch(3, 0) == [6]
    assert len(queue) == 0


def test_close_returns_the_leftovers_and_refuses_more() -> None:
    queue: BatchQueue[str] = BatchQueue()
    queue.put("a")
    queue.put("b")
    assert queue.close() == ["a", "b"]
    assert queue.closed
    assert queue.put("c") is False  # the producer must fail it
    assert queue.next_batch(4, 0) is None  # the consumer stops


def test_items_the_keep_rule_refuses_never_reach_a_batch() -> None:
    cancelled = {"b", "d"}
    queue: BatchQueue[str] = BatchQueue(keep=lambda item: item not in cancelled)
    for item in "abcde":
        queue.put(item)
    assert queue.next_batch(10, 0) == ["a", "c", "e"]


def test_a_lone_item_goes_at_once_when_nothing_else_is_being_prepared() -> None:
    queue: BatchQueue[str] = BatchQueue()
    queue.expect()
    queue.put("alone")
    assert queue.next_batch(8, max_wait_s=3600) == ["alone"]  # no wait: nothing else announced


def test_a_batch_waits_for_announced_items_then_takes_them_together() -> None:
    queue: BatchQueue[str] = BatchQueue()
    queue.expect()
    queue.expect()
    queue.put("first")
    taken: list[list[str] | None] = []
    consumer = threading.Thread(target=lambda: taken.append(queue.next_batch(8, max_wait_s=60)))
    consumer.start()
    queue.put("second")  # the consumer is waiting for it (or has not looked yet): one batch either way
    consumer.join(timeout=30)
    assert taken == [["first", "second"]]


def test_a_forgotten_item_stops_the_wait() -> None:
    queue: BatchQueue[str] = BatchQueue()
    queue.expect()
    queue.expect()
    queue.put("first")
    queue.forget()  # the second failed to decode
    assert queue.next_batch(8, max_wait_s=3600) == ["first"]


def test_close_wakes_a_waiting_consumer() -> None:
    queue: BatchQueue[str] = BatchQueue()
    taken: list[list[str] | None] = []
    consumer = threading.Thread(target=lambda: taken.append(queue.next_batch(8, 60)))
    consumer.start()
    queue.close()
    consumer.join(timeout=30)
    assert taken == [None]


# -- the cache and the stats -------------------------------------------------------------------


def prediction(answer: str) -> Prediction:
    return Prediction(answer, 0.9, (Candidate(answer, 0.9),))


def test_the_cache_counts_hits_and_misses_and_forgets_the_oldest() -> None:
    cache = PredictionCache(2)
    keys = [(image_digest(bytes([i])), "what color", "model@1") for i in range(3)]
    assert cache.get(keys[0]) is None
    for key, answer in zip(keys, "abc", strict=True):
        cache.put(key, prediction(answer))
    assert cache.get(keys[0]) is None  # evicted
    assert cache.get(keys[2]) == prediction("c")
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)


def test_a_cache_of_size_zero_is_off() -> None:
    cache = PredictionCache(0)
    cache.put(("x", "q", "m"), prediction("a"))
    assert not cache.enabled
    assert cache.get(("x", "q", "m")) is None
    assert (cache.hits, cache.misses) == (0, 0)


def test_image_digests_differ_by_content() -> None:
    assert image_digest(b"one") != image_digest(b"two")
    assert image_digest(b"one") == image_digest(b"one")


def test_the_stats_recorder_summarises_batches_and_latency() -> None:
    stats = StatsRecorder()
    stats.forward_passes([4, 2])
    stats.forward_passes([1])
    for ms in (10.0, 20.0, 30.0, 40.0):
        stats.count("answered", ms)
    stats.count("busy")
    assert (stats.batches, stats.mean_batch_size, stats.largest_batch) == (3, 2.333, 4)
    assert stats.requests()["answered"] == 4 and stats.requests()["busy"] == 1
    assert stats.latency_percentile(0.5) == 20.0
    assert stats.latency_percentile(0.95) == 40.0
    assert StatsRecorder().latency_percentile(0.5) is None


# -- MODEL_REPO_ID -----------------------------------------------------------------------------


def no_folders(_: str) -> bool:
    return False


def test_one_model_is_one_member() -> None:
    assert parse_model_spec("dandelin/vilt-b32-finetuned-vqa", is_folder=no_folders) == [
        MemberSpec("dandelin/vilt-b32-finetuned-vqa")
    ]


def test_an_ensemble_with_revisions_and_weights() -> None:
    members = parse_model_spec("org/a@v2:0.75, org/b:0.25,org/c@abc123", is_folder=no_folders)
    assert members == [
        MemberSpec("org/a", "v2", 0.75),
        MemberSpec("org/b", None, 0.25),
        MemberSpec("org/c", "abc123", 1.0),
    ]
    assert normalised_weights(members) == pytest.approx([0.375, 0.125, 0.5])


def test_model_revision_applies_to_members_that_name_none() -> None:
    members = parse_model_spec("org/a,org/b@pinned", default_revision="v1", is_folder=no_folders)
    assert [m.revision for m in members] == ["v1", "pinned"]


def test_a_folder_is_taken_as_is_even_with_a_colon_or_at_sign() -> None:
    folders = {"/models/odd:name", "/models/x@y"}
    members = parse_model_spec("/models/odd:name,/models/x@y:2", is_folder=folders.__contains__)
    assert members == [MemberSpec("/models/odd:name"), MemberSpec("/models/x@y", None, 2.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "MODEL_REPO_ID is empty"),
        ("org/a,,org/b", "has an empty entry"),
        ("org/a:heavy", "the weight after ':' must be a positive number, not 'heavy'"),
        ("org/a:0", "must be a positive number"),
        ("org/a:-1", "must be a positive number"),
        ("org/a@", "nothing after '@'"),
    ],
)
def test_unreadable_specs_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ModelNotFoundError, match=message):
        parse_model_spec(text, is_folder=no_folders)


def test_model_options_are_validated_and_case_insensitive() -> None:
    options = ModelOptions(model_backend="Transformers", quantize="INT8", device="CPU")  # type: ignore[arg-type]
    assert (options.model_backend, options.quantize, options.device) == ("transformers", "int8", "cpu")
    with pytest.raises(ValueError, match="quantize"):
        ModelOptions(quantize="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model_backend"):
        ModelOptions(model_backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_beams"):
        ModelOptions(num_beams=0)


def test_the_settings_read_the_model_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import Settings, SettingsError, load_settings

    monkeypatch.setenv("MODEL_BACKEND", "ONNX")
    monkeypatch.setenv("QUANTIZE", "int8")
    monkeypatch.setenv("NUM_BEAMS", "5")
    settings = load_settings(Settings)
    assert (settings.model_backend, settings.quantize, settings.num_beams) == ("onnx", "int8", 5)
    assert settings.section(ModelOptions).num_beams == 5
    monkeypatch.setenv("QUANTIZE", "fp4")
    with pytest.raises(SettingsError, match="QUANTIZE"):
        load_settings(Settings)


def test_the_engine_machinery_imports_no_torch() -> None:
    result = run_child("engine_imports")
    assert result.stdout.strip() == "False", result.stderr
