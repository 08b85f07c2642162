"""Typed errors. Every ``VQAInputError`` message is written to be shown to an end user as is."""

from __future__ import annotations


class VQAError(Exception):
    """Base class of every error raised by ``vqa_engine``."""


class VQAInputError(VQAError, ValueError):
    """The caller's input (image or question) cannot be used; the message is safe to show a user."""


class EmptyImageError(VQAInputError):
    """The image has no bytes at all."""


class UnsupportedImageError(VQAInputError):
    """The bytes are not an image we can read (a PDF, a video, an unknown format...)."""


class ImageTooLargeError(VQAInputError):
    """The image is over the byte or pixel cap (this also stops decompression bombs)."""


class CorruptImageError(VQAInputError):
    """The file claims to be an image but cannot be decoded (truncated or damaged)."""


class ImageShapeError(VQAInputError):
    """The picture is too thin or too small to hold a shape a model could see (4000×1, 3×3)."""


class InvalidQuestionError(VQAInputError):
    """The question is empty, too long, or carries control characters."""


class ModelPackageError(VQAError):
    """A model package is missing files, is inconsistent, or cannot be loaded."""


class UnsafePickleError(ModelPackageError):
    """A pickle file tried to construct something other than plain containers."""


class ModelNotFoundError(ModelPackageError):
    """No such model: not a local folder, no such Hub repo or revision, or a required file is absent."""


class ModelAccessError(ModelPackageError):
    """The Hub refused access: a private repo without (or with a wrong) token, or a gated repo."""


class ModelDownloadError(ModelPackageError):
    """The Hub could not be reached (or the download broke) and no usable copy is cached."""


class EngineError(VQAError):
    """The engine could not answer right now; the message is safe to show a user.

    ``retry_after_s`` is when asking again may work, in seconds, as the message words it (an HTTP
    front end's ``Retry-After``); it is given where the message is written.
    """

    retry_after_s: int | None = None

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class EngineBusyError(EngineError):
    """Too many questions are waiting: refused at once rather than queued without bound."""


class EngineTimeoutError(EngineError):
    """A question waited longer than the per-request timeout."""


class EngineClosedError(EngineError):
    """The engine is shutting down (or was never started) and takes no new questions."""


class InferenceError(EngineError):
    """The model itself failed on this input (other questions in its batch were still answered);
    asking the same again will not help, so it carries no ``retry_after_s``."""


class ModelServerError(InferenceError):
    """The model server (``REMOTE_BASE_URL``) did not answer, or refused: no fault of the
    question, so the whole batch gets it, and it says when asking again may work."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type when there is none), cut to
    ``limit`` characters: a library's multi-line error inside our one-line messages."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."
