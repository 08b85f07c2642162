"""The web's one conversation step: an upload and a question become a ``ChatEvent``, and the core's
``Reply`` an HTTP status. The web app and ``POST /api/v1/answer`` both ask through here, so limits,
queueing, refusals and the prediction log are the chat core's, exactly as for chat users."""

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
    Outcome.REJECTED_TOO_LARGE: 413,
    Outcome.REJECTED_NOT_IMAGE: 415,
    Outcome.REJECTED_BAD_QUESTION: 422,
    Outcome.RATE_LIMITED: 429,
    Outcome.QUEUE_FULL: 429,
    Outcome.ERROR: 500,
    Outcome.BUSY: 503,
}


def http_status(outcome: Outcome) -> int:
    """400 for anything else a question cannot end in (a prompt, a missing image)."""
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

    async def ask(self, user: str, upload: Upload, question: str, *, top_k: int | None = None) -> Reply:
        """The core's reply; an unexpected failure is logged and becomes an apology (never raises)."""

        async def fetch(_: ImageRef) -> bytes:  # the image arrived with the question
            return upload.data

        image = ImageRef(
            "upload", size=len(upload.data), mime_type=upload.mime_type, file_name=upload.file_name
        )
        event = ChatEvent(
            platform=PLATFORM,
            chat_id=user,
            chat_type="web",
            private=True,
            user_id=user,
            addressed=True,
            fetch=fetch,
            text=question,
            images=(image,),
            top_k=top_k,
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
