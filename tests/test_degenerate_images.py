"""Pictures too thin or too small to hold a shape: one rule (``preprocess.check_image_shape``),
and every front end says what it says, by name of the size: ``main.py ask`` (exit 2), Telegram,
Discord, the web app and ``POST /api/v1/answer`` (422). Never a crash on a zero side."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

import main
from bots import replies
from tests.conftest import BUNDLED_MODEL
from tests.test_discord import ALICE
from tests.test_discord import running_bot as discord_bot
from tests.test_telegram import COLOR_Q, USER
from tests.test_telegram import running_bot as telegram_bot
from tests.web_fixture import gradio_result, gradio_upload, running_web
from vqa_engine.errors import ImageShapeError
from vqa_engine.modular.package import load_package
from vqa_engine.preprocess import check_image_shape, image_to_pixels, load_image_pixels

THIN = "this picture is 4000×1 pixels: too thin to see a shape; please send one closer to square"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def user_message(engine_message: str) -> str:
    return replies.sentence(engine_message)


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ((4000, 1), "too thin"),
        ((1, 4000), "too thin"),
        ((4, 4000), "too thin"),
        ((4000, 150), "too thin"),
        ((3, 3), "too small"),
        ((7, 100), "too small"),
        ((1, 1), "too small"),
    ],
)
def test_the_rule_names_the_size_and_the_problem(size: tuple[int, int], problem: str) -> None:
    with pytest.raises(ImageShapeError) as refused:
        check_image_shape(*size)
    assert f"this picture is {size[0]}×{size[1]} pixels: {problem} to see a shape" in str(refused.value)


@pytest.mark.parametrize("size", [(8, 8), (20, 400), (400, 20), (1024, 64), (9, 150)])
def test_pictures_within_the_rule_are_prepared_without_a_zero_side(size: tuple[int, int]) -> None:
    config = load_package(BUNDLED_MODEL).config
    for mode in ("pad", "stretch"):
        prepared = type("Settings", (), {**{k: getattr(config, k) for k in _SETTINGS}, "resize_mode": mode})
        pixels = image_to_pixels(Image.new("RGB", size, (10, 200, 10)), prepared)  # type: ignore[arg-type]
        assert tuple(pixels.shape) == (3, config.image_size, config.image_size)
    assert tuple(load_image_pixels(png(*size), config).shape) == (3, config.image_size, config.image_size)


_SETTINGS = ("image_size", "pad_color", "image_mean", "image_std")


def test_ask_exits_2_naming_the_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "strip.png").write_bytes(png(4000, 1))
    assert main.main(["ask", str(tmp_path / "strip.png"), COLOR_Q]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert THIN in captured.err and "Traceback" not in captured.err


async def test_the_api_answers_422_naming_the_size(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("image", png(4000, 1), filename="strip.png", content_type="image/png")
        form.add_field("question", COLOR_Q)
        async with http.post(f"{web.url}/api/v1/answer", data=form) as response:
            status, body = response.status, await response.json()
        entries = web.log_lines()
    assert status == 422
    assert body == {"error": user_message(THIN), "outcome": "rejected:image_shape"}
    assert [e["outcome"] for e in entries] == ["rejected:image_shape"]


async def test_the_web_app_shows_the_message(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web, aiohttp.ClientSession() as http:
        stored = await gradio_upload(http, web.url, png(4000, 1), "strip.png")
        event = {"data": [{"path": stored}, COLOR_Q], "fn_index": 0, "session_hash": "user"}
        async with http.post(f"{web.url}/gradio_api/queue/join", json=event) as response:
            assert response.status == 200
        done = await gradio_result(http, web.url, "user")
    assert done["output"]["data"][1] == user_message(THIN)


async def test_telegram_replies_with_the_message(tmp_path: Path) -> None:
    async with telegram_bot(tmp_path) as bot:
        bot.fake.send_document(
            USER, USER, png(4000, 1), file_name="strip.png", mime_type="image/png", caption=COLOR_Q
        )
        reply = await bot.reply(USER)
        [entry] = await bot.finish()
    assert reply.text == user_message(THIN)
    assert entry["outcome"] == "rejected:image_shape"


async def test_discord_replies_with_the_message(tmp_path: Path) -> None:
    async with discord_bot(tmp_path) as bot:
        fake = bot.fake
        dm = fake.dm_channel(ALICE)
        fake.send_message(
            dm, ALICE, COLOR_Q, attachments=[fake.attachment(png(4000, 1), filename="strip.png")]
        )
        text = await bot.reply(dm)
        [entry] = await bot.finish()
    assert text == user_message(THIN)
    assert entry["outcome"] == "rejected:image_shape"
