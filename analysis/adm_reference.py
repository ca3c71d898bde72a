"""Reference Inception statistics on disk: ours (with their protocol) and the ADM evaluator's ``.npz``.

rFID compares reconstructions with the real images; gFID compares samples with a reference batch such as
ADM's ``VIRTUAL_imagenet256_labeled.npz`` (arrays ``arr_0``: uint8 images (N, H, W, 3), ``mu`` and ``sigma``:
pool-3 mean and covariance of the TF Inception). Statistics are only comparable when the same images
protocol made them, so ours are saved with the protocol text, the image size and the image count, and a
file made otherwise is refused with the difference named. Files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fid import FeatureStats

ADM_PROTOCOL = "ADM evaluator reference batch (TF Inception 2015-12-05 pool_3)"


class ReferenceMismatch(ValueError):
    """Reference statistics made with another protocol or image size than this evaluation."""


@dataclass(frozen=True)
class ReferenceStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64, unbiased covariance
    num_images: int | None  # None: the file does not say (an ADM batch without arr_0)
    protocol: str
    image_size: int | None
    source: str  # where the statistics came from (a path, or "this run")

    @classmethod
    def from_features(cls, stats: FeatureStats, protocol: str, image_size: int, source: str) -> "ReferenceStats":
        return cls(stats.mean, stats.covariance, stats.count, protocol, image_size, source)

    def check_compatible(self, protocol: str, image_size: int) -> None:
        """Refuse statistics made at another image size or (for our files) with another protocol."""
        if self.image_size is not None and self.image_size != image_size:
            raise ReferenceMismatch(f"reference {self.source}: made at image size {self.image_size}, this evaluation "
                                    f"uses {image_size}")
        if self.protocol != ADM_PROTOCOL and self.protocol != protocol:
            raise ReferenceMismatch(f"reference {self.source}: made with another protocol.\n  reference: "
                                    f"{self.protocol}\n  this run:  {protocol}")


def save_reference(path: str | os.PathLike, ref: ReferenceStats, images: np.ndarray | None = None) -> Path:
    """Write ``mu``/``sigma`` (the ADM keys) with our protocol, image size and count; ``images`` (N, H, W, 3)
    uint8 go to ``arr_0`` so the file is also a batch the TF ADM evaluator reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mu": np.asarray(ref.mu, np.float64), "sigma": np.asarray(ref.sigma, np.float64),
              "protocol": np.array(ref.protocol), "image_size": np.array(-1 if ref.image_size is None else ref.image_size),
              "num_images": np.array(-1 if ref.num_images is None else ref.num_images)}
    if images is not None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        arrays["arr_0"] = images
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_reference(path: str | os.PathLike) -> ReferenceStats:
    """Our reference file or an ADM evaluator batch (``mu``, ``sigma``, optionally ``arr_0``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference: {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:  # not an .npz, or one holding pickled objects
        raise ValueError(f"reference {path}: not a readable .npz of arrays ({err})") from err
    with data:
        keys = set(data.files)
        if not {"mu", "sigma"} <= keys:
            raise ValueError(f"reference {path}: needs arrays 'mu' and 'sigma' (the ADM evaluator's keys), "
                             f"found {sorted(keys)}")
        mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
        if "protocol" in keys:
            size, count = int(data["image_size"]), int(data["num_images"])
            return ReferenceStats(mu, sigma, None if count < 0 else count, str(data["protocol"]),
                                  None if size < 0 else size, str(path))
    shape = _stored_shape(path, "arr_0") if "arr_0" in keys else None  # header only: arr_0 can be GBs
    return ReferenceStats(mu, sigma, None if shape is None else shape[0], ADM_PROTOCOL,
                          None if shape is None else shape[1], str(path))


def _stored_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of array ``key`` in an .npz, read from its header without loading the data."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(member)
    return tuple(int(n) for n in shape)
