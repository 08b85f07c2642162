"""The HTTP API, health, readiness and metrics, over real HTTP (aiohttp) against the web front end
on 127.0.0.1 with the real engine and chat core behind it. Each test judges what a client sees:
the status, the headers, the JSON, and the prediction-log line."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bots import replies
from config import AskSettings, load_settings
from service import ask as ask_command
from tests.conftest import BUNDLED_MODEL
from tests.test_engine import GatedModel, in_forward, loader_with, open_gate, until
from tests.web_fixture import COLOR_Q, EXAMPLES, SHAPE_Q, example, running_web
from vqa_engine.modular.package import load_package

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
_MISSING = object()


def form(
    image: bytes | None = None,
    question: str | None = COLOR_Q,
    *,
    top_k: str | None = None,
    filename: str = "picture.png",
    content_type: str = "image/png",
) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    if image is not None:
        data.add_field("image", image, filename=filename, content_type=content_type)
    if question is not None:
        data.add_field("question", question)
    if top_k is not None:
        data.add_field("top_k", top_k)
    return data


async def ask(
    http: aiohttp.ClientSession, url: str, data: Any, **kwargs: Any
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST /api/v1/answer: (status, headers, JSON body)."""
    async with http.post(f"{url}/api/v1/answer", data=data, **kwargs) as response:
        return response.status, dict(response.headers), await response.json()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


# -- answers -------------------------------------------------------------------------------------


async def test_an_answer_is_the_object_ask_json_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        status, headers, body = await ask(http, web.url, form(example("red_triangle"), top_k="4"))
        entries = web.log_lines()
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    settings = load_settings(AskSettings, device="cpu")
    assert ask_command.ask(settings, str(EXAMPLES / "red_triangle.png"), COLOR_Q, as_json=True, top_k=4) == 0
    printed = json.loads(capsys.readouterr().out)
    assert body.keys() == printed.keys()  # whatever keys Prediction.to_dict() has
    assert body["answer"] == printed["answer"] == "red"
    assert body["confidence"] == pytest.approx(printed["confidence"], abs=1e-4)
    assert len(body["top_k"]) == len(printed["top_k"]) == 4
    assert body["top_k"][0] == {"answer": "red", "confidence": body["confidence"]}
    [entry] = entries
    assert (entry["platform"], entry["chat_type"], entry["question"], entry["answer"], entry["outcome"]) == (
        "web",
        "web",
        COLOR_Q,
        "red",
        "answered",
    )
    assert entry["image_bytes"] == len(example("red_triangle"))


