"""Telegram by webhook (``TELEGRAM_WEBHOOK_URL``): the real python-telegram-bot registers the
webhook with the loopback Bot API, which then POSTs each update to the route on our HTTP server,
as Telegram does; the route checks the secret token and hands the update to the adapter. Checked:
what users get (replies), what a forger or a retry gets (the HTTP status, no reply), what the
``main.py webhook`` command prints."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.prediction_log import PredictionLog
from bots.telegram_bot import ALLOWED_UPDATES, TelegramAdapter, Webhook
from bots.web.server import WebServer
from bots.web.telegram_webhook import WebhookInbox
from config import Settings, load_settings
from service.builders import HttpAddress, build_core, build_metrics, build_web_server
from tests.conftest import BUNDLED_MODEL, ROOT, run_main
from tests.fake_telegram import WEBHOOK, FakeTelegram
from tests.loopback import free_port
from vqa_engine import VQAEngine
from vqa_engine.modular.package import load_package

TOKEN = "5550123:AAF-fake-SECRET-t0ken_xyz"
SECRET = "webhook-SECRET-0123456789abcdef"
USER = 42
COLOR_Q = "what color is the shape?"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def example(name: str) -> bytes:
    return (ROOT / "examples" / f"{name}.png").read_bytes()


@dataclass
class Hooked:
    fake: FakeTelegram
    adapter: TelegramAdapter
    server: WebServer
    inbox: WebhookInbox
    url: str

    def delivered(self) -> list[dict[str, Any]]:
        """The updates the fake delivered to the webhook, oldest first."""
        return [call.params["update"] for call in self.fake.calls_of(WEBHOOK)]


@contextlib.asynccontextmanager
async def webhook_bot(tmp_path: Path, *, start_adapter: bool = True) -> AsyncIterator[Hooked]:
    """The HTTP server with the webhook route (as ``service.app.Service`` builds it) and the adapter."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/updates"
    settings = load_settings(
        Settings,
        telegram_token=TOKEN,
        telegram_webhook_url=url,
        telegram_webhook_secret=SECRET,
        prediction_log=tmp_path / "p.jsonl",
        device="cpu",
    )
    async with contextlib.AsyncExitStack() as stack:
        fake = await FakeTelegram(TOKEN).start()
        stack.push_async_callback(fake.stop)
        engine = VQAEngine(lambda: load_package(BUNDLED_MODEL))
        stack.push_async_callback(engine.close)
        log = stack.enter_context(PredictionLog(settings.prediction_log, salt="s"))
        core = build_core(settings, engine, log, platforms=tuple)
        metrics = build_metrics(engine, dict)
        inbox = WebhookInbox()
        address = HttpAddress("127.0.0.1", port)
        server = build_web_server(settings, core, engine, metrics, address, dict, webhook_inbox=inbox)
        await server.start()
        stack.push_async_callback(server.stop)
        await engine.start()
        adapter = TelegramAdapter(
            core,
            token=TOKEN,
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            webhook=Webhook(url, SECRET),
        )
        if start_adapter:
            await adapter.start()
            inbox.receiver = adapter.receive
            stack.push_async_callback(adapter.stop)
        yield Hooked(fake, adapter, server, inbox, url)


async def post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as response:
        await response.read()
        return response.status, dict(response.headers)


async def test_updates_come_by_webhook_and_are_answered(tmp_path: Path) -> None:
    async with webhook_bot(tmp_path) as bot:
        fake = bot.fake
        [registered] = fake.calls_of("setWebhook")
        sent = fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
        [reply] = await fake.wait_for_reply(USER)
        info = fake.webhook
    assert registered.params["url"] == bot.url
    assert registered.params["secret_token"] == SECRET
    assert registered.params["allowed_updates"] == ALLOWED_UPDATES
    assert info is not None and info["url"] == bot.url
    assert fake.calls_of("getUpdates") == []  # no polling
    assert [call.status for call in fake.calls_of(WEBHOOK)] == [200]
    assert (reply.text or "").startswith("blue — ") and reply.reply_to_message_id == sent["message_id"]
    assert fake.calls_of("deleteWebhook") == []  # stopping leaves it for the other replicas


async def test_a_wrong_or_missing_secret_token_gets_403_and_no_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots")
    async with webhook_bot(tmp_path) as bot:
        fake = bot.fake
        fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
        await fake.wait_for_reply(USER)
        [update] = bot.delivered()
        forged = {**update, "update_id": update["update_id"] + 1000}
        statuses = [
            await fake.post_update(forged, bot.url, secret="webhook-SECRET-0123456789abcdeX"),
            await fake.post_update(forged, bot.url, secret=None),
            await fake.post_update(forged, bot.url, secret=SECRET),  # Telegram's own
        ]
        [again] = await fake.wait_for_reply(USER)
        replies = fake.replies(USER)
    assert statuses == [403, 403, 200]
    assert (again.text or "").startswith("blue — ")
    assert len(replies) == 2  # the first photo and the update with the right secret: nothing else
    refusals = [r.getMessage() for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refusals) == 2 and "with a wrong secret token (403)" in refusals[0]
    assert SECRET not in caplog.text


async def test_an_update_delivered_twice_is_answered_once(tmp_path: Path) -> None:
    async with webhook_bot(tmp_path) as bot:
        fake = bot.fake
        fake.send_photo(USER, USER, example("red_triangle"), caption=COLOR_Q)
        [first] = await fake.wait_for_reply(USER)
        [update] = bot.delivered()
        retried = await fake.post_update(update, bot.url, secret=SECRET)  # Telegram retries it
        fake.send_photo(USER, USER, example("green_rectangle"), caption=COLOR_Q)
        [second] = await fake.wait_for_reply(USER)
        replies = fake.replies(USER)
    assert retried == 200  # taken (so Telegram stops), not answered again
    assert (first.text or "").startswith("red — ") and (second.text or "").startswith("green — ")
    assert len(replies) == 2


