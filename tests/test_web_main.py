"""``python main.py web`` and ``python main.py`` with ``PORT`` set, as hosts run them: child
processes judged by what they serve over HTTP, what they log, and their exit code."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram
from tests.loopback import free_port
from tests.test_telegram import TOKEN
from tests.web_fixture import COLOR_Q, child_env, example, served_port, start_child

API_KEY = "ci-client-0123456789abcdef"
MAIN = str(ROOT / "main.py")  # run from another folder, as a host would


def form(name: str, question: str = COLOR_Q) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("image", example(name), filename=f"{name}.png", content_type="image/png")
    data.add_field("question", question)
    return data


async def test_web_alone_serves_the_page_and_the_api_then_exits_0_on_sigterm(tmp_path: Path) -> None:
    env = child_env(tmp_path, API_KEYS=f"ci:{API_KEY}", LOG_LEVEL="DEBUG", TELEGRAM_TOKEN=TOKEN)
    child = await start_child("python", MAIN, "web", "--host", "127.0.0.1", "--port", "0", env=env)
    try:
        url = f"http://127.0.0.1:{served_port(await child.read_until('web: serving on'))}"
        await child.read_until("serving on web")  # the model is loaded
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/") as page:
                html = await page.text()
                page_status = page.status
            async with http.get(f"{url}/readyz") as ready:
                readiness = (ready.status, await ready.json())
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with http.post(f"{url}/api/v1/answer", data=form("green_rectangle"), headers=headers) as r:
                answered = (r.status, await r.json())
    finally:
        code, err = await child.stop()
    assert code == 0, err
    assert page_status == 200 and '"title":"Ask a picture"' in html  # Gradio's page config
    # the web app alone: no chat platform, even with a token in the environment
    assert readiness == (200, {"ready": True, "model": "loaded", "platforms": {}, "waiting_for": []})
    assert answered[0] == 200 and answered[1]["answer"] == "green"
    assert "web: stopped" in err and "stopped" in err.splitlines()[-1]
    assert "telegram: logging in" not in err
    assert API_KEY not in err and TOKEN not in err
    assert "Traceback" not in err
    [entry] = [json.loads(line) for line in (tmp_path / "child.jsonl").read_text().splitlines()]
    assert (entry["platform"], entry["answer"], entry["outcome"]) == ("web", "green", "answered")


async def test_with_port_set_main_serves_http_beside_the_bots(tmp_path: Path) -> None:
    port = free_port()
    async with FakeTelegram(TOKEN) as telegram:
        env = child_env(tmp_path, PORT=str(port), WEB_HOST="127.0.0.1") | telegram.env()
        child = await start_child("python", MAIN, env=env)
        try:
            await child.read_until("serving on web, telegram")
            url = f"http://127.0.0.1:{port}"
            telegram.send_photo(42, 42, example("blue_circle"), caption=COLOR_Q)
            [reply] = await telegram.wait_for_reply(42, timeout=30)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/api/v1/answer", data=form("red_triangle")) as r:
                    answered = (r.status, await r.json())
                async with http.get(f"{url}/readyz") as ready:
                    readiness = (ready.status, await ready.json())
                async with http.get(f"{url}/metrics") as metrics:
                    text = await metrics.text()
        finally:
            code, err = await child.stop()
    assert code == 0, err
    assert (reply.text or "").startswith("blue — ")
    assert answered[0] == 200 and answered[1]["answer"] == "red"
    assert readiness == (
        200,
        {"ready": True, "model": "loaded", "platforms": {"telegram": "connected"}, "waiting_for": []},
    )
    answered_by = {
        s.labels["platform"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vqa_requests_total" and s.labels["outcome"] == "answered"
    }
    assert answered_by == {"telegram": 1, "web": 1}
    assert "telegram: stopped" in err and "web: stopped" in err
    assert TOKEN not in err and "Traceback" not in err
    entries = [json.loads(line) for line in (tmp_path / "child.jsonl").read_text().splitlines()]
    assert sorted(e["platform"] for e in entries) == ["telegram", "web"]


async def test_a_port_in_use_exits_1_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        child = await start_child(
            "python", MAIN, "web", "--host", "127.0.0.1", "--port", str(port), env=child_env(tmp_path)
        )
        code, err = await child.finish()
    assert code == 1, err
    assert f"web could not start: cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert err.strip().splitlines()[-1] == "error: the web app could not start (see the log above)"
    assert "Traceback" not in err


async def test_nothing_configured_exits_2_naming_the_tokens_and_port(tmp_path: Path) -> None:
    child = await start_child("python", MAIN, env=child_env(tmp_path))
    code, err = await child.finish()
    assert code == 2
    assert "TELEGRAM_TOKEN" in err and "DISCORD_TOKEN" in err and "PORT" in err
    assert "python main.py web" in err


async def test_bad_web_settings_exit_2_naming_the_variable(tmp_path: Path) -> None:
    child = await start_child("python", MAIN, "web", env=child_env(tmp_path, API_KEYS="alice:short"))
    code, err = await child.finish()
    assert code == 2
    assert err.startswith(
        "error: invalid settings: API_KEYS: the key of 'alice' is shorter than 16 characters"
    )
    assert "short" not in err.split("characters")[1]  # the key itself is never echoed
