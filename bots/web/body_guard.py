"""Every request body bounded while it is read, in size and in time, on every route.

Route handlers (ours, Gradio's, Starlette's parsers) read bodies whole before they can judge them:
a 100 MB JSON body would be held in memory, and a client that stops sending mid-body would hold
its connection for as long as it likes. This middleware sits in front of all of them:

- a body over its route's cap is answered 413 at once: unread when its ``Content-Length`` says
  so, or as soon as a streamed body passes the cap; the connection is then closed;
- a body that has not fully arrived ``timeout_s`` after the request began is answered 408;
- a client that leaves mid-request is one INFO line, not a traceback: the handler below sees a
  disconnect (Starlette raises ``ClientDisconnect``) and whatever it raises then is ours to end.

Once the answer is ours, the handler is told the client left (``http.disconnect``) and whatever
it still sends is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bots import replies

log = logging.getLogger(__name__)

#: the cap of a route with none of its own: JSON bodies (Gradio's queue, a webhook-less route)
DEFAULT_MAX_BYTES = 64 * 1024


class BodyGuard:
    """ASGI middleware; ``caps`` maps exact paths to their cap (uploads), others get ``default_max_bytes``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        caps: Mapping[str, int],
        timeout_s: float,
        default_max_bytes: int = DEFAULT_MAX_BYTES,
        upload_overhead_bytes: int = 0,
    ) -> None:
        if timeout_s <= 0 or default_max_bytes < 0:
            raise ValueError("timeout_s must be positive and default_max_bytes not negative")
        self.app = app
        self.caps = dict(caps)
        self.default_max_bytes = default_max_bytes
        self.timeout_s = timeout_s
        self.upload_overhead_bytes = upload_overhead_bytes

    def cap_of(self, path: str) -> int:
        return self.caps.get(path.rstrip("/") or "/", self.default_max_bytes)

    def too_large(self, path: str, cap: int) -> JSONResponse:
        log.info("web: refused a request body over %d bytes to %s (413)", cap, path)
        if path in self.caps:  # an upload route: the user's image was too large
            message = replies.upload_too_large(cap - self.upload_overhead_bytes)
        else:
            message = replies.request_too_large(cap)
        return _refusal(413, message, "rejected:too_large")

    def too_slow(self, path: str) -> JSONResponse:
        log.info("web: the body of a request to %s did not arrive within %.0f s (408)", path, self.timeout_s)
        return _refusal(408, replies.REQUEST_TIMEOUT, "rejected:timeout")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        cap = self.cap_of(path)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await self.too_large(path, cap)(scope, receive, send)
            return
        request = _GuardedRequest(self, scope, receive, send, cap)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception as exc:
            if request.answered:
                return  # the handler failed on the disconnect we gave it: the answer was ours
            if request.left or isinstance(exc, ClientDisconnect):
                log.info("web: a client left during its request to %s", path)
                return
            raise


class _GuardedRequest:
    """One request's body, counted and timed as the handler reads it; past the cap or the deadline
    the guard answers (413/408) and the handler is told the client left."""

    def __init__(self, guard: BodyGuard, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        self.guard, self.scope, self._receive, self._send = guard, scope, receive, send
        self.path, self.cap = scope["path"], cap
        self.deadline = asyncio.get_running_loop().time() + guard.timeout_s
        self.seen = 0
        self.body_done = False
        self.started = False  # the handler began its response
        self.answered = False  # we answered (413/408): the handler is told the client left
        self.left = False  # the client went away

    async def answer(self, response: JSONResponse) -> None:
        self.answered = True
        if not self.started:
            await response(self.scope, _nothing, self._send)

    async def receive(self) -> Message:
        if self.answered or self.left:
            return {"type": "http.disconnect"}
        if self.body_done:  # (a streaming response listens for the client leaving: no deadline)
            message = await self._receive()
        else:
            try:
                async with asyncio.timeout_at(self.deadline):
                    message = await self._receive()
            except TimeoutError:
                await self.answer(self.guard.too_slow(self.path))
                return {"type": "http.disconnect"}
        if message["type"] == "http.disconnect":
            self.left = True
        elif message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
            if self.seen > self.cap:
                await self.answer(self.guard.too_large(self.path, self.cap))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _refusal(status: int, message: str, outcome: str) -> JSONResponse:
    # the rest of the body is not read: the connection cannot carry another request
    headers = {"Connection": "close"}
    return JSONResponse({"error": message, "outcome": outcome}, status_code=status, headers=headers)
