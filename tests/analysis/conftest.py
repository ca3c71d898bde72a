"""Shared fixtures: a random-init tiny SFTok, a tiny teacher, small photo crops, and toy decoders."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core import MaskGITVQGAN, SFTok, create_config


@pytest.fixture(scope="session")
def tiny_model() -> SFTok:
    torch.manual_seed(0)
    return SFTok(create_config("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_teacher() -> MaskGITVQGAN:
    torch.manual_seed(1)
    return MaskGITVQGAN(create_config("tiny").teacher).eval()


def photo_crops(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(count, size, size, 3) uint8 crops of scikit-image's sample photos."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        side = int(rng.integers(size, min(src.shape[:2]) // 2))
        y, x = int(rng.integers(0, src.shape[0] - side)), int(rng.integers(0, src.shape[1] - side))
        out.append(np.asarray(Image.fromarray(src[y:y + side, x:x + side]).resize((size, size), Image.BICUBIC)))
    return np.stack(out)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """(6, 3, 64, 64) float images in [0, 1]."""
    return torch.from_numpy(photo_crops(6)).permute(0, 3, 1, 2).float() / 255.0


class ContextFreeDecoder(nn.Module):
    """Predicts every slot from z_q alone (z_q: (B, S) hint ids); the proxy ids are ignored."""

    def __init__(self, num_hints: int, vocab: int, seed: int = 0) -> None:
        super().__init__()
        self.table = torch.randn(num_hints, vocab, generator=torch.Generator().manual_seed(seed)) * 2

    def forward(self, proxy_ids: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        return self.table[z_q]


class CopyLeftDecoder(nn.Module):
    """Puts ``strength`` on the code of the left neighbour when it is revealed; uniform otherwise."""

    def __init__(self, vocab: int, mask_id: int, strength: float = 3.0) -> None:
        super().__init__()
        self.vocab, self.mask_id, self.strength = vocab, mask_id, strength

    def forward(self, proxy_ids: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        b, s = proxy_ids.shape
        logits = torch.zeros(b, s, self.vocab)
        left = proxy_ids[:, :-1]
        known = left != self.mask_id
        onehot = nn.functional.one_hot(left.clamp(max=self.vocab - 1), self.vocab).float() * self.strength
        logits[:, 1:] = torch.where(known.unsqueeze(-1), onehot, torch.zeros_like(onehot))
        return logits


class OracleDecoder(nn.Module):
    """Knows the answer: z_q holds the true codes; confident logits on them, whatever the context."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, proxy_ids: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(z_q, self.vocab).float() * 30.0
