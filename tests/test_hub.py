"""Models from the Hugging Face Hub, with the real huggingface_hub client against a loopback Hub.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported, so the
code under test runs in child processes (``main.py ask``, ``python -m vqa_engine.loading.hub``, or one
of ``tests/children`` that checks many repos at once, to pay for starting torch only a few times). Every
child gets a distinctive token where a token makes sense, and no output may ever contain it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.children import run_child
from tests.conftest import BUNDLED_MODEL, ROOT, build_model
from tests.fake_hub import FakeHub, HubRecord, read_folder
from vqa_engine.loading.hub import load_model, resolve_model
from vqa_engine.loading.hub import main as hub_main
from vqa_engine.modular.package import load_package, save_package
from vqa_engine.modular.package_format import PACKAGE_FILES, ModelSource
from vqa_engine.modular.predictor import Predictor

TOKEN = "hf_FAKEtokenDoNotPrint_8c1e4b7a2f"
IMAGE = ROOT / "examples" / "blue_circle.png"
QUESTION = "what color is the shape?"
OUR_FILES = {
    "config.json",
    "model.safetensors",
    "vocab.json",
    "answers.txt",
    "README.md",
    "evaluation.json",
    "familiarity.safetensors",
    "question_forms.json",
    "checks_selection.json",
    "risk_coverage.png",
}
Results = dict[str, dict[str, Any]]  # case name -> what the child printed for it

# the "many repos in one child" checks: one JSON line per case
PREDICT = "tests.children.hub_predict"
RESOLVE = "tests.children.hub_resolve"  # resolve_model only: this child must not need torch


def child_env(hub_url: str, cache: Path, **extra: str) -> dict[str, str]:
    """A clean environment: our Hub, our cache, no token or HF setting inherited from the developer."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("HF_", "HUGGINGFACE_")) or k.endswith("_TOKEN") or k.startswith("MODEL_"))
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HUB_CACHE=str(cache),
        HF_HOME=str(cache.parent / "hf-home"),  # no saved login is found
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        DEVICE="cpu",
        TEST_HUB_TOKEN=TOKEN,
    )
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT / "tests", timeout=120
    )
    assert TOKEN not in result.stdout + result.stderr  # never printed, never logged
    return result


def ask(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run([str(ROOT / "main.py"), "ask", str(IMAGE), QUESTION, *extra], env)


def hub_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "vqa_engine.loading.hub", *args], {**env, "PYTHONPATH": str(ROOT)})


def hub_calls(hub: FakeHub) -> list[HubRecord]:
    """Every request the fake Hub has recorded so far (each one a ``HubRecord``)."""
    return [r for r in hub.calls if isinstance(r, HubRecord)]


