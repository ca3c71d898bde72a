"""The default dataset's photographs, split into training photos and photos held out whole.

Photos come from installed packages (:mod:`trainers.data.photo_sources`), so a default dataset needs no
download. Each photo becomes one class. The held-out photos never give a training crop, so validation
measures generalisation to unseen photographs, not to other crops of seen ones: the first three are the
ones held out since the first default model (the shipped samples are views of them), the other two come
from sources added later.

A :class:`PhotoSet` names which photos train and which are held out. ``packages-v2`` reads PyPI wheels only,
so it is the default (the app builds it offline, from its own dependencies); ``packages-v3`` adds the Debian
packages' photos: those under permissive licences train, those marked evaluation-only join the held-out photos.
The default model's recipe names its set in ``scripts/train_default_model.py``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .photo_sources import PHOTOS, SOURCE_OF

VAL_PHOTOS = ("coffee", "flower", "camera", "goodstuff", "city")


@dataclass(frozen=True)
class PhotoSet:
    """Which photos give training crops and which are held out whole (class ids: training first)."""

    name: str
    train: tuple[str, ...]
    held_out: tuple[str, ...]


def _photos(kind: str, evaluation_only: bool) -> tuple[str, ...]:
    return tuple(name for name, photo in PHOTOS.items()
                 if SOURCE_OF[name].kind == kind and photo.evaluation_only == evaluation_only and name not in VAL_PHOTOS)


_V2 = PhotoSet("packages-v2", _photos("pypi", False), VAL_PHOTOS)
PHOTO_SETS: dict[str, PhotoSet] = {
    _V2.name: _V2,
    "packages-v3": PhotoSet("packages-v3", _V2.train + _photos("debian", False),
                            VAL_PHOTOS + _photos("debian", True)),
}
DEFAULT_PHOTO_SET = _V2.name
TRAIN_PHOTOS = _V2.train  # the default set's
SAMPLE_PHOTOS = VAL_PHOTOS[:3]  # the held-out photos that assets/samples shows
MAX_SHORTER_SIDE = 512  # larger sources (retina 1411 px, nemo 1456 px) are downscaled once on load


def photo_set(name: str) -> PhotoSet:
    """The photo set called ``name`` (see :data:`PHOTO_SETS`)."""
    if name not in PHOTO_SETS:
        raise KeyError(f"photo set: unknown {name!r}; available: {sorted(PHOTO_SETS)}")
    return PHOTO_SETS[name]


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
