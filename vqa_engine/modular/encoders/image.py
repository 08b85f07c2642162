"""Image encoders: images (B, 3, H, W) in, a feature map (B, C, h, w) out."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Stride-2 conv+BN+ReLU stages: enough for synthetic scenes, tiny on disk.

    Stride-2 convolutions instead of conv + max-pool: the same output size at a quarter of the
    full-resolution work (7x faster training steps on a 2-core CPU).
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        assert channels, "SmallCNN needs at least one stage"
        stages: list[nn.Module] = []
        in_ch = 3
        for out_ch in channels:
            stages += [
                nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        self.body = nn.Sequential(*stages)
        self.out_channels = in_ch
        self.stage_channels = tuple(channels)  # of each map ``feature_maps`` returns

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # (B, C, H / 2**stages, W / 2**stages)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, first to last (the last is ``forward``'s): what the image
        familiarity statistics describe. The same modules in the same order, so no extra cost."""
        maps = []
        x = images
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i % 3 == 2:  # after each conv+BN+ReLU stage
                maps.append(x)  # (B, C_i, H / 2**(i+1), W / 2**(i+1))
        return maps


class TorchvisionBackbone(nn.Module):
    """A torchvision classification network without its head, trained from scratch (weights=None)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import torchvision.models as tvm  # lazy: torchvision costs ~1.4 s to import

        if name == "resnet18":
            net = tvm.resnet18(weights=None)
            self.body = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
            self.out_channels = 512
        elif name == "mobilenet_v3_small":
            net = tvm.mobilenet_v3_small(weights=None)
            self.body = net.features
            self.out_channels = 576
        else:
            raise ValueError(f"unknown torchvision backbone {name!r}")
        self.stage_channels = (self.out_channels,)  # of each map ``feature_maps`` returns

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # (B, C, H / 32, W / 32)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The last feature map only (the backbones' inner stages are not split out)."""
        return [self.body(images)]
