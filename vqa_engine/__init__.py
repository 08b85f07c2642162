"""Everything about the model, nothing about chat."""

from vqa_engine.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    InvalidQuestionError,
    ModelPackageError,
    UnsafePickleError,
    UnsupportedImageError,
    VQAError,
    VQAInputError,
)
from vqa_engine.prediction import Candidate, Prediction

__all__ = [
    "Candidate",
    "CorruptImageError",
    "EmptyImageError",
    "ImageTooLargeError",
    "InvalidQuestionError",
    "ModelPackageError",
    "Prediction",
    "UnsafePickleError",
    "UnsupportedImageError",
    "VQAError",
    "VQAInputError",
]
