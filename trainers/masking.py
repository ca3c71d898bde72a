"""Training-time masking: which slots a step hides, and the ids a masked-prediction model then reads."""
from __future__ import annotations

import torch

from core.schedules import MASK_SCHEDULES


def random_masks(batch: int, slots: int, generator: torch.Generator, schedule: str = "arccos",
                 device: torch.device | str = "cpu", min_masked: int = 0) -> torch.Tensor:
    """Bool (B, S), True = masked. Per image t ~ U(0,1), ratio = schedule(t), round(S * ratio) random slots,
    at least ``min_masked`` of them."""
    t = torch.rand(batch, generator=generator)
    ratio = MASK_SCHEDULES[schedule](t).clamp(0.0, 1.0)
    num_masked = torch.round(slots * ratio).long().clamp(min_masked, slots)
    ranks = torch.rand(batch, slots, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < num_masked[:, None]).to(device)


def decoder_inputs(context: torch.Tensor, masks: torch.Tensor, mask_id: int) -> torch.Tensor:
    """What a masked-prediction model reads: the mask id where ``masks`` is True, the context code elsewhere."""
    return torch.where(masks, torch.full_like(context, mask_id), context)