async def test_before_the_bot_takes_updates_the_route_says_503_and_bad_bodies_get_400(
    tmp_path: Path,
) -> None:
    async with webhook_bot(tmp_path, start_adapter=False) as bot:
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        update = {
            "update_id": 1,
            "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}},
        }
        starting = await post(bot.url, update, headers)
        bot.inbox.receiver = bot.adapter.receive  # wired, but the adapter is not started
        not_started = await post(bot.url, update, headers)
        await bot.adapter.start()
        not_json = await post(bot.url, "not an update", headers)
        not_an_update = await post(bot.url, {"update_id": "x"}, headers)
        await bot.adapter.stop()
        stopping = await post(bot.url, update, headers)
    assert starting[0] == 503 and starting[1]["Retry-After"] == "5"
    assert not_started[0] == 503 and stopping[0] == 503  # Telegram sends them again later
    assert not_json[0] == 400 and not_an_update[0] == 400


def test_main_webhook_info_and_delete(tmp_path: Path) -> None:
    with FakeTelegram(TOKEN) as fake:
        fake.webhook = {"url": "https://bot.example.com/telegram", "secret_token": SECRET}
        env = fake.env() | {"PREDICTION_LOG": str(tmp_path / "p.jsonl")}
        info = run_main("webhook", "info", env=env)
        deleted = run_main("webhook", "delete", env=env)
        after = run_main("webhook", "info", env=env)
    assert info.returncode == 0, info.stderr.decode()
    assert info.stdout.decode().splitlines() == [
        "url: https://bot.example.com/telegram",
        "pending updates: 0",
    ]
    assert deleted.returncode == 0 and "webhook deleted" in deleted.stdout.decode()
    assert after.stdout.decode().splitlines()[0] == "url: none (long polling)"
    for result in (info, deleted, after):
        assert TOKEN not in result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/tg", "TELEGRAM_WEBHOOK_SECRET": SECRET},
            "error: TELEGRAM_WEBHOOK_URL needs the HTTP server that receives the updates: set PORT",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/tg"},
            "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/tg", "TELEGRAM_WEBHOOK_SECRET": "short"},
            "TELEGRAM_WEBHOOK_SECRET: shorter than 16 characters",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com", "TELEGRAM_WEBHOOK_SECRET": SECRET},
            "TELEGRAM_WEBHOOK_URL: the URL needs a path",
        ),
    ],
)
def test_webhook_settings_that_cannot_work_exit_2_naming_them(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_main(env={"TELEGRAM_TOKEN": TOKEN, "PREDICTION_LOG": str(tmp_path / "p.jsonl"), **env})
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert message in err
    assert "short" not in err.replace(message, "") and SECRET not in err


async def test_a_second_process_polling_the_same_bot_is_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots")
    conflict = (
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    )
    settings = load_settings(Settings, prediction_log=tmp_path / "p.jsonl")
    async with contextlib.AsyncExitStack() as stack:
        fake = await FakeTelegram(TOKEN).start()
        stack.push_async_callback(fake.stop)
        engine = await stack.enter_async_context(VQAEngine(lambda: load_package(BUNDLED_MODEL)))
        log = stack.enter_context(PredictionLog(settings.prediction_log, salt="s"))
        core = build_core(settings, engine, log, platforms=tuple)
        adapter = TelegramAdapter(
            core, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url, poll_timeout=1
        )
        fake.fail_next("getUpdates", status=409, message=conflict, times=2)
        await adapter.start()
        stack.push_async_callback(adapter.stop)
        fake.send_photo(USER, USER, example("blue_circle"), caption=COLOR_Q)
        [reply] = await fake.wait_for_reply(USER, timeout=30)  # PTB retries: the conflicts passed
    named = [
        r.getMessage() for r in caplog.records if "another process is polling this bot" in r.getMessage()
    ]
    assert len(named) == 1 and "TELEGRAM_WEBHOOK_URL" in named[0]
    assert len([c for c in fake.calls_of("getUpdates") if c.status == 409]) == 2
    assert (reply.text or "").startswith("blue — ")


async def test_bodies_shaped_unlike_an_update_get_400_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    message = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    bodies = [
        b"[" * 100_000,  # Python's parser gives up (RecursionError)
        json.dumps({"update_id": 7, "message": message, "x": deep}).encode(),  # parses, but 40 deep
        json.dumps({"update_id": True, "message": message}).encode(),  # a bool is no update id
        json.dumps({"update_id": -1, "message": message}).encode(),
        json.dumps({"update_id": 1.5, "message": message}).encode(),
        b"\xff\xfe not utf-8",
        b"",
    ]
    async with webhook_bot(tmp_path) as bot, aiohttp.ClientSession() as http:
        statuses = []
        for body in bodies:
            async with http.post(bot.url, data=body, headers=headers) as response:
                statuses.append((response.status, await response.json()))
        async with http.post(bot.url, data=b"{" * (2 * 2**20), headers=headers) as response:
            too_large = response.status
        replies = bot.fake.replies(USER) + bot.fake.replies(1)
    assert statuses == [(400, {"ok": False, "description": "Bad Request: not an update"})] * len(bodies)
    assert too_large == 413
    assert replies == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err
