"""Fusions that pool the image first: concatenation and element-wise product."""

from __future__ import annotations

import torch
from torch import nn


def pool_image(features: torch.Tensor) -> torch.Tensor:
    """Mean and max over space, side by side: (B, C, h, w) -> (B, 2C)."""
    return torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)


class ConcatFusion(nn.Module):
    """[pooled image ; question] through one hidden layer."""

    def __init__(self, image_channels: int, question_dim: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * image_channels + question_dim, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([pool_image(features), question], dim=1))  # (B, out_dim)


class ProductFusion(nn.Module):
    """Both sides projected to one width and multiplied element-wise."""

    def __init__(self, image_channels: int, question_dim: int, out_dim: int) -> None:
        super().__init__()
        self.image_proj = nn.Sequential(nn.Linear(2 * image_channels, out_dim), nn.Tanh())
        self.question_proj = nn.Sequential(nn.Linear(question_dim, out_dim), nn.Tanh())
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.image_proj(pool_image(features)) * self.question_proj(question)  # (B, out_dim)
