"""Loss terms shared by the objectives: weighted code cross-entropy, hinge GAN loss, PSNR."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def weighted_code_ce(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, unmasked_weight: float,
                     label_smoothing: float = 0.0,
                     normaliser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Cross-entropy per slot, weight 1 on masked and ``unmasked_weight`` on context slots, normalised by the weights.

    logits (B, S, V), targets (B, S), masks (B, S) bool (True = masked). ``normaliser`` maps this
    batch's weight total to the denominator (data-parallel training: the global batch's share,
    :func:`trainers.distributed.global_normaliser`); by default the local total.
    """
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none", label_smoothing=label_smoothing)
    weights = torch.where(masks, torch.ones_like(ce), torch.full_like(ce, unmasked_weight))
    total = weights.sum()
    return (ce * weights).sum() / ((normaliser(total) if normaliser is not None else total) + 1e-8)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1], shape (B, 3, H, W) -> (B,)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)
