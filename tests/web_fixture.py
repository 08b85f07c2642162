"""The web front end under test: main.py's own wiring (core, metrics, server) on 127.0.0.1, in the
test's event loop, around a real engine; the tests talk to it with real HTTP clients."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import main
from bots.core import ChatCore
from bots.prediction_log import PredictionLog
from bots.web.server import WebServer
from config import Settings, load_settings
from tests.conftest import BUNDLED_MODEL, ROOT
from vqa_engine import VQAEngine
from vqa_engine.options import EngineOptions
from vqa_engine.package import ModelPackage, load_package
from vqa_engine.preprocess import ImageLimits

EXAMPLES = ROOT / "examples"
COLOR_Q = "what color is the shape?"
SHAPE_Q = "what shape is in the image?"
# Gradio would otherwise report usage to its makers from every test run
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.png").read_bytes()


@dataclass
class Web:
    """A running web front end: its URL, and what is behind it."""

    url: str
    server: WebServer
    engine: VQAEngine
    core: ChatCore
    settings: Settings
    log_path: Path
    platforms: dict[str, bool] = field(default_factory=dict)

    def log_lines(self) -> list[dict[str, Any]]:
        """Every prediction-log line (closes the log: call it once, at the end of a test)."""
        self.core.prediction_log.close()
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]


@contextlib.asynccontextmanager
async def running_web(
    tmp_path: Path,
    *,
    loader: Callable[[], ModelPackage] | None = None,
    start_engine: bool = True,
    platforms: Mapping[str, bool] | None = None,
    **overrides: object,
) -> AsyncIterator[Web]:
    """The server starts before the model loads, as in ``main.serve``; ``start_engine=False``
    leaves loading it to the test."""
    settings = load_settings(
        Settings,
        **{
            "prediction_log": tmp_path / "predictions.jsonl",
            "prediction_log_salt": "test-salt",
            "api_keys": None,
            "web_host": "127.0.0.1",
            "device": "cpu",
            **overrides,
        },
    )
    engine = VQAEngine(
        loader or (lambda: load_package(BUNDLED_MODEL)),
        options=settings.section(EngineOptions),
        limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
    )
    connections = dict(platforms or {})
    metrics = main.build_metrics(engine, lambda: connections)
    async with contextlib.AsyncExitStack() as stack:
        prediction_log = stack.enter_context(PredictionLog(settings.prediction_log, salt="test-salt"))
        stack.push_async_callback(engine.close, drain_timeout=settings.shutdown_timeout_s)
        core = main.build_core(
            settings, engine, prediction_log, platforms=lambda: ["web"], observe=metrics.observe
        )
        server = main.build_web_server(
            settings, core, engine, metrics, main.HttpAddress("127.0.0.1", 0), lambda: connections
        )
        await server.start()
        stack.push_async_callback(server.stop)
        if start_engine:
            await engine.start()
        yield Web(
            f"http://127.0.0.1:{server.port}",
            server,
            engine,
            core,
            settings,
            settings.prediction_log,
            connections,
        )


def free_port() -> int:
    """A port nothing listens on now (for a child process that must be told its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
