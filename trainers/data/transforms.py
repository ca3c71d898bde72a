"""The official image transforms: resize the shorter side (bicubic, antialias) -> crop -> flip -> [0, 1].

No mean/std normalisation: SFTok and the teacher take images in [0, 1] (reference section 2.1).
Randomness comes from an explicit :class:`random.Random`, so a seeded stream is reproducible.
torchvision is imported on first use: importing it pulls in torch._dynamo (about 3 s of CPU), which the
app's start-up and every CLI that only lists or reads datasets would otherwise pay.
"""
from __future__ import annotations

import random
from types import ModuleType

import torch
from PIL import Image


def _functional() -> ModuleType:
    import torchvision.transforms.functional as TF

    return TF


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Shorter side -> ``size``, aspect kept; a no-op when it already is."""
    if min(image.size) == size:
        return image
    TF = _functional()
    return TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)


def crop_square(image: Image.Image, size: int, rng: random.Random | None = None) -> Image.Image:
    """A ``size`` x ``size`` crop: uniformly placed with ``rng``, centred without it."""
    width, height = image.size
    TF = _functional()
    if rng is None:
        return TF.center_crop(image, [size, size])
    top, left = rng.randint(0, height - size), rng.randint(0, width - size)
    return TF.crop(image, top, left, size, size)


def eval_view(image: Image.Image, size: int) -> Image.Image:
    """Eval transform (and the view the proxy cache encodes): resize shorter side, centre crop."""
    return crop_square(resize_shorter(image, size), size)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return _functional().to_tensor(image)


def hflip(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
