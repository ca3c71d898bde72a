"""Random draws that do not depend on how the global batch is split over processes.

Every sample's draws (its mask, its SFVR replacement, its class dropout) come from a generator of
its own, seeded by (seed, step, global sample index). So 2 ranks at batch b draw exactly what one
process at batch 2b draws, and a resumed run draws what the uninterrupted one did with no generator
state on disk. Draws that are not per sample (dropout inside a model, sampling in a batched decode)
use a (seed, step, rank) seed: reproducible, and different on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

_SAMPLE_STREAM, _RANK_STREAM = 0, 1


def mixed_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence), so nearby inputs give unrelated streams."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def rank_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the draws of one rank at one step that are not tied to a sample."""
    return mixed_seed(seed, _RANK_STREAM, step, rank)


@dataclass
class Draws:
    """One generator per sample of a rank's batch, plus one for draws over the whole batch."""

    samples: list[torch.Generator]
    batch: torch.Generator

    @classmethod
    def make(cls, seed: int, step: int, first_index: int, count: int, rank: int = 0) -> "Draws":
        """Draws of samples ``first_index .. first_index + count - 1`` of the global batch of ``step``."""
        samples = [torch.Generator().manual_seed(mixed_seed(seed, _SAMPLE_STREAM, step, first_index + i))
                   for i in range(count)]
        return cls(samples, torch.Generator().manual_seed(rank_seed(seed, step, rank)))

    def per_sample(self, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        """``draw(generator)`` for each sample (a (1, ...) tensor each), stacked into the batch."""
        return torch.cat([draw(g) for g in self.samples])
