"""Derived random generators, so a result for one (batch, setting) does not depend on what ran before it."""
from __future__ import annotations

import numpy as np
import torch


def derived_seed(*parts: int) -> int:
    """A 63-bit seed that is a fixed function of the integer ``parts`` (base seed first)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def derived_generator(device: torch.device | str, *parts: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derived_seed(*parts))
