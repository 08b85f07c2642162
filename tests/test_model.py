"""Every combination of encoders and fusions builds and produces one row of logits per input."""

from __future__ import annotations

import pytest
import torch

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.model import ModularVQA
from vqa_engine.modular.model_config import FUSIONS, QUESTION_ENCODERS, ModelConfig


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("question_encoder", QUESTION_ENCODERS)
def test_small_cnn_combinations(question_encoder: str, fusion: str) -> None:
    config = ModelConfig(vocab_size=30, num_answers=7, question_encoder=question_encoder, fusion=fusion)
    model = ModularVQA(config).eval()
    images = torch.randn(5, 3, 64, 64)
    tokens = torch.randint(2, 30, (5, 9))
    lengths = torch.tensor([9, 4, 1, 7, 2])
    tokens[1, 4:] = 0
    logits = model(images, tokens, lengths)
    assert logits.shape == (5, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_backbones_from_scratch(backbone: str) -> None:
    config = ModelConfig(image_encoder=backbone, fusion="product", question_encoder="bow")
    model = ModularVQA(config).eval()
    logits = model(torch.randn(2, 3, 64, 64), torch.randint(2, 28, (2, 5)), torch.tensor([5, 3]))
    assert logits.shape == (2, config.num_answers)


def test_padding_does_not_change_the_answer() -> None:
    """A question padded to a longer batch gives the same logits as alone."""
    model = ModularVQA(ModelConfig()).eval()
    image = torch.randn(1, 3, 64, 64)
    alone = model(image, torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    padded = model(image, torch.tensor([[5, 6, 7, 0, 0, 0]]), torch.tensor([3]))
    torch.testing.assert_close(alone, padded)


def test_bundled_default_is_small() -> None:
    model = ModularVQA(ModelConfig())
    assert model.num_parameters() * 4 < 1_000_000  # float32 weights under 1 MB


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fusion", "attention"),
        ("image_encoder", "vit"),
        ("question_encoder", "bert"),
        ("resize_mode", "crop"),
    ],
)
def test_config_rejects_unknown_modules(field: str, value: str) -> None:
    with pytest.raises(ModelPackageError, match=field):
        ModelConfig(**{field: value})  # type: ignore[arg-type]  # (a bad value is the point)


def test_config_json_round_trip() -> None:
    config = ModelConfig(fusion="concat", cnn_channels=(8, 16), temperature=0.7)
    assert ModelConfig.from_json_dict(config.to_json_dict()) == config


def test_config_from_newer_format_is_refused() -> None:
    data = ModelConfig().to_json_dict() | {"format_version": 99}
    with pytest.raises(ModelPackageError, match="upgrade vqa-chat"):
        ModelConfig.from_json_dict(data)
