"""Real photographs that installed packages ship, so a default dataset needs no download.

scikit-image bundles a few dozen test images in its wheel (``skimage.data``; the ones listed here
load without ``pooch``) and scikit-learn bundles two JPEG photos. Each source photo becomes one
class of the default dataset. The validation photos are held out whole, so validation crops never
overlap a training photo.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from PIL import Image

# Training classes: 9 colour photos, then 6 greyscale photos and textures.
TRAIN_PHOTOS = (
    "astronaut", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "stereo_motorcycle", "colorwheel", "china",
    "brick", "grass", "gravel", "coins", "moon", "clock",
)
# Held out whole: two colour photos and one greyscale one.
VAL_PHOTOS = ("coffee", "flower", "camera")
MAX_SHORTER_SIDE = 512  # larger sources (retina 1411 px, hubble 872 px) are downscaled once on load


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle -> (left, right, disparity)
    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)
    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    **{name: _skimage(name) for name in TRAIN_PHOTOS + VAL_PHOTOS if name not in ("china", "flower")},
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def load_photo(name: str) -> Image.Image:
    """RGB PIL image (greyscale photos replicated to three channels), shorter side <= 512."""
    if name not in _LOADERS:
        raise KeyError(f"photo: unknown source {name!r}; available: {sorted(_LOADERS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about its optional pooch dependency
        array = np.asarray(_LOADERS[name]())
    if array.dtype != np.uint8:
        raise ValueError(f"photo {name!r}: expected uint8 pixels, got {array.dtype}")
    image = Image.fromarray(array).convert("RGB")
    short = min(image.size)
    if short > MAX_SHORTER_SIDE:
        scale = MAX_SHORTER_SIDE / short
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image
