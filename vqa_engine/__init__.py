"""Everything about the model, nothing about chat."""

from typing import TYPE_CHECKING

from vqa_engine.checks.options import CheckOptions
from vqa_engine.errors import (
    CorruptImageError,
    EmptyImageError,
    EngineBusyError,
    EngineClosedError,
    EngineError,
    EngineTimeoutError,
    ImageShapeError,
    ImageTooLargeError,
    InferenceError,
    InvalidQuestionError,
    ModelAccessError,
    ModelDownloadError,
    ModelNotFoundError,
    ModelPackageError,
    ModelServerError,
    UnsafePickleError,
    UnsupportedImageError,
    VQAError,
    VQAInputError,
)
from vqa_engine.model_info import ModelInfo
from vqa_engine.options import EngineOptions, ModelOptions
from vqa_engine.prediction import Candidate, Prediction

if TYPE_CHECKING:
    from vqa_engine.loading.loader import load_backend
    from vqa_engine.serving.engine import EngineStats, VQAEngine


def __getattr__(name: str) -> object:
    """The engine and the loader: loaded on first use, so that importing the errors (as the chat
    adapters do) stays light."""
    if name in ("VQAEngine", "EngineStats"):
        from vqa_engine.serving import engine

        return getattr(engine, name)
    if name == "load_backend":
        from vqa_engine.loading.loader import load_backend

        return load_backend
    raise AttributeError(f"module 'vqa_engine' has no attribute {name!r}")


__all__ = [
    "Candidate",
    "CheckOptions",
    "CorruptImageError",
    "EmptyImageError",
    "EngineBusyError",
    "EngineClosedError",
    "EngineError",
    "EngineOptions",
    "EngineStats",
    "EngineTimeoutError",
    "ImageShapeError",
    "ImageTooLargeError",
    "InferenceError",
    "InvalidQuestionError",
    "ModelAccessError",
    "ModelDownloadError",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelOptions",
    "ModelPackageError",
    "ModelServerError",
    "Prediction",
    "UnsafePickleError",
    "UnsupportedImageError",
    "VQAEngine",
    "VQAError",
    "VQAInputError",
    "load_backend",
]