async def test_top_k_defaults_to_the_engines_and_goes_up_to_ten(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        _, _, default = await ask(http, web.url, form(example("blue_circle"), SHAPE_Q))
        _, _, ten = await ask(http, web.url, form(example("blue_circle"), SHAPE_Q, top_k="10"))
    assert default["answer"] == ten["answer"] == "circle"
    assert len(default["top_k"]) == web.settings.top_k == 3
    assert len(ten["top_k"]) == 10


# -- bad input: a status, the user's message, a log line ----------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "outcome", "message"),
    [
        pytest.param(
            form(PDF, filename="report.pdf", content_type="application/pdf"),
            415,
            "rejected:not_image",
            "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image.",
            id="declared-pdf",
        ),
        pytest.param(
            form(PDF, filename="picture.png", content_type="image/png"),
            415,
            "rejected:not_image",
            "That file is a PDF, not an image I can read; please send a PNG, JPEG, WebP, GIF or BMP image.",
            id="pdf-named-png",
        ),
        pytest.param(
            form(b""),
            400,
            "rejected:empty_image",
            "The image is empty (0 bytes); please send it again.",
            id="empty",
        ),
        pytest.param(
            form(example("red_triangle")[:300]),
            400,
            "rejected:corrupt_image",
            "The image file is damaged or incomplete; please send it again.",
            id="truncated",
        ),
        pytest.param(form(None), 400, "rejected:no_image", replies.WEB_NO_IMAGE, id="no-image"),
        pytest.param(
            form(example("red_triangle"), None),
            422,
            "rejected:bad_question",
            replies.NEED_QUESTION,
            id="no-question",
        ),
        pytest.param(
            form(example("red_triangle"), "   "),
            422,
            "rejected:bad_question",
            replies.NEED_QUESTION,
            id="blank",
        ),
        pytest.param(
            form(example("red_triangle"), "what " * 120),
            422,
            "rejected:bad_question",
            "The question is too long (599 characters; the limit is 500).",
            id="too-long",
        ),
        pytest.param(
            form(example("red_triangle"), "what\x00color"),
            422,
            "rejected:bad_question",
            "The question contains a control character (U+0000); please type it again.",
            id="control-character",
        ),
        pytest.param(
            form(example("red_triangle"), top_k="0"),
            422,
            "rejected:bad_input",
            replies.bad_top_k(10),
            id="top-k-0",
        ),
        pytest.param(
            form(example("red_triangle"), top_k="11"),
            422,
            "rejected:bad_input",
            replies.bad_top_k(10),
            id="top-k-11",
        ),
        pytest.param(
            form(example("red_triangle"), top_k="five"),
            422,
            "rejected:bad_input",
            replies.bad_top_k(10),
            id="top-k-text",
        ),
        pytest.param(
            json.dumps({"image": "", "question": COLOR_Q}),
            415,
            "rejected:not_a_form",
            replies.API_NOT_A_FORM,
            id="json-body",
        ),
    ],
)
async def test_bad_input_gets_its_status_and_the_users_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: Any, status: int, outcome: str, message: str
) -> None:
    caplog.set_level(logging.INFO)
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        got, headers, body = await ask(http, web.url, data)
        # and the server still answers the next one
        after, _, answered = await ask(http, web.url, form(example("blue_circle")))
        entries = web.log_lines()
    assert (got, body) == (status, {"error": message, "outcome": outcome})
    assert "Retry-After" not in headers
    assert (after, answered["answer"]) == (200, "blue")
    refused_at_the_door = f"web api: refused a request ({status} {outcome})" in caplog.text
    seen_by_the_core = [e["outcome"] for e in entries if e["outcome"] != "answered"] == [outcome]
    # a log line either way: the API's own for a malformed request, else the core's and the
    # prediction log's for a question it could not use
    assert refused_at_the_door != seen_by_the_core
    assert refused_at_the_door or f"outcome={outcome}" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_request_without_an_image_or_a_question_is_refused_by_the_core_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    red = example("red_triangle")
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        no_image = await ask(http, web.url, form(None, SHAPE_Q))
        no_question = await ask(http, web.url, form(red, None))
        blank = await ask(http, web.url, form(red, "   ", top_k="11"))  # the question comes first
        neither = await ask(http, web.url, form(None, None, top_k="five"))
        entries = web.log_lines()
    assert [
        (status, body["outcome"], body["error"]) for status, _, body in (no_image, no_question, blank)
    ] == [
        (400, "rejected:no_image", replies.WEB_NO_IMAGE),
        (422, "rejected:bad_question", replies.NEED_QUESTION),
        (422, "rejected:bad_question", replies.NEED_QUESTION),
    ]
    assert (neither[0], neither[2]["outcome"]) == (400, "rejected:no_image")
    assert [
        (e["platform"], e["chat_type"], e["outcome"], e["question"], e["image_bytes"]) for e in entries
    ] == [
        ("web", "web", "rejected:no_image", SHAPE_Q, None),
        ("web", "web", "rejected:bad_question", "", len(red)),
        ("web", "web", "rejected:bad_question", "", len(red)),
        ("web", "web", "rejected:no_image", "", None),
    ]
    assert len({e["user"] for e in entries}) == 1  # the client's address, hashed like any question
    assert "web api: refused a request" not in caplog.text  # the core's refusals, not the door's


