"""The chat core the tests talk to, built as the service builds it (``service.builders.build_core``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bots.options import ChatOptions
from config import Settings, load_settings
from service.builders import build_core

if TYPE_CHECKING:
    from bots.core import ChatCore
    from bots.prediction_log import PredictionLog
    from vqa_engine.serving.engine import VQAEngine


def declared_defaults() -> dict[str, object]:
    """The chat's settings at their declared defaults: a developer's environment or ``.env``
    (``RATE_LIMIT=...``) must not change what the tests expect."""
    fields = {**ChatOptions.model_fields, "max_image_bytes": Settings.model_fields["max_image_bytes"]}
    return {name: field.default for name, field in fields.items()}


def build_test_core(
    engine: VQAEngine,
    prediction_log: PredictionLog,
    *,
    platforms: Callable[[], Sequence[str]] = tuple,
    health: Callable[[], Sequence[str]] = tuple,
    **settings: object,
) -> ChatCore:
    """The service's chat core around ``engine``, in this process's memory; ``settings`` (by their
    names in lower case: ``rate_limit="2/minute"``, ``admin_ids="telegram:1"``) override the defaults."""
    chosen = load_settings(Settings, **{**declared_defaults(), **settings})
    return build_core(chosen, engine, prediction_log, platforms=platforms, health=health)
