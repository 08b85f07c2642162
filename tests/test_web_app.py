"""The web app as people and programs use it: a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) on the page, and Gradio's own Python client, against the web
front end on 127.0.0.1 with the real engine and chat core behind it.

Screenshots go to ``SCREENSHOT_DIR`` when it is set (the README's come from
``SCREENSHOT_DIR=docs/screenshots``), else to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import html
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gradio_client import Client, handle_file
from gradio_client.utils import QueueError
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from bots import replies
from tests.test_engine import GatedModel, in_forward, loader_with, open_gate
from tests.test_telegram import running_bot
from tests.web_fixture import COLOR_Q, EXAMPLES, SHAPE_Q, running_web

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
WAIT_S = 30  # a safety net for a stuck page, not a measurement


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through the system's chromedriver (no driver download)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(driver: WebDriver, steps: Callable[[WebDriver], Any]) -> Any:
    """Selenium blocks: drive the page from a thread while the server runs on this loop."""
    return await asyncio.to_thread(steps, driver)


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(f"{url}/")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ask"))


def ask_on_page(driver: WebDriver, image: Path, question: str) -> None:
    """Upload an image, type the question, press Ask."""
    driver.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(image))
    box = driver.find_element(By.CSS_SELECTOR, "#question input, #question textarea")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.CSS_SELECTOR, "#ask").click()


def answer_on_page(driver: WebDriver) -> str:
    """The answer box's text once it has one."""

    def answer(d: WebDriver) -> str:
        return d.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute("value") or ""

    WebDriverWait(driver, WAIT_S).until(answer)
    return answer(driver)


# -- in a browser -------------------------------------------------------------------------------


async def test_the_page_answers_an_uploaded_image_with_a_top_5_chart(
    tmp_path: Path, browser: WebDriver
) -> None:
    shot = screenshot_path(tmp_path, "web-app.png")

    def steps(driver: WebDriver) -> tuple[str, list[str], str]:
        open_page(driver, web.url)
        title = driver.title
        ask_on_page(driver, EXAMPLES / "red_triangle.png", COLOR_Q)
        answer = answer_on_page(driver)
        chart = driver.find_element(By.CSS_SELECTOR, "#chart").text.splitlines()
        driver.save_screenshot(str(shot))
        return title, chart, answer

    async with running_web(tmp_path) as web:
        title, chart, answer = await in_browser(browser, steps)
        entries = web.log_lines()
    assert title == "Ask a picture"
    assert answer == "red — >99.9% sure"
    # the Label: the answer in large, then five candidates with their percentages
    # (never "100%": a probability that rounds to 1.0 is shown as 99%, as the bots say ">99.9%")
    assert chart[:4] == ["Top 5", "red", "red", "99%"]
    assert len([line for line in chart if line.endswith("%")]) == 5
    assert shot.stat().st_size > 10_000
    [entry] = entries
    assert (entry["platform"], entry["answer"], entry["outcome"]) == ("web", "red", "answered")


async def test_an_example_is_one_click_away(tmp_path: Path, browser: WebDriver) -> None:
    def steps(driver: WebDriver) -> str:
        open_page(driver, web.url)
        xpath = "//*[@id='examples']//*[normalize-space(text())='what color is the circle?']"
        driver.find_element(By.XPATH, xpath).click()
        return answer_on_page(driver)

    async with running_web(tmp_path) as web:
        answer = await in_browser(browser, steps)
    assert answer.startswith("yellow — ")


async def test_the_api_docs_page_works_without_the_internet(tmp_path: Path, browser: WebDriver) -> None:
    """Swagger UI's scripts come from this server: the page lists the API with no other host."""
    foreign: list[str] = []

    def steps(driver: WebDriver) -> str:
        driver.get(f"{web.url}/api/docs")
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        )
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        foreign.extend(str(entry) for entry in loaded if not str(entry).startswith(web.url))
        return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))

    # the static files are the package's own: nothing outside them is served
    escape_path = "/api/docs-static/..%2f..%2f..%2fetc%2fpasswd"
    async with running_web(tmp_path) as web:
        paths = await in_browser(browser, steps)
        async with aiohttp.ClientSession() as session, session.get(web.url + escape_path) as escape:
            escaped = escape.status
    assert "/api/v1/answer" in paths
    assert foreign == []
    assert escaped == 404


async def test_a_file_that_is_not_an_image_gets_the_users_message(tmp_path: Path, browser: WebDriver) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_bytes(PDF)

    def steps(driver: WebDriver) -> str:
        open_page(driver, web.url)
        ask_on_page(driver, fake, COLOR_Q)
        return answer_on_page(driver)

    async with running_web(tmp_path) as web:
        answer = await in_browser(browser, steps)
    assert answer == replies.not_an_image("application/pdf")


