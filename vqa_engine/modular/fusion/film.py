"""FiLM (Perez et al., 2018): the question scales and shifts every channel of the image features."""

from __future__ import annotations

import torch
from torch import nn


class FiLMBlock(nn.Module):
    """conv1x1 -> conv3x3 -> BN -> FiLM(gamma, beta) -> ReLU, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)  # FiLM supplies the affine part

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))  # (B, C, h, w)
        y = self.norm(self.conv2(x))
        y = gamma[:, :, None, None] * y + beta[:, :, None, None]
        return x + torch.relu(y)


class FiLMFusion(nn.Module):
    """Residual FiLM blocks over the feature map, then a global max pool."""

    def __init__(self, image_channels: int, question_dim: int, channels: int, blocks: int) -> None:
        super().__init__()
        assert blocks >= 1, "FiLM fusion needs at least one block"
        self.stem = nn.Sequential(
            nn.Conv2d(image_channels, channels, kernel_size=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.film = nn.Linear(question_dim, 2 * channels * blocks)  # gamma and beta per block
        self.blocks = nn.ModuleList(FiLMBlock(channels) for _ in range(blocks))
        self.channels = channels
        self.out_dim = channels

    def forward(self, features: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        x = self.stem(features)  # (B, C, h, w)
        params = self.film(question).view(-1, len(self.blocks), 2, self.channels)
        for i, block in enumerate(self.blocks):
            gamma = 1.0 + params[:, i, 0]  # predicted around identity
            beta = params[:, i, 1]
            x = block(x, gamma, beta)
        return x.amax(dim=(2, 3))  # (B, C)
