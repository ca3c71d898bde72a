"""Mild, label-preserving changes to training crops, so a few photos look like more.

A crop is mirrored left-right with probability ``flip_prob`` and, with probability ``jitter_prob``, its
brightness, contrast and saturation are each scaled by a factor drawn uniformly from
``[1 - jitter, 1 + jitter]``. Mild on purpose: the tokenizer must reproduce colours, so the jitter only
widens the palette a little around each photo's own. Everything is drawn from the caller's generator,
in a fixed order, so a seed gives the same crops.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

_ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)


@dataclass(frozen=True)
class Augmentation:
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.flip_prob <= 1 and 0 <= self.jitter_prob <= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"augmentation: probabilities in [0, 1] and jitter in [0, 1), got {self}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Applied:
    """What one call did: whether it mirrored, and the (brightness, contrast, saturation) factors or None."""

    flipped: bool
    factors: tuple[float, float, float] | None


DEFAULT = Augmentation()
NONE = Augmentation(flip_prob=0.0, jitter_prob=0.0, jitter=0.0)


def augment(image: Image.Image, settings: Augmentation, rng: np.random.Generator) -> tuple[Image.Image, Applied]:
    """``image`` possibly mirrored and colour-jittered; the draws are made even when a change is skipped."""
    flip = bool(rng.random() < settings.flip_prob)
    jitter = bool(rng.random() < settings.jitter_prob)
    factors = tuple(float(f) for f in rng.uniform(1 - settings.jitter, 1 + settings.jitter, size=3))
    if flip:
        image = ImageOps.mirror(image)
    if jitter:
        for enhancer, factor in zip(_ENHANCERS, factors):
            image = enhancer(image).enhance(factor)
    return image, Applied(flip, factors if jitter else None)
