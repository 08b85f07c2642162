"""``POST <path of TELEGRAM_WEBHOOK_URL>``: Telegram's updates, on the HTTP server.

Telegram sends the secret token registered with ``setWebhook`` in
``X-Telegram-Bot-Api-Secret-Token``; a request without it, or with another, gets 403 and is not
read. An update goes to the Telegram adapter through a ``WebhookInbox``: the route exists from
the moment the server starts, the adapter only once the model is loaded, so until then (and from
the moment the adapter stops) the route answers 503 and Telegram delivers the update again later,
to this replica or another. 200 means the update is this replica's (or was received already).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bots.telegram_bot import BadUpdate, NotReceiving

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: an update is a few kilobytes; anything far larger is not one (the body guard enforces it)
MAX_UPDATE_BYTES = 1024 * 1024
#: an update nests a dozen levels (a reply's message's entities...); far deeper is not one
MAX_UPDATE_DEPTH = 32
#: when Telegram may try again while the bot is starting or stopping
RETRY_AFTER_S = 5

Receiver = Callable[[dict[str, object]], Awaitable[bool]]


class WebhookInbox:
    """Between the route (built with the server) and the Telegram adapter (built later)."""

    def __init__(self) -> None:
        self.receiver: Receiver | None = None


def _status(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"ok": status == 200, "description": message}, status_code=status, headers=headers)


def telegram_webhook_router(path: str, *, secret: str, inbox: WebhookInbox) -> APIRouter:
    """The webhook route at ``path``; ``secret`` is the one registered with ``setWebhook``."""
    router = APIRouter()
    expected = secret.encode()

    @router.post(path, include_in_schema=False)
    async def telegram_webhook(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):  # (the same time whatever part was right)
            client = request.client.host if request.client else "?"
            what = "a wrong" if given else "no"
            log.info("telegram webhook: refused a request from %s with %s secret token (403)", client, what)
            return _status(403, "Forbidden: wrong or missing secret token")
        body = await request.body()  # (bounded by the body guard: MAX_UPDATE_BYTES)
        receiver = inbox.receiver
        if receiver is None:
            return _status(503, "starting or stopping; send it again", **{"Retry-After": str(RETRY_AFTER_S)})
        try:
            await receiver(parse_update(body))
        except NotReceiving:
            return _status(503, "starting or stopping; send it again", **{"Retry-After": str(RETRY_AFTER_S)})
        except BadUpdate as exc:
            log.warning("telegram webhook: refused a body that is not an update (400): %s", exc)
            return _status(400, "Bad Request: not an update")
        return _status(200, "ok")

    return router


def parse_update(body: bytes) -> dict[str, object]:
    """The update in ``body``, its shape checked before anything uses it; ``BadUpdate`` if none."""
    try:
        data = json.loads(body)
    except RecursionError as exc:
        raise BadUpdate("nested too deeply") from exc
    except ValueError as exc:  # (json's and UTF-8's errors)
        raise BadUpdate(f"not JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise BadUpdate("not a JSON object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise BadUpdate("no update_id")
    if _depth(data) > MAX_UPDATE_DEPTH:
        raise BadUpdate("nested too deeply")
    return data


def _depth(value: object) -> int:
    """How deeply lists and objects nest in ``value`` (without recursion: it may be deep)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_UPDATE_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest
