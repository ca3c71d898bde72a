"""Mask schedules shared by decoding, training-time masking and the generator."""
from __future__ import annotations

import math

import torch


def arccos_mask_ratio(r: float | torch.Tensor) -> float | torch.Tensor:
    """Fraction of slots still masked at progress r in [0, 1]: arccos(r) / (pi / 2)."""
    if isinstance(r, torch.Tensor):
        return torch.arccos(r) / (math.pi / 2)
    return math.acos(r) / (math.pi / 2)


MASK_SCHEDULES = {
    "arccos": lambda t: torch.arccos(t) / (math.pi / 2),
    "linear": lambda t: 1 - t,
    "cosine": lambda t: torch.cos(t * math.pi / 2),
    "square": lambda t: 1 - t ** 2,
}


def num_masked_after_step(step: int, num_steps: int, num_slots: int, num_masked_now: int) -> int:
    """Slots left masked after ``step`` (official rule): max(1, min(masked - 1, floor(S * arccos(r)/(pi/2))))."""
    r = (step + 1) / num_steps
    target = math.floor(num_slots * arccos_mask_ratio(r))
    return max(1, min(num_masked_now - 1, target))
