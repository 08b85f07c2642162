"""The HTTP front end: one ASGI app (FastAPI routes + the Gradio page mounted at ``/``) served by
uvicorn inside the bots' own event loop, beside Telegram and Discord, on the one chat core.

``service.app`` owns its lifetime like any front end: ``start()`` listens and returns once uvicorn
has started; ``stop()`` stops accepting, lets requests in progress finish for up to
``SHUTDOWN_TIMEOUT_S`` (uvicorn's graceful shutdown), then closes. Signals stay with ``service.app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from bots.web.api import ANSWER_PATH, FORM_OVERHEAD_BYTES, Probes, api_router
from bots.web.asker import WebAsker
from bots.web.body_guard import BodyGuard
from bots.web.gradio_guard import GradioGuard, mark_launched, upload_folder
from bots.web.metrics import Metrics
from bots.web.options import WebOptions
from bots.web.proxies import TrustedProxies
from bots.web.ui import build_ui

log = logging.getLogger(__name__)
#: where the docs page's scripts and styles are served
DOCS_STATIC_PATH = "/api/docs-static"


class WebServerError(Exception):
    """The HTTP server could not start (the port is taken, the address is not ours...)."""


def build_app(
    asker: WebAsker,
    *,
    options: WebOptions,
    probes: Probes,
    metrics: Metrics,
    max_image_bytes: int,
    examples_dir: Path | None = None,
    routers: Sequence[APIRouter] = (),
    body_caps: Mapping[str, int] | None = None,
) -> FastAPI:
    """The routes (``routers``: more of them, e.g. Telegram's webhook, with their body caps in
    ``body_caps``) first, then the Gradio page at ``/`` for everything else.

    In front of every route, outermost first: the client's address from the trusted proxies
    (``TrustedProxies``), every body bounded in size and time (``BodyGuard``), and Gradio's event
    requests checked (``GradioGuard``)."""
    # the API's docs page with Swagger UI's files served from here, not a CDN: it works offline
    app = FastAPIOffline(
        title="vqa-chat",
        summary="Answers questions about images",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        static_url=DOCS_STATIC_PATH,
    )
    app.include_router(api_router(asker, probes=probes, metrics=metrics, keys=options.keys))
    for router in routers:
        app.include_router(router)
    folder = upload_folder()
    blocks = build_ui(asker, max_image_bytes=max_image_bytes, examples_dir=examples_dir, folder=folder)
    # a bounded queue: past max_size the page says the app is busy instead of waiting forever
    blocks.queue(max_size=options.web_queue_size, default_concurrency_limit=options.web_concurrency_limit)
    app = gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        max_file_size=max_image_bytes,
        allowed_paths=[str(examples_dir)] if examples_dir else None,
        footer_links=["api"],
        run_history=False,
        show_error=False,  # only our own messages reach a user, never an exception's text
        ssr_mode=False,
    )
    mark_launched(blocks)
    upload_cap = max_image_bytes + FORM_OVERHEAD_BYTES
    caps = {ANSWER_PATH: upload_cap, "/gradio_api/upload": upload_cap, **(body_caps or {})}
    # (added last is outermost)
    app.add_middleware(GradioGuard, blocks=blocks, folder=folder)
    app.add_middleware(
        BodyGuard, caps=caps, timeout_s=options.web_body_timeout_s, upload_overhead_bytes=FORM_OVERHEAD_BYTES
    )
    app.add_middleware(TrustedProxies, trusted=options.forwarded_allow_ips, hops=options.proxy_hops)
    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server inside someone else's loop: start-up is an event to await, and SIGTERM
    and SIGINT stay with ``service.app`` (uvicorn would otherwise take them over)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


class WebServer:
    """``connected`` while it serves; ``port`` is the one it listens on (useful with port 0)."""

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        shutdown_timeout_s: float,
    ) -> None:
        self.host = host
        self.port = port
        self.config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,  # the process's logging, with its secret redaction
            access_log=False,  # one prediction-log line per question says more
            timeout_graceful_shutdown=math.ceil(shutdown_timeout_s),
            proxy_headers=False,  # the app's TrustedProxies does it (uvicorn's trusts the leftmost entry)
            server_header=False,
        )
        self._server = _EmbeddedServer(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._server.started and not self._server.should_exit

    def health(self) -> list[str]:
        return []

    async def start(self) -> None:
        """Listen, start the app (Gradio's queue), serve. Raises ``WebServerError``."""
        try:
            sock = socket.create_server((self.host, self.port), backlog=2048)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise WebServerError(f"cannot listen on {self.host}:{self.port}: {reason}") from exc
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._serve(sock), name="web-server")
        ready = asyncio.create_task(self._server.ready.wait())
        try:
            await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.stop()
            raise
        finally:
            ready.cancel()
        if not self._server.ready.is_set():
            self._task.result()  # raises its WebServerError
            raise WebServerError("the HTTP server stopped while starting")
        log.info("web: serving on http://%s:%d", self.host, self.port)

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn's way of saying the app failed to start
            raise WebServerError("the web app failed to start (see the log above)") from exc
        finally:
            sock.close()

    async def stop(self) -> bool:
        """Stop accepting; answer requests in progress (bounded by SHUTDOWN_TIMEOUT_S); close.
        True when it stopped cleanly."""
        self._server.should_exit = True
        task = self._task
        if task is None:
            return True
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():  # this stop was cancelled (it took too long): close at once
                self._server.force_exit = True
                task.cancel()
        clean = not task.cancelled() and task.exception() is None
        if not task.cancelled() and task.exception() is not None:
            log.warning("web: %s", task.exception())
        log.info("web: stopped")
        return clean
