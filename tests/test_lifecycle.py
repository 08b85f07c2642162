"""``python main.py`` starting and stopping as hosts run it: logins that hang, SIGTERM at any
moment, settings that cannot work. Each test runs main.py as a child process and judges it by its
exit code and what it printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from tests.fake_telegram import FakeTelegram
from tests.test_telegram import COLOR_Q, TOKEN, USER, child_env, example, read_until, start_child

DISCORD_TOKEN = "MTIz.discord-SECRET.token"


class HungServer(str):
    """The URL of a loopback port that accepts connections and never answers (a login or a
    download that hangs); ``connected`` is set once a client has connected."""

    connected: asyncio.Event


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[HungServer]:
    held: list[asyncio.StreamWriter] = []
    connected = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    url = HungServer(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    url.connected = connected
    try:
        yield url
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def finish(child: asyncio.subprocess.Process, seen: list[str]) -> str:
    """Wait for the child to exit; everything it wrote on stderr."""
    try:
        async with asyncio.timeout(60):  # a safety net, not a measurement
            _, rest = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return "".join(seen) + rest.decode(errors="replace")


async def test_sigterm_during_a_login_that_hangs_exits_0_at_once(tmp_path: Path) -> None:
    async with hung_server() as api:
        env = minimal_env(tmp_path) | {"DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_BASE": f"{api}/api/v10"}
        child = await start_child(env)
        assert child.stderr is not None
        seen: list[str] = []
        await read_until(child.stderr, "discord: logging in", seen, 60)
        child.send_signal(signal.SIGTERM)
        err = await finish(child, seen)
    assert child.returncode == 0, err
    assert "stopped before every platform had connected" in err
    assert "Traceback" not in err and "Unclosed" not in err
    assert DISCORD_TOKEN not in err


async def test_a_platform_whose_login_hangs_is_reported_and_the_other_serves(tmp_path: Path) -> None:
    async with hung_server() as api, FakeTelegram(TOKEN) as telegram:
        env = child_env(telegram, tmp_path) | {
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_BASE": f"{api}/api/v10",
            "LOGIN_TIMEOUT_S": "1",
        }
        child = await start_child(env)
        assert child.stderr is not None
        seen: list[str] = []
        await read_until(child.stderr, "serving on telegram", seen, 60)
        telegram.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
        [reply] = await telegram.wait_for_reply(USER, timeout=30)
        child.send_signal(signal.SIGTERM)
        err = await finish(child, seen)
    assert child.returncode == 0, err
    assert (reply.text or "").startswith("blue — ")
    assert "discord could not start: not connected after 1 s (LOGIN_TIMEOUT_S)" in err
    assert "Unclosed" not in err and "Traceback" not in err


async def test_an_unwritable_prediction_log_exits_2_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = minimal_env(tmp_path) | {"TELEGRAM_TOKEN": TOKEN, "PREDICTION_LOG": str(blocker / "p.jsonl")}
    child = await start_child(env)
    err = await finish(child, [])
    assert child.returncode == 2
    assert err.strip().splitlines() == [
        f"error: PREDICTION_LOG={blocker / 'p.jsonl'}: cannot write there "
        "(a part of that path is a file, not a folder)"
    ]


def minimal_env(tmp_path: Path) -> dict[str, str]:
    """A deployment's environment with no platform configured yet."""
    ours = ("MODEL_", "TELEGRAM_", "DISCORD_", "ADMIN_IDS", "RATE_LIMIT", "PREDICTION_LOG", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN") and not k.startswith(ours)}
    return env | {
        "PREDICTION_LOG": str(tmp_path / "child.jsonl"),
        "LOG_LEVEL": "INFO",
        "DEVICE": "cpu",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


async def test_a_question_still_unanswered_at_the_shutdown_timeout_is_reported(tmp_path: Path) -> None:
    async with FakeTelegram(TOKEN) as telegram:
        child = await start_child(child_env(telegram, tmp_path) | {"SHUTDOWN_TIMEOUT_S": "0.5"})
        assert child.stderr is not None
        seen: list[str] = []
        await read_until(child.stderr, "serving on telegram", seen, 60)
        telegram.hold_downloads()  # the image never arrives
        telegram.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
        await telegram.wait_for_held_downloads(1)
        child.send_signal(signal.SIGTERM)
        err = await finish(child, seen)
    assert child.returncode == 1, err
    assert "error: stopped with questions unanswered after SHUTDOWN_TIMEOUT_S (0.5 s)" in err
    assert "Traceback" not in err and "Unclosed" not in err


async def test_sigterm_while_the_model_downloads_from_a_hub_that_hangs_exits_at_once(tmp_path: Path) -> None:
    async with hung_server() as hub, FakeTelegram(TOKEN) as telegram:
        env = child_env(telegram, tmp_path) | {
            "MODEL_REPO_ID": "someone/a-model",
            "HF_ENDPOINT": hub,
            "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        child = await start_child(env)
        assert child.stderr is not None
        seen: list[str] = []
        await read_until(child.stderr, "loading the model", seen, 60)
        async with asyncio.timeout(60):
            await hub.connected.wait()  # the download has begun, and hangs
        child.send_signal(signal.SIGTERM)
        err = await finish(child, seen)
    assert child.returncode == 0, err
    assert "Traceback" not in err and "Unclosed" not in err
    assert telegram.calls_of("getMe") == []  # it never got as far as logging in
