"""Debian packages as a source of photographs: fetched with apt, unpacked into a folder, never installed.

Desktop wallpaper and game-data packages carry real photographs under stated licences (see
docs/default-model-data.md). ``apt-get download`` fetches a package's ``.deb`` from the configured Debian
mirror without root; ``dpkg-deb -x`` unpacks it into ``<root>/<package>/``. Nothing is installed and nothing
runs at import time: loaders read files that :func:`fetch` left on disk and say how to get them when they
are missing.

CLI: ``python -m trainers.data.debian_packages [--root DIR] PACKAGE ...``
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT_ENV = "SFTOK_DEBIAN_PHOTOS"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "workspace" / "packages" / "debian"
VERSION_FILE = ".version"


def packages_root() -> Path:
    """Where unpacked packages live: ``$SFTOK_DEBIAN_PHOTOS``, else ``workspace/packages/debian``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def unpacked(package: str, root: Path | None = None) -> Path | None:
    """The folder ``package`` was unpacked into, or None when it has not been fetched."""
    folder = (root or packages_root()) / package
    return folder if (folder / VERSION_FILE).is_file() else None


def unpack(deb: Path, package: str, root: Path) -> Path:
    """Unpack ``deb`` into ``root/package`` (replacing an older unpack); the version is kept in ``.version``."""
    version = subprocess.run(["dpkg-deb", "--field", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=root))
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, capture_output=True)
        (staging / VERSION_FILE).write_text(version + "\n")
        target = root / package
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / package


def fetch(packages: list[str], root: Path | None = None) -> dict[str, str]:
    """Download and unpack each package not unpacked yet; returns package -> Debian version."""
    root = root or packages_root()
    missing = [p for p in packages if unpacked(p, root) is None]
    if missing:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise RuntimeError(f"fetching {missing} needs apt-get and dpkg-deb (a Debian-based machine)")
        with tempfile.TemporaryDirectory() as download:
            done = subprocess.run(["apt-get", "download", *missing], cwd=download, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"apt-get download {' '.join(missing)} failed ({done.stderr.strip()}); "
                                   "if a package is unknown, refresh the package lists first: apt-get update (as root)")
            for package in missing:
                debs = list(Path(download).glob(f"{package}_*.deb"))
                if len(debs) != 1:
                    raise RuntimeError(f"apt-get download {package}: expected one .deb, found {debs}")
                unpack(debs[0], package, root)
    return {p: (root / p / VERSION_FILE).read_text().strip() for p in packages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.debian_packages", description=__doc__.split("\n")[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--root", type=Path, help=f"where to unpack (default: ${ROOT_ENV} or {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    try:
        versions = fetch(args.packages, args.root)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for package, version in versions.items():
        print(f"{package} {version} -> {(args.root or packages_root()) / package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
