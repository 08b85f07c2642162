"""The web front end attacked as a public Space is: through the real server on 127.0.0.1, with
real HTTP clients and raw sockets. Each test judges what an attacker gets back (the status, the
body), what the server did (nothing copied, nothing read, memory flat, the others still served)
and what it wrote in the log (one INFO line; never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from bots import replies
from bots.web.body_guard import DEFAULT_MAX_BYTES
from bots.web.gradio_guard import RefusedEvent, read_upload
from bots.web.proxies import TrustedProxies
from tests.test_engine import until
from tests.web_fixture import COLOR_Q, EXAMPLES, gradio_result, gradio_upload, running_web
from vqa_engine.formats import SUPPORTED_TEXT

JOIN = "/gradio_api/queue/join"


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's upload folder for this test (``GRADIO_TEMP_DIR``)."""
    folder = tmp_path / "gradio-uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything logged, uvicorn's and Gradio's included."""
    caplog.set_level(logging.INFO)
    return caplog


def no_tracebacks(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing at ERROR, no exception in any record, no traceback printed (Gradio prints its own)."""
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == []
    assert "Traceback" not in capfd.readouterr().err


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


async def join(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(
        url + JOIN, data=json.dumps(body), headers={"Content-Type": "application/json"}
    ) as r:
        return r.status, await r.json(content_type=None)


def event(image: Any, question: Any = COLOR_Q, *, fn_index: Any = 0) -> dict[str, Any]:
    return {"data": [image, question], "fn_index": fn_index, "session_hash": "attacker"}


async def raw(port: int, request: bytes, *, then_close: bool = False) -> bytes:
    """Send ``request`` on a raw connection; the whole response (b"" when ``then_close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if then_close:
            return b""
        return await asyncio.wait_for(reader.read(), 60)  # (a safety net: the server answers)
    finally:
        writer.close()


# -- files: no path a client names is ever read ---------------------------------------------------


async def test_a_path_instead_of_an_upload_is_refused_and_nothing_is_copied(
    tmp_path: Path, uploads: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    secret_picture = tmp_path / "private" / "holiday.png"  # a picture elsewhere on disk: no oracle
    secret_picture.parent.mkdir()
    secret_picture.write_bytes((EXAMPLES / "red_triangle.png").read_bytes())
    link = uploads / "link.png"  # a symlink planted in the upload folder, pointing out of it
    link.symlink_to(secret_picture)
    meta = {"_type": "gradio.FileData"}
    paths = ["/etc/passwd", "/proc/self/environ", "/dev/zero", str(secret_picture), str(link), str(uploads)]
    paths += [f"{uploads}/../private/holiday.png", "http://127.0.0.1:1/x.png", "relative.png"]
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        stored = files_in(uploads)  # the link and the page's examples
        answers = []
        for path in paths:
            answers.append(await join(http, web.url, event({"path": path, "meta": meta})))
            answers.append(await join(http, web.url, event({"path": path})))  # no meta: our handler's
            answers.append(await join(http, web.url, event(path)))  # a bare string
        async with http.get(f"{web.url}/healthz") as alive:
            healthz = alive.status
        entries = web.log_lines()
    assert {status for status, _ in answers} <= {400, 403, 410, 422}, answers
    assert {body["detail"] for _, body in answers} <= {replies.WEB_NOT_AN_UPLOAD, replies.WEB_BAD_REQUEST}
    assert healthz == 200  # /dev/zero hung nothing
    assert "link.png" in stored and files_in(uploads) == stored  # nothing copied in
    assert entries == []  # no question reached the model
    refusals = [
        r.getMessage()
        for r in logged.records
        if "refused a request to /gradio_api/queue/join" in r.getMessage()
    ]
    assert len(refusals) == len(answers)
    no_tracebacks(logged, capfd)


def test_the_pages_handler_reads_only_regular_files_in_the_upload_folder(tmp_path: Path) -> None:
    """The handler's own check, behind the guard: it opens nothing it was merely handed."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    picture = folder / "abc" / "picture.png"
    picture.parent.mkdir()
    picture.write_bytes(b"\x89PNG" + bytes(100))
    (folder / "link.png").symlink_to("/etc/passwd")
    (folder / "inner.png").symlink_to(picture)  # even one that stays inside: never followed
    fifo = folder / "pipe.png"
    os.mkfifo(fifo)  # would block a plain open() forever
    assert read_upload(str(picture), folder, 1000) == picture.read_bytes()

    def refusal(path: object, cap: int = 1000) -> tuple[int, str]:
        with pytest.raises(RefusedEvent) as refused:
            read_upload(path, folder, cap)
        return refused.value.status, refused.value.message

    assert refusal("/etc/passwd") == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal("/dev/zero") == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(folder / "link.png")) == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(folder / "inner.png")) == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(fifo)) == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(folder / "abc")) == (403, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(folder / "gone.png")) == (410, replies.DOWNLOAD_FAILED)
    assert refusal({"path": "x"}) == (400, replies.WEB_NOT_AN_UPLOAD)
    assert refusal(str(picture), cap=10) == (413, replies.too_large(104, 10))  # before reading


async def test_the_page_still_answers_its_own_uploads_and_examples(
    tmp_path: Path, uploads: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        stored = await gradio_upload(http, web.url, (EXAMPLES / "blue_circle.png").read_bytes())
        status, joined = await join(
            http, web.url, event({"path": stored, "meta": {"_type": "gradio.FileData"}})
        )
        assert status == 200, joined
        done = await gradio_result(http, web.url, "attacker")
    assert done["output"]["data"][1] == "blue — >99.9% sure"
    assert Path(stored).is_relative_to(uploads)
    no_tracebacks(logged, capfd)


# -- Gradio's errors: a 4xx and a neutral message -------------------------------------------------


async def test_requests_the_page_never_sends_get_a_4xx_and_a_neutral_message(
    tmp_path: Path, uploads: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    image = {"path": str(uploads / "none.png")}
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        answers = [
            await join(http, web.url, event(image, fn_index=99)),
            await join(http, web.url, event(image, fn_index=-1)),
            await join(http, web.url, event(image, fn_index="0")),
            await join(http, web.url, event(image, fn_index=True)),
            await join(http, web.url, {"data": [image], "fn_index": 0, "session_hash": "s"}),  # too few
            await join(http, web.url, {"data": "x", "fn_index": 0, "session_hash": "s"}),
            await join(http, web.url, [1, 2]),
        ]
        for route in ("call/nope", "run/nope", "call/v2/nope", "api/nope"):
            async with http.post(f"{web.url}/gradio_api/{route}", json={"data": [None, "q"]}) as r:
                answers.append((r.status, await r.json()))
        async with http.post(
            web.url + JOIN, data=b"[" * 50_000, headers={"Content-Type": "application/json"}
        ) as r:
            answers.append((r.status, await r.json()))
        async with http.get(f"{web.url}/gradio_api/queue/data?session_hash=never-joined") as r:
            answers.append((r.status, await r.json()))
    assert [status for status, _ in answers] == [
        422,
        422,
        422,
        422,
        422,
        422,
        422,
        404,
        404,
        404,
        404,
        400,
        404,
    ]
    assert {body["detail"] for _, body in answers} == {replies.WEB_BAD_REQUEST}
    no_tracebacks(logged, capfd)


async def test_a_question_that_is_not_text_gets_our_message_not_an_exception(
    tmp_path: Path, uploads: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        stored = await gradio_upload(http, web.url, (EXAMPLES / "blue_circle.png").read_bytes())
        status, _ = await join(http, web.url, event({"path": stored}, {"a": 1}))
        done = await gradio_result(http, web.url, "attacker")
    assert status == 200
    assert done["output"]["data"][1] == replies.WEB_BAD_REQUEST
    no_tracebacks(logged, capfd)


# -- bodies: bounded while read, in size and in time ----------------------------------------------


async def stream_chunked(port: int, path: str, total: int) -> bytes:
    """POST ``total`` bytes of JSON in chunks without a length, as long as the server reads; then
    its response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"0," * 2**19  # 1 MB
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        # read while sending: the answer comes mid-body, and the reset that follows it (the server
        # closes with our bytes unread) would lose it if read only afterwards
        answer = asyncio.create_task(reader.read(65536))
        with contextlib.suppress(ConnectionError):
            for _ in range(total // len(chunk)):
                if answer.done():
                    break
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        return await asyncio.wait_for(answer, 60)  # (a safety net: the server answers)
    finally:
        writer.close()


async def test_oversized_bodies_are_413_on_every_route_and_memory_stays_flat(
    tmp_path: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    process = psutil.Process()
    async with running_web(tmp_path) as web:
        port = web.server.port
        gc.collect()
        before = process.memory_info().rss
        statuses = []
        for _ in range(5):
            # a declared 100 MB: refused before a byte of the body is read
            head = (
                f"POST {JOIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 * 2**20}\r\n\r\n"
            ).encode()
            statuses.append((await raw(port, head + b"[0,0,0")).split(b" ", 2)[1])
            # 100 MB streamed without a length: cut off at the route's cap
            refused = await stream_chunked(port, JOIN, 100 * 2**20)
            statuses.append(refused.split(b" ", 2)[1])
            body = json.loads(refused.split(b"\r\n\r\n", 1)[1])
        gc.collect()
        grown = process.memory_info().rss - before
        async with aiohttp.ClientSession() as http, http.get(f"{web.url}/healthz") as alive:
            healthz = alive.status
    assert statuses == [b"413"] * 10
    assert body == {"error": replies.request_too_large(DEFAULT_MAX_BYTES), "outcome": "rejected:too_large"}
    assert grown < 100 * 2**20, f"memory grew by {grown / 2**20:.0f} MB"
    assert healthz == 200
    no_tracebacks(logged, capfd)


async def test_a_stalled_body_is_answered_408_and_its_connection_closed(
    tmp_path: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_web(tmp_path, web_body_timeout_s=0.5) as web:
        head = (
            b"POST /api/v1/answer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\n"
        )
        response = await raw(web.server.port, head)  # and then nothing more: the server gives up
    status, _, rest = response.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {
        "error": replies.REQUEST_TIMEOUT,
        "outcome": "rejected:timeout",
    }
    assert b"connection: close" in rest.lower()
    assert any("did not arrive within" in r.getMessage() for r in logged.records)
    no_tracebacks(logged, capfd)


async def test_a_client_that_leaves_mid_upload_is_one_info_line(
    tmp_path: Path, logged: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    part = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + bytes(50_000)
    )
    async with running_web(tmp_path) as web:
        for path in ("/api/v1/answer", "/gradio_api/upload") * 5:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: 1000000\r\n\r\n"
            ).encode()
            await raw(web.server.port, head + part, then_close=True)

        def left() -> list[str]:
            return [r.getMessage() for r in logged.records if "a client left" in r.getMessage()]

        await until(lambda: len(left()) == 10)
        async with aiohttp.ClientSession() as http, http.get(f"{web.url}/healthz") as alive:
            assert alive.status == 200
    assert all(r.levelno == logging.INFO for r in logged.records if "a client left" in r.getMessage())
    no_tracebacks(logged, capfd)


# -- small things -----------------------------------------------------------------------------------


async def test_the_answer_route_says_405_to_other_methods(tmp_path: Path) -> None:
    async with (
        running_web(tmp_path) as web,
        aiohttp.ClientSession() as http,
        http.get(f"{web.url}/api/v1/answer") as response,
    ):
        status, allow, body = response.status, response.headers.get("Allow"), await response.json()
    assert (status, allow) == (405, "POST")
    assert body == {"error": replies.API_METHOD, "outcome": "rejected:method"}


async def test_an_ico_file_is_named_and_the_declared_type_never_echoed(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        bodies = []
        for declared in ("image/x-icon", "image/<script>", "application/x-evil; q=<b>"):
            data = aiohttp.FormData(default_to_multipart=True)
            data.add_field("image", b"\x00\x00\x01\x00", filename="favicon.ico", content_type=declared)
            data.add_field("question", COLOR_Q)
            async with http.post(f"{web.url}/api/v1/answer", data=data) as response:
                bodies.append((response.status, (await response.json())["error"]))
    assert bodies == [
        (
            415,
            "That file is an ICO icon, not an image I can read; please send a " + SUPPORTED_TEXT + " image.",
        ),
        (
            415,
            "That file is in an image format I can't read; please send a PNG, JPEG, WebP, GIF or BMP image.",
        ),
        (415, "That file is not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image."),
    ]


# -- client addresses behind proxies ----------------------------------------------------------------


async def answered_count(
    tmp_path: Path, headers: list[dict[str, str]], **settings: Any
) -> tuple[list[int], list[str]]:
    """Each request's status at RATE_LIMIT 2/minute, and the (hashed) user each was counted as."""
    async with (
        running_web(tmp_path, rate_limit="2/minute", **settings) as web,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for header in headers:
            data = aiohttp.FormData(default_to_multipart=True)
            data.add_field("image", (EXAMPLES / "red_triangle.png").read_bytes(), filename="a.png")
            data.add_field("question", COLOR_Q)
            async with http.post(f"{web.url}/api/v1/answer", data=data, headers=header) as response:
                statuses.append(response.status)
        users = [entry["user"] for entry in web.log_lines()]
    return statuses, users


async def test_a_spoofed_forwarded_for_gets_no_fresh_budget_behind_a_spaces_proxy(tmp_path: Path) -> None:
    """As on a Space: every peer is the proxy (``*``), which appends the real address."""
    spoofed = [{"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.7"} for i in range(4)]
    statuses, users = await answered_count(tmp_path, spoofed, forwarded_allow_ips="*", proxy_hops=1)
    assert statuses == [200, 200, 429, 429]
    assert len(set(users)) == 1  # one client, whatever it wrote


async def test_two_hops_take_the_address_the_outer_proxy_saw(tmp_path: Path) -> None:
    two = [{"X-Forwarded-For": f"10.9.9.{i}, 198.51.100.{i}, 192.0.2.1"} for i in range(3)]
    statuses, users = await answered_count(tmp_path, two, forwarded_allow_ips="*", proxy_hops=2)
    assert statuses == [200, 200, 200]  # three real clients (the CDN saw three addresses)
    assert len(set(users)) == 3


async def test_forwarded_for_from_a_peer_that_is_no_proxy_is_ignored(tmp_path: Path) -> None:
    spoofed = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(3)]
    statuses, users = await answered_count(tmp_path, spoofed, forwarded_allow_ips="192.0.2.10")
    assert statuses == [200, 200, 429]
    assert len(set(users)) == 1


@pytest.mark.parametrize(
    ("trusted", "hops", "forwarded", "client"),
    [
        ("*", 1, ["1.1.1.1", "203.0.113.7"], "203.0.113.7"),
        ("*", 2, ["1.1.1.1", "198.51.100.1", "203.0.113.7"], "198.51.100.1"),
        ("*", 2, ["203.0.113.7"], "127.0.0.1"),  # fewer entries than hops: the proxy itself
        ("*", 1, ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", 1, [], "127.0.0.1"),
        # listed proxies are skipped from the right, up to the hop count
        ("127.0.0.1,10.0.0.0/8", 3, ["1.1.1.1", "203.0.113.7", "10.0.0.2"], "203.0.113.7"),
        ("127.0.0.1,10.0.0.0/8", 1, ["1.1.1.1", "203.0.113.7", "10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", 1, ["203.0.113.7"], "127.0.0.1"),  # the peer is no proxy: the header is ignored
    ],
)
def test_the_client_is_counted_from_the_right(
    trusted: str, hops: int, forwarded: list[str], client: str
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    assert TrustedProxies(app, trusted=trusted, hops=hops).client_of("127.0.0.1", forwarded) == client
