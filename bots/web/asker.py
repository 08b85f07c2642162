"""The web's one conversation step: an upload and a question become a ``ChatEvent``, and the core's
``Reply`` an HTTP status. The web app and ``POST /api/v1/answer`` both ask through here, so limits,
queueing, refusals and the prediction log are the chat core's, exactly as for chat users: a request
without an image or a question too is refused by the core (the event is ``self_contained``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bots import replies
from bots.core import ChatCore
from bots.events import ChatEvent, ImageRef, Outcome, Platform, Reply

log = logging.getLogger(__name__)

PLATFORM: Platform = "web"

#: the HTTP status of each way a question can end
HTTP_STATUS: dict[Outcome, int] = {
    Outcome.ANSWERED: 200,
    Outcome.REJECTED_EMPTY_IMAGE: 400,
    Outcome.REJECTED_CORRUPT_IMAGE: 400,
    Outcome.REJECTED_IMAGE_SHAPE: 422,
    Outcome.REJECTED_BAD_INPUT: 400,
    Outcome.REJECTED_NO_IMAGE: 400,
    Outcome.REJECTED_TOO_LARGE: 413,
    Outcome.REJECTED_NOT_IMAGE: 415,
    Outcome.REJECTED_BAD_QUESTION: 422,
    Outcome.RATE_LIMITED: 429,
    Outcome.QUEUE_FULL: 429,
    Outcome.ERROR: 500,
    Outcome.BUSY: 503,
}


def http_status(outcome: Outcome) -> int:
    """400 for the turns that are not questions (a prompt: never expected from the web)."""
    return HTTP_STATUS.get(outcome, 400)


@dataclass(frozen=True)
class Upload:
    """An image as the browser or an API client sent it."""

    data: bytes
    mime_type: str | None = None  # as declared (None: the bytes decide)
    file_name: str | None = None


def user_of_ip(host: str | None) -> str:
    """A web user without an API key is its client address (behind a trusted proxy, the real one)."""
    return f"ip:{host or 'unknown'}"


def user_of_key(name: str) -> str:
    return f"key:{name}"


class WebAsker:
    """Asks the chat core on behalf of a web user (``ip:…`` or ``key:…``)."""

    def __init__(self, core: ChatCore) -> None:
        self.core = core

    async def ask(
        self, user: str, upload: Upload | None, question: str, *, top_k: int | None = None
    ) -> Reply:
        """The core's reply (``upload`` None: the request came without an image); an unexpected
        failure is logged and becomes an apology (never raises)."""

        async def fetch(_: ImageRef) -> bytes:  # the image arrived with the question
            assert upload is not None
            return upload.data

        images: tuple[ImageRef, ...] = ()
        if upload is not None:
            size, mime_type, file_name = len(upload.data), upload.mime_type, upload.file_name
            images = (ImageRef("upload", size=size, mime_type=mime_type, file_name=file_name),)
        event = ChatEvent(
            platform=PLATFORM,
            chat_id=user,
            chat_type="web",
            private=True,
            user_id=user,
            addressed=True,
            fetch=fetch,
            text=question,
            images=images,
            top_k=top_k,
            self_contained=True,
        )
        try:
            reply = await self.core.handle(event)
        except Exception:
            log.exception("web: unexpected error while answering a question")
            return Reply(replies.ERROR, Outcome.ERROR)
        if reply is None:  # cannot happen: a private, addressed event always gets a reply
            log.error("web: the chat core gave no reply to an addressed question")
            return Reply(replies.ERROR, Outcome.ERROR)
        return reply
