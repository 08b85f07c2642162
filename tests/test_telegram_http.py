"""The Telegram transport (``bots.telegram_http.AiohttpRequest``) under python-telegram-bot's ``Bot``.

A small aiohttp server on 127.0.0.1 plays the Bot API, each route misbehaving in one way: slow
to answer, streaming forever, holding the only connection, acting as a proxy. The checks are
what PTB raises (its own error types, with a message that says what happened) and what the
server received (form fields, multipart files).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from telegram import Bot, InputFile
from telegram.error import NetworkError, TimedOut

from bots.telegram_http import AiohttpRequest

TOKEN = "123:TEST-token"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
ME = {"id": 123, "is_bot": True, "first_name": "Bot", "username": "test_bot"}


def ok(result: object) -> web.Response:
    return web.json_response({"ok": True, "result": result})


@dataclass
class Server:
    root: str
    received: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def bot_api() -> AsyncIterator[Server]:
    server = Server(root="")

    async def method(request: web.Request) -> web.StreamResponse:
        name = request.match_info["method"]
        fields: dict[str, object] = {}
        if request.content_type == "multipart/form-data":
            async for part in await request.multipart():
                data = await part.read()  # type: ignore[union-attr]
                fields[part.name or ""] = (part.filename, part.headers.get("Content-Type"), len(data))  # type: ignore[union-attr]
        else:
            fields.update(await request.post())
        server.received.append((name, request.content_type, fields))
        if name == "getMe":
            return ok(ME)
        if name == "getChatMemberCount":  # holds its connection until released
            server.held.set()
            await server.release.wait()
            return ok(3)
        if name == "getMyName":  # never finishes: a byte now and then
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                while True:
                    await response.write(b" ")
                    await asyncio.sleep(0.05)
        if name == "getMyDescription":  # slow to answer at all
            await server.release.wait()
        message = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x"}
        return ok(message)

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", method)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.root = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def make_bot(root: str, **timeouts: float) -> Bot:
    return Bot(TOKEN, base_url=f"{root}/bot", request=AiohttpRequest(**timeouts))  # type: ignore[arg-type]


async def test_form_fields_and_multipart_uploads_reach_the_api() -> None:
    async with bot_api() as server, make_bot(server.root) as bot:
        await bot.send_message(42, "hello")
        await bot.send_photo(42, photo=InputFile(PNG, filename="chart.png"), caption="a chart")
    sent = {name: (content_type, fields) for name, content_type, fields in server.received}
    assert sent["sendMessage"] == ("application/x-www-form-urlencoded", {"chat_id": "42", "text": "hello"})
    content_type, fields = sent["sendPhoto"]
    assert content_type == "multipart/form-data"
    assert fields["chat_id"][::2] == (None, 2) and fields["caption"][::2] == (None, 7)  # type: ignore[index]
    assert fields["photo"] == ("chart.png", "image/png", len(PNG))


async def test_a_slow_answer_is_a_timeout_in_ptbs_terms() -> None:
    async with bot_api() as server, make_bot(server.root, read_timeout=0.1) as bot:
        with pytest.raises(TimedOut, match="Timed out"):
            await bot.get_my_description()


async def test_the_whole_request_is_bounded_even_while_bytes_trickle_in() -> None:
    timeouts = {"read_timeout": 0.2, "write_timeout": 0.1, "connect_timeout": 0.1}
    async with bot_api() as server, make_bot(server.root, **timeouts) as bot:
        with pytest.raises(TimedOut):  # each byte comes within read_timeout; the sum is the bound
            await bot.get_my_name()


async def test_an_exhausted_connection_pool_says_so() -> None:
    async with bot_api() as server:
        request = AiohttpRequest(connection_pool_size=1, pool_timeout=0.05)
        async with Bot(TOKEN, base_url=f"{server.root}/bot", request=request) as bot:
            holding = asyncio.create_task(bot.get_chat_member_count(1))
            await server.held.wait()
            with pytest.raises(TimedOut, match="Pool timeout: all 1 connections to the Bot API are in use"):
                await bot.send_message(42, "hello")
            server.release.set()
            await holding


async def test_a_refused_connection_is_a_network_error() -> None:
    async with bot_api() as server:
        root = server.root
    bot = Bot(TOKEN, base_url=f"{root}/bot", request=AiohttpRequest())
    request = bot.request
    await request.initialize()
    try:
        with pytest.raises(NetworkError, match=r"aiohttp\.ClientConnectorError"):
            await bot.get_me()
    finally:
        await request.shutdown()


async def test_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))  # a proxy receives the absolute URL of the target
        return ok(ME)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{runner.addresses[0][1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with Bot(TOKEN, base_url="http://api.telegram.invalid/bot", request=AiohttpRequest()) as bot:
            assert (await bot.get_me()).username == "test_bot"
    finally:
        await runner.cleanup()
    assert set(seen) == {f"http://api.telegram.invalid/bot{TOKEN}/getMe"}  # all of them, through the proxy


def test_no_private_modules_of_python_telegram_bot() -> None:
    from bots import telegram_http

    with open(telegram_http.__file__, encoding="utf-8") as source:
        assert "telegram._" not in source.read()
