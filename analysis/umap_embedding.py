"""2-D UMAP of codebook vectors, seeded and cached per codebook.

The cache key hashes the codebook tensor itself (plus the UMAP settings), so any checkpoint with
the same codebook reuses the embedding and a retrained one never gets a stale map. The kNN graph is
computed exactly with scikit-learn and handed to UMAP as ``precomputed_knn``, which skips
pynndescent (and its ~30 s numba compile per process); umap itself is imported lazily because its
first import costs ~20 s.

A fit reports each optimisation epoch to an optional ``progress(fraction, text)`` callback; a callback that
raises stops the fit there (UMAP's epochs are a Python loop with a tqdm bar: the bar's output is read, not
printed), so a screen can cancel a fit on a large codebook between epochs instead of waiting it out.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

CACHE_VERSION = 1
ProgressFn = Callable[[float, str], None]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SFTOK_CACHE_DIR", Path.home() / ".cache" / "sftok-workbench")) / "umap"


def codebook_hash(vectors: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of the codebook's float32 values and shape."""
    arr = np.ascontiguousarray(vectors.detach().cpu().float().numpy() if isinstance(vectors, torch.Tensor)
                               else np.asarray(vectors, dtype=np.float32))
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CodebookEmbedding:
    coords: np.ndarray  # (K, 2) float32
    codebook_hash: str
    params: dict
    from_cache: bool
    seconds: float  # time to fit, or to load from the cache


class _EpochReports:
    """A file for UMAP's epoch bar: each "n/total" line becomes ``progress(n / total, ...)`` (which may raise)."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress

    def write(self, text: str) -> int:
        done, _, total = text.strip().partition("/")
        if done.isdigit() and total.isdigit() and int(total) > 0:
            self.progress(int(done) / int(total), f"UMAP epoch {done} / {total}")
        return len(text)

    def flush(self) -> None:
        return None


def _epoch_bar(progress: ProgressFn | None) -> dict | None:
    """tqdm settings that report every epoch through ``progress`` (None: UMAP's silent default)."""
    if progress is None:
        return None
    return {"disable": False, "file": _EpochReports(progress), "bar_format": "{n}/{total}\n", "mininterval": 0,
            "miniters": 1, "leave": False}


def _fit(vectors: np.ndarray, n_neighbors: int, min_dist: float, n_epochs: int, seed: int,
         progress: ProgressFn | None = None) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, vectors.shape[0] - 1)
    dists, idx = NearestNeighbors(n_neighbors=k).fit(vectors).kneighbors(vectors)  # self is neighbour 0
    import umap  # noqa: PLC0415 - slow first import, only when a fit is needed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", precomputed-knn notes
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric="euclidean",
                            n_epochs=n_epochs, random_state=seed, precomputed_knn=(idx, dists.astype(np.float32)), n_jobs=1,
                            tqdm_kwds=_epoch_bar(progress))
        return reducer.fit_transform(vectors).astype(np.float32)


def codebook_umap(vectors: torch.Tensor | np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                  n_epochs: int = 200, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                  progress: ProgressFn | None = None) -> CodebookEmbedding:
    """UMAP coordinates (K, 2) of the codebook rows (K, D); read from / written to ``cache_dir``.
    ``progress`` hears every epoch of a fit (a cached map has none); an exception it raises ends the fit.

    ``n_epochs`` = 200 is UMAP's own choice for large inputs; its 500 for K <= 10k triples the fit
    time without a visible change on a codebook map.
    """
    arr = vectors.detach().cpu().float().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors, np.float32)
    if arr.ndim != 2 or arr.shape[0] < 4:
        raise ValueError(f"codebook: expected (K, D) with K >= 4, got shape {arr.shape}")
    params = {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "n_epochs": int(n_epochs), "seed": int(seed),
              "version": CACHE_VERSION}
    digest = codebook_hash(arr)
    settings = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir or default_cache_dir()) / f"umap-{digest[:32]}-{settings}.npy"
    start = time.perf_counter()
    if use_cache and path.is_file():
        coords = np.load(path)
        if coords.shape == (arr.shape[0], 2):
            return CodebookEmbedding(coords, digest, params, True, time.perf_counter() - start)
    coords = _fit(arr, n_neighbors, min_dist, n_epochs, seed, progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, coords)
        os.replace(tmp, path)
    return CodebookEmbedding(coords, digest, params, False, time.perf_counter() - start)
