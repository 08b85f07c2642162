"""Model packages: save/load round trips, the seed's file names, and refusing hostile files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import ANSWERS, build_model, png_bytes
from vqa_engine.errors import ModelPackageError, UnsafePickleError
from vqa_engine.modular.package import load_package, save_package
from vqa_engine.modular.predictor import Predictor

IMAGES = [png_bytes((255, 0, 0)), png_bytes((0, 0, 255), (80, 40)), png_bytes((0, 128, 0), (30, 90))]
QUESTIONS = ["what shape is in the image?", "what color is the shape?", "is there a red shape?"]


def probabilities(package_dir: Path) -> torch.Tensor:
    predictor = Predictor(load_package(package_dir))
    images = torch.stack([predictor.preprocess(b) for b in IMAGES])
    return predictor.probabilities(images, QUESTIONS)


def write_seed_package(folder: Path, *, checkpoint_key: str | None = None) -> Path:
    """A package as the seed's guide saves it: .pth state dict, pickled {word: id}, answer_space.txt."""
    model, vocab, answers = build_model()
    folder.mkdir()
    state = model.state_dict()
    torch.save(
        {checkpoint_key: state, "epoch": 3} if checkpoint_key else state, folder / "best_modular_model.pth"
    )
    (folder / "vocab.pkl").write_bytes(pickle.dumps({w: i for i, w in enumerate(vocab.tokens)}))
    (folder / "data").mkdir()
    (folder / "data" / "answer_space.txt").write_text("\n".join(answers) + "\n")
    (folder / "config.json").write_text(json.dumps(model.config.to_json_dict()))
    return folder


@pytest.mark.parametrize(
    "overrides",
    [{}, {"fusion": "concat", "question_encoder": "bow"}, {"fusion": "product", "question_encoder": "lstm"}],
)
def test_round_trip_gives_identical_predictions(tmp_path: Path, overrides: dict) -> None:
    model, vocab, answers = build_model(**overrides)
    save_package(tmp_path / "a", model, vocab, answers)
    loaded = load_package(tmp_path / "a")
    assert loaded.config == model.config
    assert loaded.vocab == vocab and loaded.answers == answers
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    save_package(tmp_path / "b", loaded.model, loaded.vocab, loaded.answers)
    assert torch.equal(probabilities(tmp_path / "a"), probabilities(tmp_path / "b"))


def test_package_files(small_package: Path) -> None:
    names = sorted(p.name for p in small_package.iterdir())
    assert names == ["README.md", "answers.txt", "config.json", "model.safetensors", "vocab.json"]
    assert load_package(small_package).card == "# test model\n"


@pytest.mark.parametrize("checkpoint_key", [None, "model_state_dict", "state_dict"])
def test_seed_file_names_load_with_identical_predictions(
    tmp_path: Path, small_package: Path, checkpoint_key: str | None
) -> None:
    seed = write_seed_package(tmp_path / "seed", checkpoint_key=checkpoint_key)
    package = load_package(seed)
    assert package.answers == ANSWERS
    assert torch.equal(probabilities(seed), probabilities(small_package))


def test_seed_package_without_config_uses_default_architecture(tmp_path: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    (seed / "config.json").unlink()
    assert load_package(seed).config.fusion == "film"


def test_dataparallel_prefix_is_accepted(tmp_path: Path, small_package: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    state = torch.load(seed / "best_modular_model.pth", weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, seed / "best_modular_model.pth")
    assert torch.equal(probabilities(seed), probabilities(small_package))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_vocab_pickle_is_refused_without_running(tmp_path: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    marker = tmp_path / "pwned"
    (seed / "vocab.pkl").write_bytes(pickle.dumps({"<pad>": 0, "x": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError, match=r"refusing .* (posix|os)\.system"):
        load_package(seed)
    assert not marker.exists()


def test_pickle_of_an_arbitrary_class_is_refused(tmp_path: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    (seed / "vocab.pkl").write_bytes(pickle.dumps({"<pad>": 0, "p": Path("/etc/passwd")}))
    with pytest.raises(UnsafePickleError, match="pathlib"):
        load_package(seed)


def test_malicious_weights_pickle_is_refused_without_running(tmp_path: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    marker = tmp_path / "pwned"
    torch.save({"weight": _Exploit(marker)}, seed / "best_modular_model.pth")
    with pytest.raises(ModelPackageError, match="objects other than tensors"):
        load_package(seed)
    assert not marker.exists()


def test_garbage_pickle_is_refused(tmp_path: Path) -> None:
    seed = write_seed_package(tmp_path / "seed")
    (seed / "vocab.pkl").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(UnsafePickleError, match="malformed"):
        load_package(seed)


def test_weights_not_matching_config(tmp_path: Path, small_package: Path) -> None:
    config = json.loads((small_package / "config.json").read_text())
    config["film_channels"] = 16
    (small_package / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPackageError, match=r"does not match config.json.*shape"):
        load_package(small_package)


def test_answer_count_not_matching_config(small_package: Path) -> None:
    (small_package / "answers.txt").write_text("yes\nno\n")
    with pytest.raises(ModelPackageError, match="num_answers=8 but the answer list has 2"):
        load_package(small_package)


def test_vocab_size_not_matching_config(small_package: Path) -> None:
    (small_package / "vocab.json").write_text(json.dumps({"tokens": ["<pad>", "<unk>", "what"]}))
    with pytest.raises(ModelPackageError, match="vocab_size"):
        load_package(small_package)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model.safetensors", "missing model.safetensors or best_modular_model.pth"),
        ("vocab.json", "missing vocab.json or vocab.pkl"),
        ("answers.txt", "missing answers.txt or data/answer_space.txt"),
    ],
)
def test_missing_files_are_named(small_package: Path, name: str, message: str) -> None:
    (small_package / name).unlink()
    with pytest.raises(ModelPackageError, match=message):
        load_package(small_package)


def test_corrupt_weights(small_package: Path) -> None:
    data = (small_package / "model.safetensors").read_bytes()
    (small_package / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelPackageError, match="not a valid safetensors file"):
        load_package(small_package)


def test_broken_config_json(small_package: Path) -> None:
    (small_package / "config.json").write_text("{not json")
    with pytest.raises(ModelPackageError, match="not valid JSON"):
        load_package(small_package)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="does not exist"):
        load_package(tmp_path / "nowhere")


def test_duplicate_answers(small_package: Path) -> None:
    shutil.copy(small_package / "answers.txt", small_package / "a")
    (small_package / "answers.txt").write_text("yes\nyes\nno\nred\nblue\ncircle\nblack\ntriangle\n")
    with pytest.raises(ModelPackageError, match="same answer twice"):
        load_package(small_package)
