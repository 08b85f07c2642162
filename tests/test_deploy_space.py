"""``python main.py deploy space OWNER/NAME``: the real huggingface_hub client against a loopback Hub.

huggingface_hub reads HF_ENDPOINT when it is imported, so the command runs in child processes, as a
user runs it: from a working directory of their own (whose ``.env`` the settings read), with a
temporary HOME and HF_HOME (no saved login is found) and HF_HUB_DISABLE_XET=1 (binary files go
through the fake's LFS). The tests check what the user sees (the exit status, the lines printed)
and what the Hub received; no output may ever hold the token or a secret's value.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUNDLED_MODEL, ROOT
from tests.fake_hub import FakeHub, FakeRepo, HubRecord, front_matter

TOKEN = "hf_FAKEdeployTokenDoNotPrint_4b1e9c"
WRONG_TOKEN = "hf_WRONGdeployTokenDoNotPrint_77a0"
TELEGRAM = "123456:FAKE-telegram-value-do-not-print"
DISCORD = "FAKE.discord-value.do-not-print"
RATE_LIMIT = "7/minute"
SECRETS = (TOKEN, WRONG_TOKEN, TELEGRAM, DISCORD)
SPACE = "me/vqa-demo"
MODEL = "models/easy-vqa-film"
#: what a Space needs besides the folders below; .gitattributes is the Hub's own (kept)
TOP_FILES = {"app.py", "main.py", "requirements.txt", "pre-requirements.txt", "LICENSE", "README.md"}
FOLDERS = ("bots", "config", "service", "vqa_engine", "examples", MODEL)
NEVER = ("tests/", "benchmarks/", "docs/", "runs/", ".venv/", "deploy/", ".ci/", "Dockerfile", "compose.yaml")


def local_files() -> set[str]:
    """The project's files a Space gets, read from this checkout (caches left out)."""
    found = TOP_FILES | ({".gitattributes"} if (ROOT / ".gitattributes").is_file() else set())
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT)
            if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
                found.add(relative.as_posix())
    return found


def gradio_pin() -> str:
    found = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert found, "requirements.txt pins gradio"
    return found.group(1)


def child_env(hub_url: str, home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: our Hub, no token, secret or MODEL_* setting inherited from the developer."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("HF_", "HUGGINGFACE_", "MODEL_")) or k.endswith("_TOKEN") or k == "RATE_LIMIT")
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HOME=str(home),
        HF_HOME=str(home / "hf-home"),  # no saved `hf auth login` is found
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        DEVICE="cpu",
    )
    env.update(extra)
    return env


