"""Gradio's event routes take only what the page itself sends.

``gr.mount_gradio_app`` never marks the Blocks as launched, and Gradio runs its own check that a
file path came from a user's upload only for launched Blocks: without it, a request naming
``/etc/passwd`` as the image makes the server copy that file and answer about it. ``mark_launched``
turns that check on. In front of Gradio, ``GradioGuard`` refuses, before Gradio parses them, the
event requests (``queue/join``, ``run``, ``call``, ``api``) that the page never sends: an event
that does not exist (Gradio answers 500 with a traceback), the wrong number of inputs, and any
file that is not a regular file inside Gradio's upload folder (a path, a symlink, a device, a
folder, a URL). Each refusal is a 4xx with a neutral message and one log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bots import replies

log = logging.getLogger(__name__)

#: Gradio's routes that start an event, with the API name where the route carries one
_EVENT_ROUTE = re.compile(r"^/gradio_api/(?:queue/join|(?:run|api|call|call/v2)/(?P<api_name>[^/]+))/?$")
#: the page's stream of queue messages (server-sent events)
_QUEUE_STREAM = "/gradio_api/queue/data"
#: a file value nests no deeper than this inside an input (gallery, chat message...)
_MAX_DEPTH = 8


class RefusedEvent(Exception):
    """A request the page never sends; ``status`` is what it is answered with."""

    def __init__(self, status: int, why: str, message: str = replies.WEB_BAD_REQUEST) -> None:
        super().__init__(why)
        self.status = status
        self.message = message


def mark_launched(blocks: gr.Blocks) -> None:
    """Turn on Gradio's own checks that run only for launched Blocks (files must be uploads)."""
    blocks.has_launched = True


def upload_folder() -> Path:
    """Where Gradio stores uploads (``GRADIO_TEMP_DIR``), as Gradio itself names it."""
    return Path(gr.utils.get_upload_folder()).absolute()


def check_upload(path: object, folder: Path) -> Path:
    """``path`` when it names a regular file that Gradio stored inside ``folder`` (not a symlink,
    nothing that leads out of the folder); else ``RefusedEvent``. Never opens the file."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise RefusedEvent(400, "a file value without a usable path", replies.WEB_NOT_AN_UPLOAD)
    given = Path(path)
    inside = given.is_absolute() and os.path.normpath(given) == str(given)
    inside = inside and (given.is_relative_to(folder) or given.is_relative_to(folder.resolve()))
    if not inside or not Path(os.path.realpath(given)).is_relative_to(folder.resolve()):
        raise RefusedEvent(403, "a file outside the upload folder", replies.WEB_NOT_AN_UPLOAD)
    try:
        mode = os.lstat(given).st_mode
    except OSError as exc:
        raise RefusedEvent(410, "an upload that is gone", replies.DOWNLOAD_FAILED) from exc
    if not stat.S_ISREG(mode):
        raise RefusedEvent(403, "an upload that is not a regular file", replies.WEB_NOT_AN_UPLOAD)
    return given


def read_upload(path: object, folder: Path, max_bytes: int) -> bytes:
    """The bytes of an upload that passes ``check_upload``, read without following a symlink or
    blocking on a device, and refused (413) before reading when larger than ``max_bytes``.
    Blocking: run it in a thread."""
    given = check_upload(path, folder)
    try:
        fd = os.open(given, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:  # gone since, or swapped for a symlink
        why = f"an upload that cannot be opened ({type(exc).__name__})"
        raise RefusedEvent(410, why, replies.DOWNLOAD_FAILED) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RefusedEvent(403, "an upload that is not a regular file", replies.WEB_NOT_AN_UPLOAD)
        if info.st_size > max_bytes:
            raise RefusedEvent(413, "an upload over the size cap", replies.too_large(info.st_size, max_bytes))
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read it
        raise RefusedEvent(413, "an upload over the size cap", replies.too_large(len(data), max_bytes))
    return data


def _file_values(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict that names a ``path`` or ``url`` (what Gradio would treat as a file), any depth."""
    if depth > _MAX_DEPTH:
        raise RefusedEvent(400, "inputs nested too deeply")
    if isinstance(value, dict):
        if "path" in value or "url" in value:
            yield value
            return
        for item in value.values():
            yield from _file_values(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _file_values(item, depth + 1)


class GradioGuard:
    """ASGI middleware in front of the mounted Gradio app; ``blocks`` is the mounted page."""

    def __init__(self, app: ASGIApp, *, blocks: gr.Blocks, folder: Path | None = None) -> None:
        self.app = app
        self.blocks = blocks
        self.folder = folder or upload_folder()

    def _function(self, api_name: str | None, fn_index: object) -> Any:
        fns = self.blocks.fns
        if fn_index is not None or api_name is None:
            if not isinstance(fn_index, int) or isinstance(fn_index, bool) or fn_index not in fns:
                raise RefusedEvent(422, f"an event that does not exist ({type(fn_index).__name__})")
            return fns[fn_index]
        for fn in fns.values():
            if fn.api_name == api_name and fn.api_visibility != "private":
                return fn
        raise RefusedEvent(404, "an API name that does not exist")

    def check(self, api_name: str | None, body: bytes) -> None:
        """Raises ``RefusedEvent`` unless the page could have sent this body."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RefusedEvent(400, "a body that is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise RefusedEvent(422, "a body without a list of inputs")
        fn = self._function(api_name, data.get("fn_index"))
        inputs = data["data"]
        if len(inputs) != len(fn.inputs):
            raise RefusedEvent(422, f"{len(inputs)} inputs for an event that takes {len(fn.inputs)}")
        for block, value in zip(fn.inputs, inputs, strict=True):
            # a component that takes a structured value (an image's FileData) gets a dict or nothing
            if getattr(block, "data_model", None) is not None and not isinstance(value, dict | None):
                raise RefusedEvent(422, f"a {type(value).__name__} for a {type(block).__name__} input")
        for value in _file_values(inputs):
            check_upload(value.get("path"), self.folder)

    def _has_session(self, query: bytes) -> bool:
        """Gradio's queue stream for a session that joined nothing fails after its response began
        (a traceback in the log): such a stream is refused before it starts."""
        sessions = parse_qs(query.decode("latin-1")).get("session_hash", [])
        # Gradio's own record of the sessions with events (a version without it: let Gradio judge)
        pending = getattr(getattr(self.blocks, "_queue", None), "pending_messages_per_session", None)
        if pending is None:
            return True
        return len(sessions) == 1 and sessions[0] in pending

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, refused: RefusedEvent) -> None:
        log.info("web app: refused a request to %s (%d): %s", scope["path"], refused.status, refused)
        response = JSONResponse({"detail": refused.message}, status_code=refused.status)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].rstrip("/") == _QUEUE_STREAM and not self._has_session(scope["query_string"]):
            await self._refuse(scope, receive, send, RefusedEvent(404, "a queue stream with no event"))
            return
        match = _EVENT_ROUTE.match(scope["path"])
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left (or the body guard answered): nothing to run
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            self.check(match["api_name"], body)
        except RefusedEvent as refused:
            await self._refuse(scope, receive, send, refused)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