async def test_a_malformed_multipart_body_is_400(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        headers = {"Content-Type": "multipart/form-data; boundary=abc"}
        status, _, body = await ask(http, web.url, b"--abc\r\nnot a part at all", headers=headers)
    assert (status, body["outcome"]) == (400, "rejected:bad_input")
    assert body["error"] == replies.API_BAD_FORM


async def test_an_upload_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    cap = 100_000
    async with running_web(tmp_path, max_image_bytes=cap) as web, aiohttp.ClientSession() as http:
        # Content-Length says it: refused before the body is read
        huge, _, huge_body = await ask(http, web.url, form(b"\x89PNG" + bytes(cap + 70_000)))
        # a streamed (chunked) body without a length: refused once it passes the cap
        chunked, _, chunked_body = await ask(http, web.url, chunked_form(cap + 70_000))
        # just over the image cap, within the form's room: the chat core's own refusal
        over, _, over_body = await ask(http, web.url, form(b"\x89PNG" + bytes(cap)))
        entries = web.log_lines()
    assert (huge, huge_body) == (
        413,
        {"error": replies.upload_too_large(cap), "outcome": "rejected:too_large"},
    )
    assert (chunked, chunked_body) == (413, huge_body)
    assert over == 413
    assert over_body == {"error": replies.too_large(cap + 4, cap), "outcome": "rejected:too_large"}
    assert [e["outcome"] for e in entries] == ["rejected:too_large"]  # only the one the core saw


def chunked_form(size: int) -> Any:
    """A multipart body sent in chunks, with no Content-Length."""
    boundary = "vqa-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="question"\r\n\r\n{COLOR_Q}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def body() -> Any:
        yield head
        for _ in range(size // 10_000 + 1):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    return aiohttp.payload.AsyncIterablePayload(
        body(), content_type=f"multipart/form-data; boundary={boundary}"
    )


# -- limits, keys, busy --------------------------------------------------------------------------


async def test_over_the_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    async with running_web(tmp_path, rate_limit="2/minute") as web, aiohttp.ClientSession() as http:
        first = await ask(http, web.url, form(example("red_triangle")))
        second = await ask(http, web.url, form(example("blue_circle")))
        status, headers, body = await ask(http, web.url, form(example("yellow_circle")))
        entries = web.log_lines()
    assert (first[0], second[0]) == (200, 200)
    assert status == 429
    assert body["outcome"] == "rate_limited"
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 60
    assert body["error"] == replies.rate_limited(retry, "2 per 1 minute")
    assert [e["outcome"] for e in entries] == ["answered", "answered", "rate_limited"]
    assert len({e["user"] for e in entries}) == 1  # one client address, one user


async def test_with_api_keys_each_key_is_a_user_and_others_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = f"alice:{ALICE_KEY},bob:{BOB_KEY}"
    async with (
        running_web(tmp_path, api_keys=keys, rate_limit="1/minute") as web,
        aiohttp.ClientSession() as http,
    ):
        none = await ask(http, web.url, form(example("red_triangle")))
        wrong = await ask(
            http, web.url, form(example("red_triangle")), headers={"Authorization": "Bearer nope"}
        )
        alice = {"Authorization": f"Bearer {ALICE_KEY}"}
        first = await ask(http, web.url, form(example("red_triangle")), headers=alice)
        again = await ask(http, web.url, form(example("blue_circle")), headers=alice)
        bob = await ask(http, web.url, form(example("blue_circle")), headers={"X-API-Key": BOB_KEY})
        entries = web.log_lines()
    assert (none[0], none[2]) == (401, {"error": replies.API_KEY_NEEDED, "outcome": "unauthorized"})
    assert none[1]["WWW-Authenticate"] == "Bearer"
    assert (wrong[0], wrong[2]["error"]) == (401, replies.API_KEY_WRONG)
    assert (first[0], again[0], bob[0]) == (200, 429, 200)
    assert [e["outcome"] for e in entries] == ["answered", "rate_limited", "answered"]
    assert entries[0]["user"] == entries[1]["user"] != entries[2]["user"]
    assert ALICE_KEY not in caplog.text and BOB_KEY not in caplog.text


async def test_a_full_engine_is_503_with_retry_after(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    keys = f"alice:{ALICE_KEY},bob:{BOB_KEY}"  # two users: one user's replies leave in order
    async with (
        running_web(tmp_path, loader=loader_with(GatedModel, holder), max_queue=1, api_keys=keys) as web,
        aiohttp.ClientSession() as http,
    ):
        model = holder[0]
        model.close_gate()
        alice = {"X-API-Key": ALICE_KEY}
        first = asyncio.create_task(ask(http, web.url, form(example("red_triangle")), headers=alice))
        await in_forward(model)
        status, headers, body = await ask(
            http, web.url, form(example("blue_circle")), headers={"X-API-Key": BOB_KEY}
        )
        open_gate(model)
        answered = await first
        entries = web.log_lines()
    assert (status, headers["Retry-After"]) == (503, "5")
    assert body == {
        "error": "I'm busy answering other questions; please try again in a few seconds.",
        "outcome": "busy",
    }
    assert (answered[0], answered[2]["answer"]) == (200, "red")
    assert sorted(e["outcome"] for e in entries) == ["answered", "busy"]


# -- health, readiness, metrics ------------------------------------------------------------------


async def test_readiness_before_and_after_the_model_loads_and_the_platforms_connect(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_loader() -> Any:
        assert release.wait(30), "the test never released the model"
        return load_package(BUNDLED_MODEL)

    async with (
        running_web(tmp_path, loader=slow_loader, start_engine=False, platforms={"telegram": False}) as web,
        aiohttp.ClientSession() as http,
    ):
        starting = asyncio.create_task(web.engine.start())
        alive = await get(http, f"{web.url}/healthz")
        before = await get(http, f"{web.url}/readyz")
        early = await ask(http, web.url, form(example("red_triangle")))
        release.set()
        await starting
        loaded = await get(http, f"{web.url}/readyz")
        web.platforms["telegram"] = True
        ready = await get(http, f"{web.url}/readyz")
        answered = await ask(http, web.url, form(example("red_triangle")))
    assert alive == (200, {"status": "alive"})
    assert before == (
        503,
        {
            "ready": False,
            "model": "not loaded",
            "platforms": {"telegram": "not connected"},
            "waiting_for": ["model", "telegram"],
        },
    )
    assert (early[0], early[1]["Retry-After"], early[2]["outcome"]) == (503, "60", "busy")
    assert loaded[0] == 503 and loaded[1]["waiting_for"] == ["telegram"]
    assert ready == (
        200,
        {"ready": True, "model": "loaded", "platforms": {"telegram": "connected"}, "waiting_for": []},
    )
    assert (answered[0], answered[2]["answer"]) == (200, "red")


async def test_metrics_parse_and_count_what_happened(tmp_path: Path) -> None:
    async with running_web(tmp_path, platforms={"discord": True}) as web, aiohttp.ClientSession() as http:
        for _ in range(2):  # the second is a cache hit
            await ask(http, web.url, form(example("green_rectangle"), SHAPE_Q))
        await ask(http, web.url, form(PDF, content_type="application/pdf"))
        await ask(http, web.url, form(None))
        async with http.get(f"{web.url}/metrics") as response:
            content_type, text = response.headers["Content-Type"], await response.text()
    assert content_type.startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("vqa_requests_total", platform="web", outcome="answered") == 2
    assert value("vqa_requests_total", platform="web", outcome="rejected:not_image") == 1
    assert value("vqa_requests_total", platform="web", outcome="rejected:no_image") == 1
    # the questions the core saw (the one without an image too: the core refused it)
    assert value("vqa_request_duration_seconds_count", platform="web") == 4
    assert value("vqa_engine_batch_size_count") == 1  # one forward pass; the repeat came from the cache
    assert value("vqa_engine_batch_size_bucket", le="1.0") == 1
    assert value("vqa_engine_cache_hits_total") == 1
    assert value("vqa_engine_queue_depth") == 0
    assert value("vqa_engine_requests_total", outcome="answered") == 2
    assert value("vqa_model_loaded") == 1
    info = next(labels for (name, labels) in samples if name == "vqa_model_info")
    assert dict(info)["model_id"] == str(BUNDLED_MODEL) and dict(info)["state"] == "running"
    assert value("vqa_platform_connected", platform="discord") == 1
    assert value("process_resident_memory_bytes") > 0


# -- stopping ------------------------------------------------------------------------------------


async def test_stopping_answers_the_request_in_progress_then_refuses_connections(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with (
        running_web(tmp_path, loader=loader_with(GatedModel, holder)) as web,
        aiohttp.ClientSession() as http,
    ):
        model = holder[0]
        model.close_gate()
        pending = asyncio.create_task(ask(http, web.url, form(example("yellow_circle"))))
        await in_forward(model)
        stopping = asyncio.create_task(web.server.stop())
        await until(lambda: not web.server.connected)  # the stop has begun: no new connections
        open_gate(model)
        status, _, body = await pending
        await stopping
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, f"{web.url}/healthz")
    assert (status, body["answer"]) == (200, "yellow")


async def test_a_request_that_outlasts_shutdown_timeout_does_not_hold_the_stop(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with (
        running_web(tmp_path, loader=loader_with(GatedModel, holder), shutdown_timeout_s=1) as web,
        aiohttp.ClientSession() as http,
    ):
        model = holder[0]
        model.close_gate()
        stuck = asyncio.create_task(ask(http, web.url, form(example("yellow_circle"))))
        await in_forward(model)
        try:
            async with asyncio.timeout(30):  # a safety net: uvicorn gives up after SHUTDOWN_TIMEOUT_S
                await web.server.stop()
        finally:
            open_gate(model)
        with pytest.raises(aiohttp.ClientError):
            await stuck