def deploy(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python main.py deploy space ARGS`` from ``cwd``; never a secret in what it prints."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "deploy", "space", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints last on stderr."""
    assert result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


def about(record: HubRecord, repo_id: str) -> bool:
    """Whether ``record`` is a request about ``repo_id`` (its creation, info, settings, LFS, commit)."""
    marks = (f"/{repo_id}/", f"/{repo_id}.git/")
    return (
        record.params == repo_id
        or record.path.endswith(f"/{repo_id}")
        or any(m in record.path for m in marks)
    )


def requests_for(hub: FakeHub, repo_id: str) -> list[HubRecord]:
    return [r for r in hub.calls if isinstance(r, HubRecord) and about(r, repo_id)]


def writes(records: list[HubRecord]) -> list[str]:
    """The routes among ``records`` that change something on the Hub."""
    return [r.route for r in records if not r.route.startswith("GET ")]


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(TOKEN, lfs=True) as fake:
        yield fake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the user runs the command: its .env holds the Discord token (the settings read .env
    from the working directory), the environment holds the Telegram one."""
    folder = tmp_path_factory.mktemp("work")
    (folder / ".env").write_text(f"DISCORD_TOKEN={DISCORD}\n")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


# ------------------------------------------------------------------------------ a new Space


@dataclass
class Deployed:
    first: subprocess.CompletedProcess[str]
    first_requests: list[HubRecord]
    space: FakeRepo
    files: dict[str, bytes]  # the Space's files after the first deploy
    commits_before_update: int
    update: subprocess.CompletedProcess[str]
    update_requests: list[HubRecord]


@pytest.fixture(scope="module")
def deployed(hub: FakeHub, workdir: Path, home: Path) -> Deployed:
    """A first deploy (private, t4-small, two secrets, a variable); someone adds a file to the
    Space; a second deploy (a new Telegram token, nothing else asked)."""
    env = child_env(hub.url, home, HF_TOKEN=TOKEN, TELEGRAM_TOKEN=TELEGRAM, RATE_LIMIT=RATE_LIMIT)
    args = ["--private", "--hardware", "t4-small", "--secret", "TELEGRAM_TOKEN", "--secret", "DISCORD_TOKEN"]
    hub.clear_calls()
    first = deploy(env, workdir, SPACE, *args, "--variable", "RATE_LIMIT")
    assert first.returncode == 0, first.stderr
    first_requests = requests_for(hub, SPACE)
    space = hub.spaces[SPACE]
    files = dict(hub.files(SPACE, repo_type="space"))
    hub.add_commit(SPACE, {"notes-by-someone-else.txt": b"hello\n"}, repo_type="space", replace=False)
    commits = len(space.commits)
    hub.clear_calls()
    update = deploy(
        {**env, "TELEGRAM_TOKEN": TELEGRAM + "-new"}, workdir, SPACE, "--secret", "TELEGRAM_TOKEN"
    )
    return Deployed(first, first_requests, space, files, commits, update, requests_for(hub, SPACE))


def test_a_new_space_prints_what_was_done_and_its_address(hub: FakeHub, deployed: Deployed) -> None:
    lines = deployed.first.stdout.splitlines()
    assert lines[0] == f"created the Space {SPACE}"
    assert "visibility: private" in lines
    assert "hardware: t4-small" in lines
    assert "secrets set: DISCORD_TOKEN, TELEGRAM_TOKEN" in lines
    assert "variables set: MODEL_REPO_ID, RATE_LIMIT" in lines
    assert f"model: {MODEL} (uploaded with the project)" in lines
    expected = local_files()
    size = sum(len(content) for path, content in deployed.files.items() if path in expected)
    files = next(line for line in lines if line.startswith("files: "))
    assert files.startswith(f"files: {len(expected)} files, {size:,} bytes in commit ")
    assert lines[-1] == f"{hub.url}/spaces/{SPACE}"


def test_a_new_space_holds_exactly_what_a_space_needs(deployed: Deployed) -> None:
    files = deployed.files
    assert set(files) == local_files() | {".gitattributes"}
    for needed in ("app.py", "main.py", "requirements.txt", "bots/core.py", "config/settings.py"):
        assert needed in files
    assert f"{MODEL}/model.safetensors" in files
    assert not [p for p in files if p.startswith(NEVER) or "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in files if p.rsplit("/", 1)[-1].startswith(".env")]
    for path in ("main.py", "app.py", f"{MODEL}/model.safetensors", "examples/blue_circle.png"):
        assert files[path] == (ROOT / path).read_bytes()


def test_binaries_go_through_lfs_and_text_as_regular_files(deployed: Deployed) -> None:
    sent_as = deployed.space.sent_as
    binaries = {p for p in deployed.files if p.endswith((".png", ".safetensors"))}
    assert binaries and {sent_as[p] for p in binaries} == {"lfs"}
    assert {sent_as[p] for p in ("main.py", "README.md", f"{MODEL}/config.json")} == {"regular"}
    uploads = [
        r
        for r in deployed.first_requests
        if r.route == "POST /spaces/{org}/{name}.git/info/lfs/objects/batch"
    ]
    assert len(uploads) == 1
    commits = [r for r in deployed.first_requests if r.route.endswith("/commit/{revision}")]
    assert [r.status for r in commits] == [200]  # one commit holds everything


def test_the_readme_front_matter_is_a_gradio_space_at_the_pinned_version(deployed: Deployed) -> None:
    readme = deployed.files["README.md"].decode()
    meta = front_matter(readme)
    assert meta["sdk"] == "gradio"
    assert meta["app_file"] == "app.py"
    assert meta["sdk_version"] == gradio_pin()
    assert meta["title"] == SPACE.split("/")[1]
    assert meta["python_version"] == "3.11"
    project = front_matter((ROOT / "README.md").read_text())
    for key in ("emoji", "colorFrom", "colorTo", "license", "pinned"):
        assert meta[key] == project[key]
    assert 0 < len(meta["short_description"]) <= 60
    for name in ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "MODEL_REPO_ID"):
        assert name in readme


def test_a_new_space_gets_its_hardware_visibility_secrets_and_variables(deployed: Deployed) -> None:
    space = deployed.space
    assert space.sdk == "gradio"
    assert space.private is True
    assert space.hardware == "t4-small"
    # the Telegram token came from the environment, the Discord one from the working directory's .env
    assert space.secrets["DISCORD_TOKEN"] == DISCORD
    assert space.variables == {"RATE_LIMIT": RATE_LIMIT, "MODEL_REPO_ID": MODEL}
    creations = [r for r in deployed.first_requests if r.route == "POST /api/repos/create"]
    assert len(creations) == 1 and creations[0].authorized


def test_an_update_removes_what_is_no_longer_in_the_project_in_one_commit(
    hub: FakeHub, deployed: Deployed
) -> None:
    result = deployed.update
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"updated the Space {SPACE}"
    assert "visibility: private (unchanged)" in lines
    assert "hardware: t4-small (unchanged)" in lines
    assert "secrets set: TELEGRAM_TOKEN" in lines
    assert "removed from the Space: notes-by-someone-else.txt" in lines
    assert lines[-1] == f"{hub.url}/spaces/{SPACE}"
    assert len(deployed.space.commits) == deployed.commits_before_update + 1
    assert hub.files(SPACE, repo_type="space") == deployed.files
    assert deployed.space.secrets["TELEGRAM_TOKEN"] == TELEGRAM + "-new"
    assert deployed.space.hardware == "t4-small"  # not asked: unchanged
    routes = writes(deployed.update_requests)
    assert "POST /api/repos/create" not in routes and "POST /api/spaces/{org}/{name}/hardware" not in routes
    assert "PUT /lfs-upload/{oid}" not in routes  # the Space had every binary already


def test_a_hub_model_is_named_not_uploaded(hub: FakeHub, workdir: Path, home: Path) -> None:
    """MODEL_REPO_ID naming a Hub model: the Space downloads it, so no model folder is sent."""
    env = child_env(hub.url, home, HF_TOKEN=TOKEN, MODEL_REPO_ID="org/film", MODEL_REVISION="v2")
    result = deploy(env, workdir, "me/hub-model")
    assert result.returncode == 0, result.stderr
    assert "model: org/film (downloaded by the Space from the Hub)" in result.stdout.splitlines()
    assert "secrets set: none" in result.stdout.splitlines()
    space = hub.spaces["me/hub-model"]
    assert space.variables == {"MODEL_REPO_ID": "org/film", "MODEL_REVISION": "v2"}
    assert space.private is False and space.hardware == "cpu-basic"
    assert not [p for p in hub.files("me/hub-model", repo_type="space") if p.startswith("models/")]
    # deployed again, private on a bigger machine: the existing Space is changed, not re-created
    again = deploy(env, workdir, "me/hub-model", "--private", "--hardware", "cpu-upgrade")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == "updated the Space me/hub-model"
    assert "visibility: private (made private)" in lines and "hardware: cpu-upgrade" in lines
    assert "files: " in again.stdout and "no commit made" in again.stdout  # nothing changed
    assert space.private is True and space.hardware == "cpu-upgrade"


# ------------------------------------------------------------------------------ refusals


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: dict[str, str]
    status: int
    words: tuple[str, ...]  # in the error line
    repo: str  # what the Hub may have been asked about
    asked: tuple[str, ...] = ()  # the only routes the Hub may have received for it


def broken_package(root: Path) -> Path:
    """A copy of the bundled model whose weights file was cut short."""
    folder = root / "broken"
    shutil.copytree(BUNDLED_MODEL, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


@pytest.fixture(scope="module")
def refused(
    hub: FakeHub, workdir: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Case, subprocess.CompletedProcess[str], list[HubRecord]]]:
    """Each refusal in a child of its own, side by side (most load the model first)."""
    packages = tmp_path_factory.mktemp("packages")
    outside = packages / "outside"
    shutil.copytree(BUNDLED_MODEL, outside)
    hub.add_commit("me/docker-app", {"Dockerfile": b"FROM python:3.11\n"}, repo_type="space", sdk="docker")
    hub.add_commit("them/taken", {"app.py": b""}, repo_type="space")
    hub.spaces["them/taken"].foreign = True  # its owner's private Space: looked up, it is not there
    with FakeHub(TOKEN) as stopped:
        pass
    token = {"HF_TOKEN": TOKEN}
    # the cases that reach the Hub serve a Hub model: no package to load here, so no torch to start
    hub_model = {"MODEL_REPO_ID": "org/film"}
    info = "GET /api/spaces/{org}/{name}"
    cases = {
        "no token": Case(("me/a",), {}, 2, ("no Hugging Face token: set HF_TOKEN", "hf auth login"), "me/a"),
        "malformed name": Case(("not-a-space-id",), token, 2, ("'not-a-space-id' is not a Space id",), "x/y"),
        "two slashes": Case(("me/a/b",), token, 2, ("'me/a/b' is not a Space id", "OWNER/NAME"), "me/a"),
        "secret without a value": Case(
            ("me/b", "--secret", "TELEGRAM_TOKEN"),
            token,
            2,
            ("--secret TELEGRAM_TOKEN: TELEGRAM_TOKEN has no value in the environment or in .env",),
            "me/b",
        ),
        "unknown hardware": Case(
            ("me/c", "--hardware", "t4-huge"), token, 2, ("unknown hardware 't4-huge'",), "me/c"
        ),
        "docker space": Case(
            ("me/docker-app",),
            {**token, **hub_model},
            1,
            ("me/docker-app is a docker Space, not a Gradio one: pick another name",),
            "me/docker-app",
            (info,),
        ),
        "broken model": Case(
            ("me/d",),
            {**token, "MODEL_REPO_ID": str(broken_package(packages))},
            1,
            ("the model package at", "broken does not load:", "nothing was uploaded"),
            "me/d",
        ),
        "model outside the project": Case(
            ("me/e",),
            {**token, "MODEL_REPO_ID": str(outside)},
            2,
            ("is outside the project", "MODEL_REPO_ID"),
            "me/e",
        ),
        "bad token": Case(
            ("me/f",),
            {"HF_TOKEN": WRONG_TOKEN, **hub_model},
            1,
            ("the Hub refused the token while creating the Space (HTTP 401)", "nothing was uploaded"),
            "me/f",
            (info, "POST /api/repos/create"),
        ),
        "name taken": Case(
            ("them/taken",),
            {**token, **hub_model},
            1,
            ("the name them/taken is taken on the Hub", "(HTTP 409)", "pick another name"),
            "them/taken",
            (info, "POST /api/repos/create"),
        ),
        "hub unreachable": Case(
            ("me/g",),
            {**token, **hub_model, "HF_ENDPOINT": stopped.url},
            1,
            (f"cannot reach the Hugging Face Hub at {stopped.url} while looking the Space up",),
            "me/g",
        ),
    }

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        return deploy(child_env(hub.url, home, **case.env), workdir, *case.args)

    hub.clear_calls()
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {name: pool.submit(run, case) for name, case in cases.items()}
        results = {name: future.result() for name, future in futures.items()}
    return {name: (case, results[name], requests_for(hub, case.repo)) for name, case in cases.items()}


@pytest.mark.parametrize(
    "name",
    [
        "no token",
        "malformed name",
        "two slashes",
        "secret without a value",
        "unknown hardware",
        "docker space",
        "broken model",
        "model outside the project",
        "bad token",
        "name taken",
        "hub unreachable",
    ],
)
def test_refusals_say_why_in_one_line_and_upload_nothing(refused: dict[str, Any], name: str) -> None:
    case, result, requests = refused[name]
    assert result.returncode == case.status, result.stderr
    line = error_line(result)
    assert line.startswith("error: ")
    for words in case.words:
        assert words in line
    assert sorted({r.route for r in requests}) == sorted(case.asked)  # no upload, no commit, no setting


def test_refusals_before_the_hub_make_no_request_at_all(refused: dict[str, Any], hub: FakeHub) -> None:
    """Every request the Hub received during the refusals was about a case that reaches the Hub."""
    reaching = {case.repo for case, _, _ in refused.values() if case.asked}
    assert all(any(about(r, repo) for repo in reaching) for r in hub.calls if isinstance(r, HubRecord))
    assert "me/d" not in hub.spaces and "me/f" not in hub.spaces and "them/taken" in hub.spaces
