"""Pure schedule functions: learning rate (linear warm-up + cosine) and EMA decay."""
from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, max_steps: int, end_lr: float) -> float:
    """Linear warm-up from 0 to base_lr, then cosine from base_lr to end_lr at max_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return end_lr + 0.5 * (base_lr - end_lr) * (1 + math.cos(math.pi * progress))


def ema_decay(ema_step: int, max_decay: float = 0.999) -> float:
    """Official warm-up of the EMA decay: min(max_decay, (1 + k) / (10 + k))."""
    return min(max_decay, (1 + ema_step) / (10 + ema_step))
