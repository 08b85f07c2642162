"""The architecture of a ``ModularVQA`` model: one dataclass, stored as ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.config_json import FORMAT_VERSION, parse_config

MODEL_TYPE = "modular-vqa"

IMAGE_ENCODERS = ("cnn", "resnet18", "mobilenet_v3_small")
QUESTION_ENCODERS = ("bow", "gru", "lstm")
FUSIONS = ("concat", "product", "film")
RESIZE_MODES = ("pad", "stretch")


@dataclass
class ModelConfig:
    """Hyper-parameters of every module; defaults are the bundled easy-VQA model."""

    # sizes fixed by the data files (vocab.json, answers.txt)
    vocab_size: int = 28
    num_answers: int = 13
    # image input
    image_size: int = 64  # square side the image is resized to
    resize_mode: str = "pad"  # "pad": keep aspect, pad with pad_color; "stretch": squash
    pad_color: tuple[int, int, int] = (255, 255, 255)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # image encoder: "cnn" (small conv net) or a torchvision backbone trained from scratch
    image_encoder: str = "cnn"
    cnn_channels: tuple[int, ...] = (16, 32)  # one stride-2 conv+BN+ReLU stage each
    # question encoder: "bow" (bag of words) or an embedding + "gru"/"lstm"
    question_encoder: str = "gru"
    embed_dim: int = 32
    question_dim: int = 64
    max_question_tokens: int = 32
    # fusion: "concat", "product" (element-wise) or "film" (question-conditioned conv blocks)
    fusion: str = "film"
    fusion_dim: int = 128  # concat/product: width of the fused vector
    film_blocks: int = 2
    film_channels: int = 32
    # classifier over the answer space
    classifier_hidden: int = 64
    dropout: float = 0.1
    # softmax temperature fitted after training (calibration); 1.0 = none
    temperature: float = 1.0

    def __post_init__(self) -> None:
        choices = {
            "image_encoder": IMAGE_ENCODERS,
            "question_encoder": QUESTION_ENCODERS,
            "fusion": FUSIONS,
            "resize_mode": RESIZE_MODES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ModelPackageError(f"config.json: {name}={value!r} is not one of {', '.join(allowed)}")
        for name in ("vocab_size", "num_answers", "image_size", "embed_dim", "question_dim"):
            if int(getattr(self, name)) < 1:
                raise ModelPackageError(f"config.json: {name} must be a positive integer")
        if self.temperature <= 0:
            raise ModelPackageError("config.json: temperature must be positive")
        # JSON gives lists; keep tuples so configs compare equal after a round trip
        self.cnn_channels = tuple(int(c) for c in self.cnn_channels)
        self.pad_color = tuple(int(c) for c in self.pad_color)  # type: ignore[assignment]
        self.image_mean = tuple(float(c) for c in self.image_mean)  # type: ignore[assignment]
        self.image_std = tuple(float(c) for c in self.image_std)  # type: ignore[assignment]

    def to_json_dict(self) -> dict[str, Any]:
        """The ``config.json`` document: format header plus every field."""
        return {"format_version": FORMAT_VERSION, "model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Parse ``config.json``; raises ``ModelPackageError`` for a newer format or unknown keys."""
        if isinstance(data, dict) and "model_type" not in data:
            data = {**data, "model_type": MODEL_TYPE}  # our first packages did not say
        return parse_config(
            cls,
            data,
            model_type=MODEL_TYPE,
            wrong_type=f"config.json: model_type {{found!r}} is not {MODEL_TYPE!r}",
        )
