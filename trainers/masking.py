"""Training-time masking of proxy-code slots and the SFVR context that fills unmasked slots."""
from __future__ import annotations

import torch

from core.schedules import MASK_SCHEDULES


def random_masks(batch: int, slots: int, generator: torch.Generator, schedule: str = "arccos",
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool (B, S), True = masked. Per image t ~ U(0,1), ratio = schedule(t), round(S * ratio) random slots."""
    t = torch.rand(batch, generator=generator)
    ratio = MASK_SCHEDULES[schedule](t).clamp(0.0, 1.0)
    num_masked = torch.round(slots * ratio).long().clamp(0, slots)
    ranks = torch.rand(batch, slots, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < num_masked[:, None]).to(device)


def fill_context(teacher_codes: torch.Tensor, masks: torch.Tensor, mask_id: int, own_predictions: torch.Tensor | None,
                 replace_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Decoder input ids: mask id where masked; elsewhere the model's own prediction with
    probability ``replace_prob`` (SFVR) or the teacher's code (vanilla, ``own_predictions=None``)."""
    context = teacher_codes
    if own_predictions is not None:
        use_own = torch.rand(teacher_codes.shape, generator=generator).to(teacher_codes.device) < replace_prob
        context = torch.where(use_own, own_predictions, teacher_codes)
    return torch.where(masks, torch.full_like(context, mask_id), context)
