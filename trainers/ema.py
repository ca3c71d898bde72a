"""Exponential moving average of the trainable parameters; frozen ones and buffers are copied exactly."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .schedules import ema_decay


class EMA:
    def __init__(self, model: nn.Module, max_decay: float = 0.999) -> None:
        self.max_decay = max_decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                       for k, v in model.state_dict().items()}
        self._backup: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = ema_decay(self.num_updates, self.max_decay)
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if key in trainable:  # frozen parameters and buffers are copied exactly, not averaged
                shadow.mul_(decay).add_(value.detach().float(), alpha=1 - decay)
            else:
                shadow.copy_(value)
        self.num_updates += 1

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})

    def store(self, model: nn.Module) -> None:
        self._backup = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        if self._backup is None:
            raise RuntimeError("EMA.restore called without a matching store")
        model.load_state_dict(self._backup)
        self._backup = None

    def load(self, shadow: Mapping[str, torch.Tensor], num_updates: int) -> None:
        """Resume from a checkpoint's averaged weights and update count (the decay warm-up depends on it)."""
        self.shadow = {k: v.detach().clone() for k, v in shadow.items()}
        self.num_updates = int(num_updates)