async def test_a_full_queue_says_busy_on_the_page(tmp_path: Path, browser: WebDriver) -> None:
    holder: list[GatedModel] = []
    async with running_web(
        tmp_path, loader=loader_with(GatedModel, holder), web_queue_size=1, web_concurrency_limit=1
    ) as web:
        client = await asyncio.to_thread(Client, f"{web.url}/", verbose=False)
        model = holder[0]
        model.close_gate()
        running = client.submit(handle_file(str(EXAMPLES / "green_rectangle.png")), SHAPE_Q, api_name="/ask")
        await in_forward(model)  # the one slot is taken
        waiting = client.submit(handle_file(str(EXAMPLES / "blue_circle.png")), SHAPE_Q, api_name="/ask")
        await queue_holds(web.url, 1)  # and the queue is full

        def steps(driver: WebDriver) -> str:
            open_page(driver, web.url)
            ask_on_page(driver, EXAMPLES / "red_triangle.png", COLOR_Q)
            body = driver.find_element(By.TAG_NAME, "body")
            try:
                WebDriverWait(driver, WAIT_S).until(lambda d: "busy" in body.text)
            finally:
                driver.save_screenshot(str(tmp_path / "busy.png"))
            return str(body.text)

        try:
            page = await in_browser(browser, steps)
        finally:
            open_gate(model)
        answered = [await asyncio.to_thread(job.result, WAIT_S) for job in (running, waiting)]
    assert "This application is currently busy. Please try again." in page
    assert [text.split(" — ")[0] for _, text in answered] == ["rectangle", "circle"]


async def queue_holds(url: str, size: int) -> None:
    """Wait until Gradio's queue holds ``size`` events (its own status route says so)."""
    async with aiohttp.ClientSession() as http:

        async def current() -> int:
            async with http.get(f"{url}/gradio_api/queue/status") as response:
                return int((await response.json())["queue_size"])

        async with asyncio.timeout(WAIT_S):
            while await current() < size:
                await asyncio.sleep(0.01)


# -- Gradio's own client ------------------------------------------------------------------------