def many(module: str, env: dict[str, str], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``cases`` through ``python -m module`` in one child: one JSON line per case (and any trailer)."""
    result = run(["-m", module, json.dumps(cases), str(IMAGE), QUESTION], {**env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def run_together(
    *jobs: Callable[[], subprocess.CompletedProcess[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Independent children side by side: each spends most of its time starting torch."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


def assert_same_prediction(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same answers in the same order, confidences equal up to float noise between processes."""
    assert [c["answer"] for c in got["top_k"]] == [c["answer"] for c in expected["top_k"]]
    assert [c["confidence"] for c in got["top_k"]] == pytest.approx(
        [c["confidence"] for c in expected["top_k"]], abs=1e-6
    )


def local_prediction(folder: Path) -> dict[str, Any]:
    return Predictor(load_package(folder)).predict(IMAGE.read_bytes(), QUESTION, top_k=99).to_dict()


def seed_files(seed: int) -> dict[str, bytes]:
    """A package in the seed's layout: a bare state dict, a pickled {word: id}, data/answer_space.txt."""
    model, vocab, answers = build_model(seed=seed)
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    return {
        "best_modular_model.pth": weights.getvalue(),
        "vocab.pkl": pickle.dumps({word: i for i, word in enumerate(vocab.tokens)}),
        "data/answer_space.txt": "".join(f"{a}\n" for a in answers).encode(),
    }


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local packages: two seeds of the small model, and the seed-layout twin of seed 3."""
    root = tmp_path_factory.mktemp("packages")
    found = {}
    for seed in (0, 1):
        model, vocab, answers = build_model(seed=seed)
        found[f"small{seed}"] = save_package(root / f"small{seed}", model, vocab, answers, card="# small\n")
    seed_dir = root / "seed3"
    for name, content in seed_files(3).items():
        (seed_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (seed_dir / name).write_bytes(content)
    found["seed3"] = seed_dir
    return found


@pytest.fixture(scope="module")
def hub(packages: dict[str, Path]) -> Iterator[FakeHub]:
    bundled = read_folder(BUNDLED_MODEL)
    with FakeHub(TOKEN) as fake:
        # a public repo that also holds files a package does not need (never downloaded)
        fake.add_commit("org/film", {**bundled, "checkpoints/epoch-1.bin": b"\0" * 4096, "notes.txt": b"x"})
        # two models in one repo's history: v1 (the bundled model) then main (a small one)
        fake.add_commit("org/pinned", bundled, branch="v1")
        fake.add_commit("org/pinned", read_folder(packages["small0"]))
        fake.add_commit("org/private", bundled, private=True)
        fake.add_commit("org/gated", bundled, gated=True)
        fake.add_commit("org/no-weights", {k: v for k, v in bundled.items() if k != "model.safetensors"})
        fake.add_commit("org/seed-layout", seed_files(3))
        answers = bundled["answers.txt"] + b"purple-ish\n"
        fake.add_commit("org/mismatch", {**bundled, "answers.txt": answers})
        fake.add_commit("org/corrupt", {**bundled, "model.safetensors": b"not a safetensors file"})
        yield fake


@pytest.fixture(scope="module")
def warm_cache(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hub cache holding org/film, filled by ``python -m vqa_engine.loading.hub download`` (no torch)."""
    cache = tmp_path_factory.mktemp("warm") / "hub-cache"
    result = hub_cli(child_env(hub.url, cache), "download", "org/film")
    assert result.returncode == 0, result.stderr
    return cache


@pytest.fixture(scope="module")
def down_hub_url() -> str:
    """The address of a Hub that has stopped: connections are refused."""
    with FakeHub(TOKEN) as fake:
        pass
    return fake.url


# ------------------------------------------------------------------------- main.py ask from the Hub


@dataclass
class Asked:
    results: dict[str, subprocess.CompletedProcess[str]]
    requests: list[HubRecord]  # what the fake Hub saw while they ran
    cache: Path


@pytest.fixture(scope="module")
def first_asks(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Asked:
    """``main.py ask`` with a cold cache: a public repo (with a token, logging DEBUG), a private
    repo without one."""
    cache = tmp_path_factory.mktemp("first") / "hub-cache"
    public = child_env(hub.url, cache, MODEL_REPO_ID="org/film", HF_TOKEN=TOKEN, LOG_LEVEL="DEBUG")
    private = child_env(hub.url, cache, MODEL_REPO_ID="org/private")
    hub.clear_calls()
    results = run_together(lambda: ask(public), lambda: ask(private))
    return Asked(dict(zip(["public", "private"], results, strict=True)), hub_calls(hub), cache)


@pytest.fixture(scope="module")
def warm_asks(hub: FakeHub, warm_cache: Path, down_hub_url: str) -> Asked:
    """``main.py ask --json`` with a warm cache: offline, and with the Hub down."""
    offline = child_env(hub.url, warm_cache, MODEL_REPO_ID="org/film", HF_HUB_OFFLINE="1", HF_TOKEN=TOKEN)
    down = child_env(down_hub_url, warm_cache, MODEL_REPO_ID="org/film", HF_TOKEN=TOKEN)
    hub.clear_calls()
    results = run_together(lambda: ask(offline, "--json"), lambda: ask(down, "--json"))
    return Asked(dict(zip(["offline", "down"], results, strict=True)), hub_calls(hub), warm_cache)


def test_ask_downloads_only_the_package_and_answers(hub: FakeHub, first_asks: Asked) -> None:
    result = first_asks.results["public"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("blue (")
    fetched = {
        r.path.split("/", 5)[-1] for r in first_asks.requests if r.path.startswith("/org/film/resolve/")
    }
    assert fetched == OUR_FILES  # not checkpoints/epoch-1.bin, not notes.txt
    # the standard cache layout, so other Hub tools (and an offline start) find it
    repo_dir = first_asks.cache / "models--org--film"
    sha = hub.repos["org/film"].refs["main"]
    assert (repo_dir / "refs" / "main").read_text() == sha
    assert (repo_dir / "snapshots" / sha / "model.safetensors").is_file()


def test_private_repo_without_a_token_exits_1_naming_hf_token(first_asks: Asked) -> None:
    result = first_asks.results["private"]
    assert result.returncode == 1
    assert result.stdout == ""
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot load the model: ")
    assert "org/private" in line and "set HF_TOKEN" in line
    assert "Traceback" not in result.stderr


def test_offline_with_a_warm_cache_answers_without_a_single_request(warm_asks: Asked) -> None:
    result = warm_asks.results["offline"]
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["answer"] == "blue"
    assert warm_asks.requests == []


def test_unreachable_hub_with_a_warm_cache_answers_with_a_warning(warm_asks: Asked) -> None:
    result = warm_asks.results["down"]
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["answer"] == "blue"
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert any("cannot reach the Hugging Face Hub" in w and "cached org/film" in w for w in warnings)


# ----------------------------------------------------------------- many repos, one child per kind


@dataclass
class Pushed:
    commit: str
    refused: subprocess.CompletedProcess[str]  # the same push without a token


@pytest.fixture(scope="module")
def pushed(hub: FakeHub, packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """``python -m vqa_engine.loading.hub push`` of small1 to a new private repo, with and without a token."""
    cache = tmp_path_factory.mktemp("push") / "hub-cache"
    args = ["push", str(packages["small1"]), "--private", "--repo"]
    result, refused = run_together(
        lambda: hub_cli(child_env(hub.url, cache, HF_TOKEN=TOKEN), *args, "me/pushed"),
        lambda: hub_cli(child_env(hub.url, cache), *args, "me/refused"),
    )
    assert result.returncode == 0, result.stderr
    commit = hub.repos["me/pushed"].refs["main"]
    assert f"at commit {commit}" in result.stdout
    assert f"{hub.url}/me/pushed/commit/{commit}" in result.stdout
    return Pushed(commit, refused)


@pytest.fixture(scope="module")
def loaded(hub: FakeHub, pushed: Pushed, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """load_model + one prediction for each case, in one child (torch starts once)."""
    pinned = hub.repos["org/pinned"]
    cases: dict[str, dict[str, Any]] = {
        "main": {"repo": "org/pinned"},
        "branch v1": {"repo": "org/pinned", "revision": "v1"},
        "commit of v1": {"repo": "org/pinned", "revision": pinned.refs["v1"]},
        "commit of main": {"repo": "org/pinned", "revision": pinned.refs["main"]},
        "seed layout": {"repo": "org/seed-layout"},
        "pushed": {"repo": "me/pushed", "token": True},
        "mismatch": {"repo": "org/mismatch"},
        "corrupt": {"repo": "org/corrupt"},
    }
    env = child_env(hub.url, tmp_path_factory.mktemp("loaded") / "cache")
    results = many(PREDICT, env, list(cases.values()))
    return dict(zip(cases, results, strict=True))


def test_revision_pins_the_model(hub: FakeHub, loaded: Results, packages: dict[str, Path]) -> None:
    pinned = hub.repos["org/pinned"]
    main, v1 = loaded["main"], loaded["branch v1"]
    assert main["revision"] == pinned.refs["main"] and v1["revision"] == pinned.refs["v1"]
    # main holds the small model, v1 the bundled one: different answer spaces, different answers
    assert v1["answer"] == "blue" and len(v1["top_k"]) == 13
    assert len(main["top_k"]) == 8
    assert_same_prediction(main, local_prediction(packages["small0"]))
    # a commit sha pins exactly as the branch that points at it
    assert loaded["commit of v1"] == v1
    assert loaded["commit of main"] == main
    assert not any(r["from_cache"] for r in (main, v1))


def test_seed_layout_repo_loads(loaded: Results, packages: dict[str, Path]) -> None:
    """best_modular_model.pth (a state dict), vocab.pkl (a plain dict), data/answer_space.txt."""
    result = loaded["seed layout"]
    assert "error" not in result, result
    assert_same_prediction(result, local_prediction(packages["seed3"]))


def test_pushed_package_loads_back_identical(
    hub: FakeHub, pushed: Pushed, loaded: Results, packages: dict[str, Path]
) -> None:
    assert hub.repos["me/pushed"].private
    stored = hub.files("me/pushed")
    local = read_folder(packages["small1"])
    assert {k: v for k, v in stored.items() if k != ".gitattributes"} == local
    result = loaded["pushed"]
    assert result["revision"] == pushed.commit
    assert_same_prediction(result, local_prediction(packages["small1"]))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("mismatch", ["num_answers=13", "14 answers", "config.json"]),
        ("corrupt", ["model.safetensors is not a valid safetensors file"]),
    ],
)
def test_inconsistent_packages_name_the_file(loaded: Results, case: str, words: list[str]) -> None:
    result = loaded[case]
    assert result["error"] == "ModelPackageError"
    for word in words:
        assert word in result["message"]


@dataclass
class Resolved:
    results: dict[str, dict[str, Any]]
    requests: list[HubRecord]  # what the fake Hub saw meanwhile
    torch_imported: bool


@pytest.fixture(scope="module")
def resolved(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Resolved:
    """resolve_model for each case, in one child that never needs torch."""
    cases: dict[str, dict[str, Any]] = {
        "private with token": {"repo": "org/private", "token": True},
        "private without token": {"repo": "org/private"},
        "wrong token": {"repo": "org/private", "token": True, "wrong": True},
        "missing repo": {"repo": "org/missing"},
        "bad revision": {"repo": "org/film", "revision": "no-such-branch"},
        "gated": {"repo": "org/gated", "token": True},
        "no weights": {"repo": "org/no-weights"},
        "not a repo id": {"repo": "/no/such/model"},
        "nested path": {"repo": "some/dir/model"},
        "local folder": {"repo": str(BUNDLED_MODEL)},
    }
    hub.clear_calls()
    env = child_env(hub.url, tmp_path_factory.mktemp("resolved") / "cache")
    *results, trailer = many(RESOLVE, env, list(cases.values()))
    return Resolved(dict(zip(cases, results, strict=True)), hub_calls(hub), trailer["torch imported"])


def test_private_repo_with_a_token(hub: FakeHub, resolved: Resolved) -> None:
    result = resolved.results["private with token"]
    assert result["revision"] == hub.repos["org/private"].refs["main"]
    assert result["from_cache"] is False
    assert set(result["files"]) == OUR_FILES
    private = [r for r in resolved.requests if "org/private" in r.path]
    assert any(r.authorized for r in private)  # the fake saw "Authorization: Bearer <the token>"
    assert any(not r.had_auth_header for r in private)  # ... and nothing from the token-less case


def test_resolving_hub_repos_needs_no_torch(resolved: Resolved) -> None:
    assert resolved.torch_imported is False


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("private without token", "ModelNotFoundError", ["org/private", "set HF_TOKEN"]),
        ("wrong token", "ModelNotFoundError", ["org/private", "HF_TOKEN can read", "token is valid"]),
        ("missing repo", "ModelNotFoundError", ["no public model repo org/missing", "check MODEL_REPO_ID"]),
        (
            "bad revision",
            "ModelNotFoundError",
            ["org/film has no revision 'no-such-branch'", "MODEL_REVISION"],
        ),
        ("gated", "ModelAccessError", ["org/gated is a gated model", "accept its terms", "/org/gated"]),
        (
            "no weights",
            "ModelNotFoundError",
            ["no weights file (model.safetensors", "best_modular_model.pth"],
        ),
        ("not a repo id", "ModelNotFoundError", ["MODEL_REPO_ID='/no/such/model' is not a model folder"]),
        ("nested path", "ModelNotFoundError", ["is not a model folder on this machine"]),
    ],
)
def test_failures_are_one_actionable_line(
    resolved: Resolved, case: str, error: str, words: list[str]
) -> None:
    result = resolved.results[case]
    assert result.get("error") == error, result
    assert "\n" not in result["message"]
    for word in words:
        assert word in result["message"]


def test_local_folder_is_used_as_is(resolved: Resolved) -> None:
    result = resolved.results["local folder"]
    assert result["revision"] is None and result["from_cache"] is False
    assert "model.safetensors" in result["files"]


# ------------------------------------------------------------------------------- cold caches


def test_offline_with_a_cold_cache_says_so(hub: FakeHub, tmp_path: Path) -> None:
    hub.clear_calls()
    result = hub_cli(child_env(hub.url, tmp_path / "cache", HF_HUB_OFFLINE="1"), "download", "org/film")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: HF_HUB_OFFLINE is set and org/film is not in the Hugging Face cache")
    assert hub.calls == []


def test_unreachable_hub_with_a_cold_cache_says_so(tmp_path: Path, down_hub_url: str) -> None:
    result = hub_cli(child_env(down_hub_url, tmp_path / "cache", HF_TOKEN=TOKEN), "download", "org/film")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot reach the Hugging Face Hub at {down_hub_url}")
    assert "not in the Hugging Face cache" in line and "check the network" in line


# ------------------------------------------------------------------------------------- push


def test_push_without_a_token_is_refused(hub: FakeHub, pushed: Pushed) -> None:
    assert pushed.refused.returncode == 1
    assert "set HF_TOKEN to a token with write access" in pushed.refused.stderr
    assert "me/refused" not in hub.repos


def test_push_refuses_an_invalid_package_before_sending_anything(
    hub: FakeHub, packages: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name, content in read_folder(packages["small0"]).items():
        (broken / name).write_bytes(content)
    (broken / "answers.txt").write_text("yes\nno\n")  # the model has 8 outputs
    hub.clear_calls()
    assert hub_main(["push", str(broken), "--repo", "me/broken"]) == 1  # in-process: nothing reaches a Hub
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "num_answers=8 but the answer list has 2 answers" in err
    assert hub.calls == []


# --------------------------------------------------------------------------- in-process, local


def test_load_model_from_a_local_folder_with_device_cuda_falls_back_to_cpu(
    packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        package = load_model(str(packages["small0"]), device="cuda")
    assert "DEVICE=cuda but no CUDA device is available" in caplog.text
    assert {p.device.type for p in package.model.parameters()} == {"cpu"}
    assert package.source == ModelSource(repo_id=str(packages["small0"]))
    assert package.model_id == str(packages["small0"]) and package.revision is None


def test_resolving_a_local_folder_imports_neither_torch_nor_huggingface_hub() -> None:
    result = run_child("resolve_local", str(BUNDLED_MODEL))
    assert result.stdout.split() == ["True", "False", "False"], result.stderr


def test_package_files_cover_both_layouts() -> None:
    assert {"model.safetensors", "best_modular_model.pth", "vocab.pkl", "data/answer_space.txt"} <= set(
        PACKAGE_FILES
    )


def test_resolve_model_keeps_a_local_folder_as_configured(packages: dict[str, Path]) -> None:
    folder, source = resolve_model(str(packages["small0"]))
    assert folder == packages["small0"] and source == ModelSource(repo_id=str(packages["small0"]))


def test_a_secret_in_a_log_record_is_scrubbed_from_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    """Belt and braces: even if a library logged the token, no handler would see it."""
    from vqa_engine.loading.hub import _scrubbed_logs

    with caplog.at_level(logging.INFO), _scrubbed_logs((TOKEN,)):
        logging.getLogger("huggingface_hub.demo").warning("sent Authorization: Bearer %s", TOKEN)
    logging.getLogger("huggingface_hub.demo").warning("after: %s", "plain")
    assert TOKEN not in caplog.text
    assert "Bearer ***" in caplog.text and "after: plain" in caplog.text
