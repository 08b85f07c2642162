"""The web front end under test: main.py's own wiring (core, metrics, server) on 127.0.0.1, in the
test's event loop, around a real engine; the tests talk to it with real HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots.core import ChatCore
from bots.prediction_log import PredictionLog
from bots.web.server import WebServer
from config import Settings, load_settings
from service.builders import HttpAddress, build_core, build_metrics, build_web_server
from tests.conftest import BUNDLED_MODEL, ROOT
from vqa_engine import VQAEngine
from vqa_engine.modular.package import ModelPackage, load_package
from vqa_engine.options import EngineOptions
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
    """The server starts before the model loads, as in ``service.app.Service``; ``start_engine=False``
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
    metrics = build_metrics(engine, lambda: connections)
    async with contextlib.AsyncExitStack() as stack:
        prediction_log = stack.enter_context(PredictionLog(settings.prediction_log, salt="test-salt"))
        stack.push_async_callback(engine.close, drain_timeout=settings.shutdown_timeout_s)
        core = build_core(
            settings, engine, prediction_log, platforms=lambda: ["web"], observe=metrics.observe
        )
        server = build_web_server(
            settings, core, engine, metrics, HttpAddress("127.0.0.1", 0), lambda: connections
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


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A deployment's environment for a child ``main.py``: nothing of ours but what is given."""
    ours = (
        "MODEL_",
        "TELEGRAM_",
        "DISCORD_",
        "ADMIN_IDS",
        "RATE_LIMIT",
        "PREDICTION_LOG",
        "LOG_LEVEL",
        "PORT",
        "WEB_",
        "API_KEYS",
        "GRADIO_SERVER_",
        "FORWARDED_ALLOW_IPS",
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN") and not k.startswith(ours)}
    return (
        env
        | {
            "PREDICTION_LOG": str(tmp_path / "child.jsonl"),
            "LOG_LEVEL": "INFO",
            "DEVICE": "cpu",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        | extra
    )


@dataclass
class Child:
    """A child process as a host runs it; ``seen`` is its stderr so far."""

    process: asyncio.subprocess.Process
    seen: list[str] = field(default_factory=list)

    async def read_until(self, needle: str, timeout: float = 90) -> str:
        """Read stderr lines until one contains ``needle`` (a safety-net timeout, not a measure)."""
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError(f"stderr ended before {needle!r}: {''.join(self.seen)}")
                self.seen.append(line)
                if needle in line:
                    return line

    async def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, then (exit code, everything on stderr)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.finish(timeout)

    async def finish(self, timeout: float = 60) -> tuple[int, str]:
        try:
            async with asyncio.timeout(timeout):
                _, rest = await self.process.communicate()
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode, "".join(self.seen) + rest.decode(errors="replace")


async def start_child(*argv: str, env: dict[str, str], cwd: Path = ROOT / "tests") -> Child:
    """``argv`` (``sys.executable`` for ``python``) as a host would start it, from another folder."""
    program = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    process = await asyncio.create_subprocess_exec(
        *program,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Child(process)


def served_port(line: str) -> int:
    """The port in ``web: serving on http://HOST:PORT``."""
    match = re.search(r"web: serving on http://[^ ]+:(\d+)", line)
    assert match, line
    return int(match.group(1))


async def gradio_upload(http: Any, url: str, data: bytes, name: str = "picture.png") -> str:
    """Upload ``data`` as the page does (``/gradio_api/upload``); the path Gradio stored it at."""
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("files", data, filename=name)
    async with http.post(f"{url}/gradio_api/upload", data=form) as response:
        [stored] = await response.json()
    return str(stored)


async def gradio_result(http: Any, url: str, session: str) -> dict[str, Any]:
    """The ``process_completed`` message of ``session``'s event, from Gradio's queue stream."""
    async with http.get(f"{url}/gradio_api/queue/data?session_hash={session}") as stream:
        lines = [line async for line in stream.content if b"process_completed" in line]
    [done] = [json.loads(line.decode()[len("data: ") :]) for line in lines]
    return dict(done)
