"""Debian packages as photo sources: a real .deb (built here with dpkg-deb) unpacks without installing, and
fetching reports what apt-get said."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data import debian_packages
from trainers.data.photo_sources import debian_file

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not on this machine")


def build_deb(tmp_path: Path, version: str) -> Path:
    """A minimal package 'sftok-test-photos' holding one 200x150 PNG under usr/share/backgrounds."""
    tree = tmp_path / f"tree-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: sftok-test-photos\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: a test photo\n")
    pixels = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    (tree / "usr/share/backgrounds").mkdir(parents=True)
    Image.fromarray(pixels).save(tree / "usr/share/backgrounds/test.png")
    deb = tmp_path / f"sftok-test-photos_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def test_unpack_keeps_the_version_and_a_photo_loads_from_it(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "debian"
    monkeypatch.setenv(debian_packages.ROOT_ENV, str(root))
    load = debian_file("sftok-test-photos", "usr/share/backgrounds/test.png")
    with pytest.raises(FileNotFoundError, match="python -m trainers.data.debian_packages sftok-test-photos"):
        load()
    debian_packages.unpack(build_deb(tmp_path, "1.0-1"), "sftok-test-photos", root)
    assert debian_packages.unpacked("sftok-test-photos") == root / "sftok-test-photos"
    image = load()
    assert image.size == (200, 150) and np.asarray(image).std() > 50
    # a newer version replaces the older unpack; nothing half-written is left beside it
    debian_packages.unpack(build_deb(tmp_path, "2.0-1"), "sftok-test-photos", root)
    assert (root / "sftok-test-photos" / debian_packages.VERSION_FILE).read_text().strip() == "2.0-1"
    assert sorted(p.name for p in root.iterdir()) == ["sftok-test-photos"]
    # fetched already: fetch() reports the version and downloads nothing
    assert debian_packages.fetch(["sftok-test-photos"], root) == {"sftok-test-photos": "2.0-1"}


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is not on this machine")
def test_fetch_of_an_unknown_package_says_what_apt_said_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get download no-such-package-sftok failed .*apt-get update"):
        debian_packages.fetch(["no-such-package-sftok"], tmp_path / "debian")
    assert not (tmp_path / "debian").exists() or not any((tmp_path / "debian").iterdir())
