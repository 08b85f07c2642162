"""What a chat request is once the platform is stripped away, and what comes back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Platform = Literal["telegram", "discord"]


@dataclass(frozen=True)
class ImageRef:
    """An image the user sent, not yet downloaded: size and type are checked before ``fetch``.

    Holding a reference (not the bytes) keeps per-user image memory small; ``fetch`` downloads
    on demand (Telegram file ids and Discord attachment URLs stay valid for a while).
    """

    fetch: Callable[[], Awaitable[bytes]]
    size: int | None = None  # bytes, as the platform declares it
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One question about one image from one user."""

    platform: Platform
    user_id: str
    chat_id: str
    chat_type: str  # "private", "group", "supergroup", "channel", "dm", "guild"
    question: str
    image: ImageRef


@dataclass(frozen=True)
class Reply:
    """The one reply a request gets, and how it ended (for the prediction log and the tests)."""

    text: str
    outcome: str  # answered, rate_limited, busy, rejected:<reason>, error
    details: dict[str, object] = field(default_factory=dict, compare=False)
