"""PatchGAN discriminator (trains from scratch) for the stage-3 adversarial loss."""
from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Conv stack with stride-2 downsampling; one real/fake logit per patch. Input in [0, 1]."""

    def __init__(self, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers):
            out = channels * min(2 ** i, 8)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            width = out
        layers += [nn.Conv2d(width, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)
