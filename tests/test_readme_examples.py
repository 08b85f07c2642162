"""The documentation's example outputs are what the program prints: every ``console`` block's
``$`` command in ``README.md`` and ``docs/*.md`` is run here (``python main.py ...`` as a child
process from the repository's root; a ``curl`` to the API as the same request to the real web
front end) and its output compared with the lines shown under it. Numbers are compared to three
significant digits (the familiarity of a picture is computed in floating point, which differs a
little between CPUs); everything else exactly. When the program's output changes on purpose,
paste the new output from the failure into the page that shows it.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.web_fixture import child_env, running_web

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^( *)```console\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str]]:
    """(command, output shown) for every ``$`` line of every console block of every page."""
    found = []
    blocks = [block for page in PAGES for block in BLOCK.findall(page.read_text(encoding="utf-8"))]
    for indent, body in blocks:
        lines = [line[len(indent) :] for line in body.splitlines()]
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                output = []
                for following in lines[i + 1 :]:
                    if following.startswith("$ "):
                        break
                    output.append(following)
                found.append((line[2:], "\n".join(output)))
    return found


def same(shown: Any, actual: Any) -> bool:
    """Equal, numbers to three significant digits."""
    if isinstance(shown, dict) and isinstance(actual, dict):
        return shown.keys() == actual.keys() and all(same(shown[k], actual[k]) for k in shown)
    if isinstance(shown, list) and isinstance(actual, list):
        return len(shown) == len(actual) and all(same(a, b) for a, b in zip(shown, actual, strict=True))
    if isinstance(shown, float | int) and isinstance(actual, float | int) and not isinstance(shown, bool):
        return math.isclose(shown, actual, rel_tol=1e-3, abs_tol=1e-6)
    return bool(shown == actual)


def matches(shown: str, actual: str) -> bool:
    if shown.startswith("{"):
        return same(json.loads(shown), json.loads(actual))
    return shown == actual


def test_the_readme_has_examples_of_each_front_end() -> None:
    commands = [command for command, _ in examples()]
    assert any(command.startswith("python main.py ask") for command in commands)
    assert any(command.startswith("curl ") for command in commands)


@pytest.mark.parametrize(
    ("command", "shown"), [e for e in examples() if e[0].startswith("python main.py")], ids=lambda v: v[:60]
)
def test_a_command_line_example_prints_what_the_readme_shows(
    tmp_path: Path, command: str, shown: str
) -> None:
    args = shlex.split(command)
    result = subprocess.run(
        [sys.executable, *args[1:]],
        cwd=ROOT,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    actual = result.stdout.rstrip("\n")
    assert matches(shown, actual), f"the documentation shows:\n{shown}\nthe program prints:\n{actual}"


def curl_form(command: str) -> tuple[aiohttp.FormData, str]:
    """The multipart form and the path of ``curl -F ... URL``."""
    args = shlex.split(command)
    form = aiohttp.FormData()
    url = ""
    for i, arg in enumerate(args):
        if arg == "-F":
            name, _, value = args[i + 1].partition("=")
            if value.startswith("@"):
                path = ROOT / value[1:]
                form.add_field(name, path.read_bytes(), filename=path.name, content_type="image/png")
            else:
                form.add_field(name, value)
        elif arg.startswith("http"):
            url = arg
    return form, "/" + url.split("/", 3)[3]


async def test_the_api_example_answers_what_the_readme_shows(tmp_path: Path) -> None:
    [(command, shown)] = [e for e in examples() if e[0].startswith("curl ")]
    form, path = curl_form(command)
    async with (
        running_web(tmp_path) as web,
        aiohttp.ClientSession() as http,
        http.post(web.url + path, data=form) as response,
    ):
        status, actual = response.status, await response.text()
    assert status == 200, actual
    assert matches(shown, actual), f"the documentation shows:\n{shown}\nthe server answers:\n{actual}"
