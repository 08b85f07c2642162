"""``ModularVQA``: image encoder + question encoder + fusion + classifier, built from one config."""

from __future__ import annotations

import torch
from torch import nn

from vqa_engine.modular.encoders import build_image_encoder, build_question_encoder
from vqa_engine.modular.fusion import build_fusion
from vqa_engine.modular.model_config import ModelConfig


class Classifier(nn.Module):
    """One hidden layer over the fused vector; logits over the answer space."""

    def __init__(self, in_dim: int, hidden: int, num_answers: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_answers)
        )

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused)  # (B, A)


class ModularVQA(nn.Module):
    """The whole model; every part is swappable through ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = build_image_encoder(config)
        self.question_encoder = build_question_encoder(config)
        self.fusion = build_fusion(config, self.image_encoder.out_channels, self.question_encoder.out_dim)
        self.classifier = Classifier(
            self.fusion.out_dim, config.classifier_hidden, config.num_answers, config.dropout
        )

    def forward(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """images (I, 3, S, S) normalised; tokens (B, T) padded ids; lengths (B,) -> logits (B, A).

        Without ``image_index`` question b is about image b (I == B). With it, question b is about
        image ``image_index[b]``: several questions about one image encode that image once.
        """
        return self._answer(self.image_encoder(images), tokens, lengths, image_index)

    def forward_with_features(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward``'s logits (B, A), and the image encoder's feature map after each stage,
        per image ([(I, C_i, h_i, w_i), ...], the last one is what the fusion reads): the same
        pass, so checking how familiar an image looks costs no second encoding."""
        maps = self.image_encoder.feature_maps(images)
        return self._answer(maps[-1], tokens, lengths, image_index), maps

    def _answer(
        self,
        features: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        image_index: torch.Tensor | None,
    ) -> torch.Tensor:
        assert tokens.shape[0] == lengths.shape[0], "tokens and lengths differ in batch size"
        if image_index is not None:
            features = features[image_index]  # (B, C, h, w)
        assert features.shape[0] == tokens.shape[0], "one image per question is needed"
        question = self.question_encoder(tokens, lengths)  # (B, D)
        return self.classifier(self.fusion(features, question))  # (B, A)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
