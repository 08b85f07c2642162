"""The HTTP routes beside the web app: ``POST /api/v1/answer``, ``/healthz``, ``/readyz``, ``/metrics``.

``/api/v1/answer`` turns a multipart upload into a question for the chat core (``WebAsker``) and
its reply into JSON: exactly ``Prediction.to_dict()`` (what ``main.py ask --json`` prints) when
answered, else ``{"error": <the user's message>, "outcome": ...}`` with the status of
``asker.HTTP_STATUS`` and, when rate limited, queued too deep or busy, ``Retry-After``: the seconds
the core's reply carries, which come from the refusal itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from bots import replies
from bots.events import Reply
from bots.web.asker import PLATFORM, Upload, WebAsker, http_status, user_of_ip, user_of_key
from bots.web.metrics import Metrics
from vqa_engine.options import MAX_TOP_K

log = logging.getLogger(__name__)

#: room for the question, top_k and the multipart framing beside an image of MAX_IMAGE_BYTES
FORM_OVERHEAD_BYTES = 64 * 1024
ANSWER_PATH = "/api/v1/answer"

_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "question"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "question": {"type": "string", "example": "what color is the shape?"},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True)
class Probes:
    """What ``/readyz`` looks at: the model, and each configured chat platform's connection;
    ``redis``, when ``REDIS_URL`` is set, says whether the shared state is ``up`` or ``down``."""

    model_ready: Callable[[], bool]
    platforms: Callable[[], Mapping[str, bool]]
    redis: Callable[[], str] | None = None

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when the model is loaded and every configured platform is connected. Redis being
        down does not make the process unready: it answers on its own state meanwhile."""
        platforms = dict(self.platforms())
        model = self.model_ready()
        waiting = ([] if model else ["model"]) + sorted(name for name, up in platforms.items() if not up)
        body: dict[str, object] = {
            "ready": not waiting,
            "model": "loaded" if model else "not loaded",
            "platforms": {name: "connected" if up else "not connected" for name, up in platforms.items()},
            "waiting_for": waiting,
        }
        if self.redis is not None:
            body["redis"] = self.redis()
        return not waiting, body


def error(status: int, message: str, outcome: str, *, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": message, "outcome": outcome}, status_code=status, headers=headers)


def reply_response(reply: Reply) -> JSONResponse:
    """The core's reply as the API answers it."""
    status = http_status(reply.outcome)
    if status == 200 and reply.predictions:
        return JSONResponse(reply.predictions[0].to_dict())
    return error(status, reply.text, reply.outcome.value, retry_after_s=reply.retry_after_s)


def api_router(asker: WebAsker, *, probes: Probes, metrics: Metrics, keys: Mapping[str, str]) -> APIRouter:
    """The routes; ``keys`` maps each API key to its name (empty: the API is open, per client IP)."""
    router = APIRouter()
    # looked up by digest: a dict probe takes the same time whatever part of a key was right
    names = {hashlib.sha256(key.encode()).digest(): name for key, name in keys.items()}

    def refuse(status: int, message: str, outcome: str) -> JSONResponse:
        log.info("web api: refused a request (%d %s)", status, outcome)
        metrics.count(PLATFORM, outcome)
        return error(status, message, outcome)

    def user_of(request: Request) -> str | JSONResponse:
        if not keys:
            return user_of_ip(request.client.host if request.client else None)
        given = request.headers.get("x-api-key") or ""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
        if not given:
            return refuse(401, replies.API_KEY_NEEDED, "unauthorized")
        name = names.get(hashlib.sha256(given.encode()).digest())
        if name is None:
            return refuse(401, replies.API_KEY_WRONG, "unauthorized")
        return user_of_key(name)

    @router.post(ANSWER_PATH, openapi_extra=_FORM_SCHEMA, summary="Answer a question about an image")
    async def answer(request: Request) -> Response:
        """Multipart ``image`` + ``question`` (+ ``top_k``) → the ``main.py ask --json`` object."""
        user = user_of(request)
        if isinstance(user, JSONResponse):
            return user
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
            return refuse(415, replies.API_NOT_A_FORM, "rejected:not_a_form")
        form = await read_form(request)
        if form is None:
            return refuse(400, replies.API_BAD_FORM, "rejected:bad_input")
        top_k = parse_top_k(form.top_k)
        # a request without an image or a question is the core's to refuse, and that comes first
        if top_k == 0 and form.upload is not None and form.question.strip():
            return refuse(422, replies.bad_top_k(MAX_TOP_K), "rejected:bad_input")
        return reply_response(await asker.ask(user, form.upload, form.question, top_k=top_k))

    @router.api_route(ANSWER_PATH, methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def answer_other_methods() -> JSONResponse:
        """405 rather than the page's 404: the address is right, the method is not."""
        response = error(405, replies.API_METHOD, "rejected:method")
        response.headers["Allow"] = "POST"
        return response

    router.include_router(probe_router(probes, metrics))
    return router


def probe_router(probes: Probes, metrics: Metrics) -> APIRouter:
    """What hosts and Prometheus read: ``/healthz``, ``/readyz``, ``/metrics``."""
    router = APIRouter()

    @router.get("/healthz", summary="Alive")
    async def healthz() -> JSONResponse:
        """The process answers (a host's liveness probe; the model may still be loading)."""
        return JSONResponse({"status": "alive"})

    @router.get("/readyz", summary="Ready")
    async def readyz() -> JSONResponse:
        """200: the model is loaded and every configured platform connected; else 503 saying what is not."""
        ready, body = probes.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router


@dataclass(frozen=True)
class AnswerForm:
    """The fields of ``POST /api/v1/answer`` as sent, not yet judged."""

    upload: Upload | None  # None: no image file
    question: str  # "" when absent (or not text)
    top_k: object  # as sent: see ``parse_top_k``


async def read_form(request: Request) -> AnswerForm | None:
    """The request's multipart fields (None: a form that cannot be read)."""
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            image, question = form.get("image"), form.get("question")
            upload = None
            if isinstance(image, UploadFile):  # read before the form closes its files
                upload = Upload(await image.read(), mime_type=image.content_type, file_name=image.filename)
            return AnswerForm(upload, question if isinstance(question, str) else "", form.get("top_k"))
    except (MultiPartException, HTTPException):  # (Starlette raises the latter inside an app)
        return None


def parse_top_k(text: object) -> int | None:
    """None when absent (the engine's TOP_K); 0 when not a whole number from 1 to MAX_TOP_K."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        return 0
    return value if 1 <= value <= MAX_TOP_K else 0