async def test_gradios_client_gets_the_chart_and_the_answer(tmp_path: Path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_bytes(PDF)
    async with running_web(tmp_path, rate_limit="2/minute") as web:
        client = await asyncio.to_thread(Client, f"{web.url}/", verbose=False)

        def predict(image: Path, question: str) -> tuple[Any, str]:
            return client.predict(handle_file(str(image)), question, api_name="/ask")  # type: ignore[no-any-return]

        chart, text = await asyncio.to_thread(predict, EXAMPLES / "blue_circle.png", SHAPE_Q)
        refused_chart, refused = await asyncio.to_thread(predict, fake, COLOR_Q)
        _, limited = await asyncio.to_thread(predict, EXAMPLES / "red_triangle.png", COLOR_Q)
        entries = web.log_lines()
    assert text == "circle — >99.9% sure"
    assert chart["label"] == "circle"
    assert chart["confidences"][0]["label"] == "circle"
    assert len(chart["confidences"]) == 5
    assert (refused_chart, refused) == ({}, replies.not_an_image("application/pdf"))
    assert limited.startswith("You're asking faster than I can keep up (2 per 1 minute)")
    assert [e["outcome"] for e in entries] == ["answered", "rejected:not_image", "rate_limited"]


async def test_a_question_without_an_image_or_text_is_the_cores_refusal_and_logged(tmp_path: Path) -> None:
    async with running_web(tmp_path) as web:
        client = await asyncio.to_thread(Client, f"{web.url}/", verbose=False)

        def predict(image: Path | None, question: str) -> tuple[Any, str]:
            upload = handle_file(str(image)) if image is not None else None
            return client.predict(upload, question, api_name="/ask")  # type: ignore[no-any-return]

        no_image = await asyncio.to_thread(predict, None, COLOR_Q)
        blank = await asyncio.to_thread(predict, EXAMPLES / "blue_circle.png", "  ")
        entries = web.log_lines()
    assert no_image[1] == replies.WEB_NO_IMAGE
    assert blank[1] == replies.NEED_QUESTION
    assert [(e["platform"], e["outcome"], e["question"]) for e in entries] == [
        ("web", "rejected:no_image", COLOR_Q),
        ("web", "rejected:bad_question", ""),
    ]
    assert entries[1]["image_bytes"] == (EXAMPLES / "blue_circle.png").stat().st_size


async def test_past_the_queue_bound_gradios_client_is_told_the_queue_is_full(tmp_path: Path) -> None:
    holder: list[GatedModel] = []
    async with running_web(
        tmp_path, loader=loader_with(GatedModel, holder), web_queue_size=1, web_concurrency_limit=1
    ) as web:
        client = await asyncio.to_thread(Client, f"{web.url}/", verbose=False)
        model = holder[0]
        model.close_gate()
        running = client.submit(handle_file(str(EXAMPLES / "green_rectangle.png")), SHAPE_Q, api_name="/ask")
        await in_forward(model)  # the one slot is taken
        waiting = client.submit(handle_file(str(EXAMPLES / "blue_circle.png")), SHAPE_Q, api_name="/ask")
        await queue_holds(web.url, 1)  # and the queue is full
        refused = client.submit(handle_file(str(EXAMPLES / "red_triangle.png")), SHAPE_Q, api_name="/ask")
        try:
            with pytest.raises(QueueError) as exc:
                await asyncio.to_thread(refused.result, WAIT_S)
        finally:
            open_gate(model)
        answered = [await asyncio.to_thread(job.result, WAIT_S) for job in (running, waiting)]
    assert str(exc.value) == "Queue is full! Please try again."
    assert [text.split(" — ")[0] for _, text in answered] == ["rectangle", "circle"]


# -- a chat answer, drawn for the README ---------------------------------------------------------


async def test_a_telegram_answer_drawn_as_a_chat(tmp_path: Path, browser: WebDriver) -> None:
    """The reply the Telegram bot actually sent (through the loopback Bot API), drawn as a chat
    transcript for the README: a picture of what a user reads, not of Telegram's own app."""
    photo = (EXAMPLES / "blue_circle.png").read_bytes()
    async with running_bot(tmp_path) as bot:
        bot.fake.send_photo(42, 42, photo, caption=COLOR_Q)
        reply = await bot.reply(42)
    page = tmp_path / "chat.html"
    [row] = reply.params["reply_markup"]["inline_keyboard"]  # the buttons under the answer
    buttons = [button["text"] for button in row]
    page.write_text(chat_transcript(photo, COLOR_Q, reply.text or "", buttons), encoding="utf-8")
    shot = screenshot_path(tmp_path, "telegram-answer.png")

    def steps(driver: WebDriver) -> str:
        driver.set_window_size(520, 560)
        driver.get(page.as_uri())
        text = driver.find_element(By.CSS_SELECTOR, ".bot").text
        driver.save_screenshot(str(shot))
        return text

    shown = await in_browser(browser, steps)
    assert (reply.text or "").startswith("blue — ")
    assert shown == reply.text
    assert buttons == ["📊 Chart", "👍", "👎"]
    assert shot.stat().st_size > 5_000


def chat_transcript(photo: bytes, caption: str, answer: str, buttons: list[str]) -> str:
    image = base64.b64encode(photo).decode()
    keys = "".join(f'<span class="key">{html.escape(b)}</span>' for b in buttons)
    return f"""<!doctype html><meta charset="utf-8"><title>chat</title>
<style>
body {{ margin: 0; padding: 20px; background: #e7ebf0; font: 15px/1.35 sans-serif; }}
.msg {{ max-width: 330px; padding: 8px 10px; border-radius: 12px; margin: 10px 0; white-space: pre-wrap; }}
.me {{ margin-left: auto; background: #e2ffc7; }}
.me img {{ width: 128px; height: 128px; image-rendering: pixelated; display: block; border-radius: 8px; }}
.bot {{ background: #fff; font-family: sans-serif; }}
.who {{ color: #3a6d99; font-weight: bold; font-size: 13px; }}
.keys {{ display: flex; gap: 4px; max-width: 350px; }}
.key {{ flex: 1; text-align: center; padding: 7px 0; border-radius: 8px; background: #d8e2ec;
        color: #1f3b57; font-size: 14px; }}
</style>
<div class="msg me"><img src="data:image/png;base64,{image}" alt="photo">{html.escape(caption)}</div>
<div class="who">vqa-chat bot</div><div class="msg bot">{html.escape(answer)}</div>
<div class="keys">{keys}</div>"""


def test_screenshots_in_the_readme_exist() -> None:
    """The README shows the pictures these tests make."""
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    for name in ("web-app.png", "telegram-answer.png"):
        assert f"](docs/screenshots/{name})" in readme  # shown as a picture on the README itself
        assert (EXAMPLES.parent / "docs" / "screenshots" / name).is_file()
