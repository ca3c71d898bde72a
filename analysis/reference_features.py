"""Our Inception's pool features of a reference batch's images (``arr_0``), computed once and cached.

Precision/recall needs the reference images' features, not only their ``mu``/``sigma``. An ADM batch such as
``VIRTUAL_imagenet256_labeled.npz`` holds 10,000 uint8 images; they are streamed from the ``.npz`` (never
loaded whole), split over the ranks like any evaluation's images, and the features saved next to the
reference as ``<name>.features-<key>.npz`` with the protocol, the Inception weights' SHA-256 and the
reference's size, so a later run (any process count) reads them and a run with other weights or another
reference file recomputes. Where the reference's folder is read-only the cache goes to the run's output.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .eval_dist import Ranks, barrier, gather_rank_rows
from .fid import FID_PROTOCOL, find_inception_weights, inception_network

IMAGES_KEY = "arr_0"
FEATURES_PROTOCOL = f"{IMAGES_KEY} uint8 images as stored (no resize before the network); {FID_PROTOCOL}"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of an ``.npy`` stream, leaving it at the first data byte."""
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(member)
    return tuple(int(n) for n in shape), bool(fortran), dtype


def iter_stored_rows(path: str | os.PathLike, key: str, batch: int) -> Iterator[np.ndarray]:
    """Consecutive row blocks of array ``key`` of an ``.npz``, read as a stream (the array can be GBs)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
        shape, fortran, dtype = _npy_header(member)
        if fortran or dtype.hasobject:
            raise ValueError(f"reference {path}: {key} is stored in Fortran order or as objects; re-save it as a "
                             "plain C-order array")
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        for start in range(0, shape[0], batch):
            count = min(batch, shape[0] - start)
            data = member.read(count * row_bytes)
            if len(data) != count * row_bytes:
                raise ValueError(f"reference {path}: {key} ends early (row {start} of {shape[0]})")
            yield np.frombuffer(data, dtype).reshape(count, *shape[1:])


def stored_images(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) of the reference's images (``arr_0``), or None when it has none."""
    with zipfile.ZipFile(path) as archive:
        if f"{IMAGES_KEY}.npy" not in archive.namelist():
            return None
        with archive.open(f"{IMAGES_KEY}.npy") as member:
            shape, _, dtype = _npy_header(member)
            return shape, dtype


def _cache_identity(reference: Path, weights: Path) -> dict[str, object]:
    stat = reference.stat()
    return {"protocol": FEATURES_PROTOCOL, "inception_sha256": file_sha256(weights), "reference": reference.name,
            "reference_bytes": stat.st_size}


def _cache_path(folder: Path, reference: Path, identity: dict[str, object]) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"{reference.stem}.features-{key}.npz"


def _read_cache(path: Path, identity: dict[str, object]) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if json.loads(str(data["identity"])) != identity:
            return None
        return np.array(data["features"], np.float32)


def _write_cache(path: Path, features: np.ndarray, identity: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, features=features, identity=np.array(json.dumps(identity, sort_keys=True)))
    os.replace(tmp, path)


@torch.no_grad()
def reference_features(reference: str | os.PathLike, inception_weights: str | os.PathLike | None, ranks: Ranks,
                       fallback_dir: str | os.PathLike, batch_size: int = 64,
                       progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, Path] | None:
    """(features (N, 2048) float32, cache file) of the reference's ``arr_0`` images; None without images.

    Every rank returns the same features. ``progress(done, total)`` counts this rank's images when they are
    computed.
    """
    reference = Path(reference)
    stored = stored_images(reference)
    if stored is None:
        return None
    shape, dtype = stored
    if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise ValueError(f"reference {reference}: {IMAGES_KEY} should be uint8 images (N, H, W, 3), got {dtype} {shape}")
    identity = _cache_identity(reference, find_inception_weights(inception_weights))
    for folder in (reference.parent, Path(fallback_dir)):
        cached = _read_cache(_cache_path(folder, reference, identity), identity)
        if cached is not None:
            return cached, _cache_path(folder, reference, identity)
    net = inception_network(inception_weights, ["2048"], ranks.device)
    own, done = [], 0
    for start, block in zip(range(0, shape[0], batch_size), iter_stored_rows(reference, IMAGES_KEY, batch_size)):
        mine = block[(ranks.rank - start) % ranks.world::ranks.world]  # global rows r, r + world, ...
        if mine.shape[0]:
            images = torch.from_numpy(np.array(mine)).permute(0, 3, 1, 2).to(ranks.device)
            own.append(net(images)[0].float().cpu().numpy())
            done += mine.shape[0]
            if progress is not None:
                progress(done, len(range(ranks.rank, shape[0], ranks.world)))
    features = gather_rank_rows(np.concatenate(own) if own else np.zeros((0, 2048), np.float32), shape[0], ranks)
    path = _cache_path(reference.parent, reference, identity)
    if ranks.is_main:
        try:
            _write_cache(path, features, identity)
        except OSError:
            path = _cache_path(Path(fallback_dir), reference, identity)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_cache(path, features, identity)
    barrier(ranks)
    return features, path

