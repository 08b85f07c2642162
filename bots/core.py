"""The platform-free chat core: question -> limits -> download -> engine -> reply text -> log line.

Adapters turn a platform event into a ``ChatRequest`` and send back ``Reply.text``; everything in
between lives here, once, for every platform.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Protocol

from bots import replies
from bots.health import format_health, format_stats
from bots.memory import ImageMemory
from bots.prediction_log import PredictionLog
from bots.ratelimit import UserLimiter
from bots.requests import ChatRequest, ImageRef, Reply
from vqa_engine import (
    CorruptImageError,
    EmptyImageError,
    EngineError,
    ImageTooLargeError,
    InferenceError,
    InvalidQuestionError,
    Prediction,
    UnsupportedImageError,
    VQAInputError,
)

if TYPE_CHECKING:
    from vqa_engine.engine import EngineStats

log = logging.getLogger(__name__)

SUPPORTED = "a PNG, JPEG, WebP, GIF or BMP image"
_REJECT_REASONS: dict[type[VQAInputError], str] = {
    EmptyImageError: "empty_image",
    UnsupportedImageError: "not_image",
    ImageTooLargeError: "too_large",
    CorruptImageError: "corrupt_image",
    InvalidQuestionError: "bad_question",
}
_MIME_NAMES = {
    "application/pdf": "a PDF",
    "application/zip": "a ZIP archive",
    "application/x-zip-compressed": "a ZIP archive",
    "image/svg+xml": "an SVG drawing",
    "image/heic": "a HEIC photo",
    "image/heif": "a HEIF photo",
    "image/tiff": "a TIFF image",
    "application/msword": "a Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "a Word document",
}
_IMAGE_MIMES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif", "image/bmp"})
_COMMAND = re.compile(r"^/ask(@\w+)?\b", re.IGNORECASE)


class Answerer(Protocol):
    """What the core needs from ``vqa_engine.VQAEngine``."""

    async def answer(self, image: bytes, question: str, *, top_k: int | None = None) -> Prediction: ...

    def stats(self) -> EngineStats: ...


class ChatAdapter(Protocol):
    """A platform adapter as ``main.py`` drives it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def extract_question(text: str | None, *, bot_username: str | None = None) -> str:
    """The question in a caption or message: without ``/ask``, the bot's @mention, extra spaces."""
    if not text:
        return ""
    text = _COMMAND.sub("", text.strip(), count=1)
    if bot_username:
        text = re.sub(rf"@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def describe_mime(mime_type: str) -> str:
    """``a PDF``, ``a video``... for a declared type that is not an image we read."""
    mime_type = mime_type.lower()
    if mime_type in _MIME_NAMES:
        return _MIME_NAMES[mime_type]
    for prefix, name in (("video/", "a video"), ("audio/", "an audio file"), ("text/", "a text file")):
        if mime_type.startswith(prefix):
            return name
    return f"a {mime_type} file"


def human_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def sentence(message: str) -> str:
    """Engine messages are lower-case clauses; a chat reply starts with a capital and ends with a stop."""
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


class ChatCore:
    """One per process, shared by every adapter (built in ``main.py``)."""

    def __init__(
        self,
        engine: Answerer,
        *,
        limiter: UserLimiter,
        prediction_log: PredictionLog,
        memory: ImageMemory,
        admins: frozenset[tuple[str, str]] = frozenset(),
        max_image_bytes: int = 20 * 2**20,
    ) -> None:
        self.engine = engine
        self.limiter = limiter
        self.prediction_log = prediction_log
        self.memory = memory
        self.admins = admins
        self.max_image_bytes = max_image_bytes
        self.platforms: list[str] = []  # adapters register themselves, for /health
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def is_admin(self, platform: str, user_id: str) -> bool:
        return (platform, str(user_id)) in self.admins

    # -- questions --------------------------------------------------------------------------

    async def ask(self, request: ChatRequest) -> Reply:
        """Answer one request: always exactly one reply, and one log line."""
        started = time.perf_counter()
        reply, prediction, size = await self._ask(request)
        latency_ms = (time.perf_counter() - started) * 1000
        self.outcomes[(request.platform, reply.outcome)] += 1
        entry = self.prediction_log.record(
            platform=request.platform,
            chat_type=request.chat_type,
            user_id=request.user_id,
            question=request.question,
            outcome=reply.outcome,
            latency_ms=latency_ms,
            prediction=prediction,
            image_bytes=size,
            model_revision=self._revision(),
        )
        log.info(
            "%s %s user=%s outcome=%s latency=%.0fms",
            request.platform,
            request.chat_type,
            entry["user"],
            reply.outcome,
            latency_ms,
        )
        return Reply(reply.text, reply.outcome, {**reply.details, "latency_ms": latency_ms})

    async def _ask(self, request: ChatRequest) -> tuple[Reply, Prediction | None, int | None]:
        admin = self.is_admin(request.platform, request.user_id)
        decision = self.limiter.check(request.platform, request.user_id, admin=admin)
        if not decision.allowed:
            if decision.reason == "in_flight":
                return Reply(replies.IN_FLIGHT, "rate_limited"), None, None
            return (
                Reply(replies.rate_limited(decision.retry_after_s, str(self.limiter.rate)), "rate_limited"),
                None,
                None,
            )
        with self.limiter.in_flight(request.platform, request.user_id):
            refusal = self.check_image(request.image)
            if refusal is not None:
                return refusal, None, request.image.size
            try:
                data = await request.image.fetch()
            except Exception as exc:  # network trouble or an expired file: the user can resend
                log.warning("could not download an image from %s: %s", request.platform, type(exc).__name__)
                return Reply("I couldn't download that image; please send it again.", "error"), None, None
            try:
                prediction = await self.engine.answer(data, request.question)
            except VQAInputError as exc:
                reason = _REJECT_REASONS.get(type(exc), "bad_input")
                return Reply(sentence(str(exc)), f"rejected:{reason}"), None, len(data)
            except InferenceError as exc:
                return Reply(sentence(str(exc)), "error"), None, len(data)
            except EngineError as exc:  # busy, timed out, shutting down: try again later
                return Reply(sentence(str(exc)), "busy"), None, len(data)
            except Exception:
                log.exception("unexpected error while answering a %s question", request.platform)
                return Reply(replies.ERROR, "error"), None, len(data)
        return Reply(replies.format_prediction(prediction), "answered"), prediction, len(data)

    def check_image(self, image: ImageRef) -> Reply | None:
        """Refuse, before downloading, what the platform already tells us we cannot use."""
        if image.size is not None and image.size > self.max_image_bytes:
            limit = human_bytes(self.max_image_bytes)
            return Reply(
                f"That image is larger than {limit} ({human_bytes(image.size)}); please send a smaller one.",
                "rejected:too_large",
            )
        mime = (image.mime_type or "").lower()
        if mime and mime not in _IMAGE_MIMES and mime != "application/octet-stream":  # that one: read it
            return Reply(
                f"That file is {describe_mime(mime)}, not an image I can read; please send {SUPPORTED}.",
                "rejected:not_image",
            )
        return None

    def refuse(self, request: ChatRequest, reply: Reply) -> Reply:
        """Log a request the adapter answered itself (e.g. a file refused before any download)."""
        self.outcomes[(request.platform, reply.outcome)] += 1
        self.prediction_log.record(
            platform=request.platform,
            chat_type=request.chat_type,
            user_id=request.user_id,
            question=request.question,
            outcome=reply.outcome,
            latency_ms=0.0,
            image_bytes=request.image.size,
            model_revision=self._revision(),
        )
        return reply

    # -- admin ------------------------------------------------------------------------------

    def health_text(self) -> str:
        return format_health(self.engine.stats(), platforms=self.platforms)

    def stats_text(self) -> str:
        return format_stats(self.engine.stats(), self.outcomes, remembered_images=len(self.memory))

    def _revision(self) -> str | None:
        try:
            stats = self.engine.stats()
        except Exception:
            return None
        return stats.revision or stats.model_id or None
