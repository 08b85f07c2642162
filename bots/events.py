"""A chat turn once the platform is stripped away (``ChatEvent``), and what comes back (``Reply``).

Adapters build one ``ChatEvent`` per platform message or command and send the ``Reply`` the core
returns; everything in between is decided by ``bots.core`` once, for every platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from vqa_engine import Prediction

Platform = Literal["telegram", "discord", "web"]


class Command(StrEnum):
    """Commands every front end offers (``/ask`` is a question, not a command)."""

    START = "start"
    HELP = "help"
    ABOUT = "about"  # what the model knows and how well
    NEW = "new"  # forget the last image and the conversation about it
    HEALTH = "health"
    STATS = "stats"


class Button(StrEnum):
    """The buttons under an answer."""

    CHART = "chart"  # the top-5 confidence chart, as a picture
    GOOD = "good"  # 👍
    BAD = "bad"  # 👎


@dataclass(frozen=True)
class Press:
    """A user pressed one of the buttons under the answer ``request_id``."""

    button: Button
    request_id: str


class Outcome(StrEnum):
    """How a chat turn ended. Questions are logged with these values in the prediction log."""

    ANSWERED = "answered"
    RATE_LIMITED = "rate_limited"  # over RATE_LIMIT
    QUEUE_FULL = "queue_full"  # more of this user's questions waiting than MAX_QUEUED_PER_USER
    BUSY = "busy"  # the engine is full, timed out, or shutting down: try again later
    ERROR = "error"  # a download or the model failed
    REJECTED_EMPTY_IMAGE = "rejected:empty_image"
    REJECTED_NOT_IMAGE = "rejected:not_image"
    REJECTED_TOO_LARGE = "rejected:too_large"
    REJECTED_CORRUPT_IMAGE = "rejected:corrupt_image"
    REJECTED_IMAGE_SHAPE = "rejected:image_shape"  # too thin or too small to see a shape
    REJECTED_BAD_QUESTION = "rejected:bad_question"  # also: none at all, on the web
    REJECTED_BAD_INPUT = "rejected:bad_input"
    REJECTED_NO_IMAGE = "rejected:no_image"  # a web request without an image
    # not questions: never in the prediction log
    PROMPT = "prompt"  # an image without a question: "what would you like to know?"
    NO_IMAGE = "no_image"  # a question without any image to ask about
    NEED_QUESTION = "need_question"  # an image to ask about, but no question
    HIDDEN_IMAGE = "hidden_image"  # a reply to an image the platform does not show the bot
    HELP = "help"
    ADMIN = "admin"  # /health or /stats for an admin
    NOT_ADMIN = "not_admin"  # /health or /stats for anyone else
    CHART = "chart"  # the chart of an answer
    FEEDBACK = "feedback"  # a 👍 or 👎 recorded
    EXPIRED = "expired"  # a button under an answer too old to remember
    NEW_CONVERSATION = "new_conversation"  # /new: the last image and its turns forgotten

    @property
    def is_question(self) -> bool:
        """A question about an image was asked (whatever became of it): it gets a log line."""
        return self not in _NOT_QUESTIONS


_NOT_QUESTIONS = frozenset(
    {
        Outcome.PROMPT,
        Outcome.NO_IMAGE,
        Outcome.NEED_QUESTION,
        Outcome.HIDDEN_IMAGE,
        Outcome.HELP,
        Outcome.ADMIN,
        Outcome.NOT_ADMIN,
        Outcome.CHART,
        Outcome.NEW_CONVERSATION,
        Outcome.FEEDBACK,
        Outcome.EXPIRED,
    }
)


@dataclass(frozen=True)
class ImageRef:
    """An image a user sent, not yet downloaded: plain data, so it can be remembered anywhere.

    ``source`` is what the platform needs to fetch it again (a Telegram file id, a Discord
    attachment URL); size and type, as the platform declares them, are checked before any download.
    """

    source: str
    size: int | None = None  # bytes
    mime_type: str | None = None  # None: undeclared, the bytes decide
    file_name: str | None = None
    width: int | None = None
    height: int | None = None


#: downloads an image of the adapter's platform (raises on network trouble or an expired file)
Fetch = Callable[[ImageRef], Awaitable[bytes]]


@dataclass(frozen=True)
class ChatEvent:
    """One message or command, as every platform can say it."""

    platform: Platform
    chat_id: str
    chat_type: str  # as the platform names it (for the log): private, group, supergroup, dm, guild, web
    private: bool  # a one-to-one chat with the bot
    user_id: str
    addressed: bool  # meant for the bot: a private chat, a mention, /ask, a reply to the bot
    fetch: Fetch
    text: str = ""  # what the user wrote, without the bot's own mention
    images: tuple[ImageRef, ...] = ()  # what the message carries (an album: several)
    replied_image: ImageRef | None = None  # the image of the message this one replies to
    replied_hidden: bool = False  # it replies to a message whose image the platform hides from us
    command: Command | None = None
    press: Press | None = None  # a button under an earlier answer
    top_k: int | None = None  # candidates wanted (the web API's top_k); None: the engine's TOP_K
    # the request carries everything it asks about (the web): no remembered image, no prompt for a
    # question; a missing image or question is a refused question, logged like any other
    self_contained: bool = False


@dataclass(frozen=True)
class Reply:
    """The one message a turn gets."""

    text: str
    outcome: Outcome
    private: bool = False  # meant for the asker only (Discord sends it ephemeral)
    predictions: tuple[Prediction, ...] = ()  # what was answered, in order
    request_id: str | None = None  # an answer's id: its buttons and its feedback refer to it
    buttons: tuple[Button, ...] = ()  # to show under the reply
    image: bytes | None = None  # a PNG to send (the chart), with ``text`` as its caption
    retry_after_s: int | None = None  # rate limited, queue full or busy: when to ask again (Retry-After)
