"""Fusion modules: an image feature map and a question vector in, one vector out."""

from __future__ import annotations

from vqa_engine.modular.fusion.film import FiLMFusion
from vqa_engine.modular.fusion.simple import ConcatFusion, ProductFusion
from vqa_engine.modular.model_config import ModelConfig

__all__ = ["ConcatFusion", "FiLMFusion", "ProductFusion", "build_fusion"]


def build_fusion(
    config: ModelConfig, image_channels: int, question_dim: int
) -> ConcatFusion | ProductFusion | FiLMFusion:
    """The fusion named by ``config.fusion``; it exposes ``out_dim``."""
    if config.fusion == "concat":
        return ConcatFusion(image_channels, question_dim, config.fusion_dim)
    if config.fusion == "product":
        return ProductFusion(image_channels, question_dim, config.fusion_dim)
    return FiLMFusion(image_channels, question_dim, config.film_channels, config.film_blocks)
