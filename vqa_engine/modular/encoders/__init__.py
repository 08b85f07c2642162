"""Image and question encoders, chosen by name in ``ModelConfig``."""

from __future__ import annotations

from vqa_engine.modular.encoders.image import SmallCNN, TorchvisionBackbone
from vqa_engine.modular.encoders.question import BagOfWords, RecurrentEncoder
from vqa_engine.modular.model_config import ModelConfig

__all__ = [
    "BagOfWords",
    "RecurrentEncoder",
    "SmallCNN",
    "TorchvisionBackbone",
    "build_image_encoder",
    "build_question_encoder",
]


def build_image_encoder(config: ModelConfig) -> SmallCNN | TorchvisionBackbone:
    """The image encoder named by ``config.image_encoder``; it exposes ``out_channels``."""
    if config.image_encoder == "cnn":
        return SmallCNN(config.cnn_channels)
    return TorchvisionBackbone(config.image_encoder)


def build_question_encoder(config: ModelConfig) -> BagOfWords | RecurrentEncoder:
    """The question encoder named by ``config.question_encoder``; it exposes ``out_dim``."""
    if config.question_encoder == "bow":
        return BagOfWords(config.vocab_size, config.embed_dim, config.question_dim)
    return RecurrentEncoder(config.vocab_size, config.embed_dim, config.question_dim, config.question_encoder)
