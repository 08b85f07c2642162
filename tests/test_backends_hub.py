"""Transformers models and ensembles from the Hub, with the real huggingface_hub client against the
loopback Hub of ``tests/fake_hub.py``. As in ``tests/test_hub.py``, the code under test runs in
child processes (huggingface_hub reads its settings at import), several cases per child."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import BUNDLED_MODEL
from tests.fake_hub import FakeHub, read_folder
from tests.test_hub import TOKEN, ask, child_env, many, run_together
from tests.tiny_models import VILT_ANSWERS, save_tiny_vilt

# one JSON line per case: what loaded, the answer
LOAD = "tests.children.load_backends"


def without_safetensors(folder: Path) -> dict[str, bytes]:
    """The same model as a repo that only has the pickled ``pytorch_model.bin`` (older uploads)."""
    from safetensors.torch import load_file

    files = {k: v for k, v in read_folder(folder).items() if k != "model.safetensors"}
    weights = io.BytesIO()
    torch.save(load_file(str(folder / "model.safetensors")), weights)
    return {**files, "pytorch_model.bin": weights.getvalue()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    vilt = save_tiny_vilt(tmp_path_factory.mktemp("hub-models") / "vilt")
    with FakeHub(TOKEN) as fake:
        # the files of a real transformers repo, plus what a package never needs
        fake.add_commit(
            "org/vilt", {**read_folder(vilt), "pytorch_model.bin": b"\0" * 64, "flax_model.msgpack": b"x"}
        )
        fake.add_commit("org/vilt-bin", without_safetensors(vilt))
        fake.add_commit("org/film", read_folder(BUNDLED_MODEL))
        yield fake


@pytest.fixture(scope="module")
def loaded(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case loaded once online (cold cache), then the .bin-only repo again offline."""
    cache = tmp_path_factory.mktemp("backends-hub") / "hub-cache"
    env = child_env(hub.url, cache)
    cases = {
        "vilt": {"model_repo_id": "org/vilt"},
        "vilt-bin": {"model_repo_id": "org/vilt-bin"},
        "ensemble": {"model_repo_id": "org/vilt:3,org/film@main:1"},
        "int8": {"model_repo_id": "org/vilt", "quantize": "int8"},
        "missing": {"model_repo_id": "org/vilt,org/nothing-here"},
    }
    online = many(LOAD, env, list(cases.values()))
    offline = many(LOAD, {**env, "HF_HUB_OFFLINE": "1"}, [cases["vilt-bin"], cases["ensemble"]])
    return {"cache": cache, **dict(zip(cases, online, strict=True)), "offline": offline}


def snapshot_files(cache: Path, repo: str) -> set[str]:
    snapshots = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    return {p.name for p in snapshots.rglob("*") if p.is_file()}


def test_a_transformers_repo_downloads_only_what_it_needs(loaded: dict[str, Any]) -> None:
    result = loaded["vilt"]
    assert result["info"]["backend"] == "transformers-classifier"
    assert result["info"]["revision"] is not None and len(result["info"]["revision"]) == 40
    assert result["answer"] in VILT_ANSWERS
    files = snapshot_files(loaded["cache"], "org/vilt")
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= files
    assert "pytorch_model.bin" not in files  # safetensors are there: the pickle is never fetched
    assert "flax_model.msgpack" not in files


def test_a_repo_with_only_pickled_weights_loads_them_safely_and_alike(loaded: dict[str, Any]) -> None:
    result = loaded["vilt-bin"]
    assert "pytorch_model.bin" in snapshot_files(loaded["cache"], "org/vilt-bin")
    assert [c["answer"] for c in result["top_k"]] == [c["answer"] for c in loaded["vilt"]["top_k"]]
    assert [c["confidence"] for c in result["top_k"]] == pytest.approx(
        [c["confidence"] for c in loaded["vilt"]["top_k"]], abs=1e-5
    )


def test_offline_the_cache_serves_what_was_fetched(loaded: dict[str, Any]) -> None:
    vilt_bin, ensemble = loaded["offline"]
    assert vilt_bin.get("error") is None, vilt_bin
    assert vilt_bin["top_k"] == loaded["vilt-bin"]["top_k"]
    assert ensemble.get("error") is None, ensemble
    assert ensemble["top_k"] == loaded["ensemble"]["top_k"]


def test_an_ensemble_from_the_hub(loaded: dict[str, Any]) -> None:
    info = loaded["ensemble"]["info"]
    assert info["backend"] == "ensemble"
    assert [(m["model_id"], m["backend"], m["weight"]) for m in info["members"]] == [
        ("org/vilt", "transformers-classifier", 0.75),
        ("org/film", "modular", 0.25),
    ]
    assert all(len(m["revision"]) == 40 for m in info["members"])  # each pinned to its commit


def test_int8_from_the_hub(loaded: dict[str, Any]) -> None:
    info = loaded["int8"]["info"]
    assert (info["quantize"], info["dtype"].split()[0]) == ("int8", "int8")
    assert loaded["int8"]["answer"] == loaded["vilt"]["answer"]


def test_a_member_missing_from_the_hub_is_named(loaded: dict[str, Any]) -> None:
    result = loaded["missing"]
    assert result["error"] == "ModelNotFoundError"
    assert result["message"].startswith("ensemble member 2 of 2 (org/nothing-here) cannot load: ")
    assert "MODEL_REPO_ID" in result["message"]


def test_main_ask_with_an_ensemble_and_int8(hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    good = child_env(hub.url, cache, MODEL_REPO_ID=f"org/vilt,{BUNDLED_MODEL}:0.5", QUANTIZE="int8")
    bad = child_env(hub.url, cache, MODEL_REPO_ID="org/vilt:x")
    answered, refused = run_together(lambda: ask(good, "--json"), lambda: ask(bad))
    assert answered.returncode == 0, answered.stderr
    prediction = json.loads(answered.stdout)
    assert prediction["answer"] and len(prediction["top_k"]) == 3
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: cannot load the model: MODEL_REPO_ID entry 'org/vilt:x': the weight after ':' must be a "
        "positive number, not 'x'"
    )
