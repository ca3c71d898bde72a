"""2-D UMAP of codebook vectors, seeded and cached per codebook.

The cache key hashes the codebook tensor itself (plus the UMAP settings), so any checkpoint with
the same codebook reuses the embedding and a retrained one never gets a stale map. The kNN graph is
computed exactly with scikit-learn and handed to UMAP as ``precomputed_knn``, which skips
pynndescent (and its ~30 s numba compile per process); umap itself is imported lazily because its
first import costs ~20 s.

A fit reports each optimisation epoch to an optional ``progress(fraction, text)`` callback; a callback that
raises stops the fit there, so a screen can cancel a fit on a large codebook between epochs instead of waiting
it out. UMAP walks its epochs in a Python loop over ``umap.layouts.tqdm(range(n_epochs), **tqdm_kwds)``; that
name is wrapped once (:func:`_hook_epochs`) so a fit asked for reports gets a plain generator that calls
``progress`` between epochs, and every other call still gets tqdm. Raising from inside a tqdm bar's output
instead would leave tqdm's process-wide write lock held (``refresh`` releases it without ``finally``) and block
every later bar in other threads.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

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


_REPORTS = "sftok_epoch_reports"  # the tqdm_kwds key that carries a fit's _EpochReports to the hook


class _EpochReports:
    """Walks a fit's epochs and tells ``progress`` after each one (outside any lock, so it may raise)."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress

    def epochs(self, iterable: Iterable) -> Iterator:
        items = list(iterable)
        total = len(items)
        self.progress(0.0, f"UMAP epoch 0 / {total}")
        for done, item in enumerate(items, 1):
            yield item
            self.progress(done / total, f"UMAP epoch {done} / {total}")


def _hook_epochs(layouts: Any) -> None:
    """Wrap ``layouts.tqdm`` (once): calls carrying ``_REPORTS`` walk the epochs with it, the rest get tqdm."""
    real = layouts.tqdm
    if getattr(real, "reports_epochs", False):
        return

    def epochs(iterable: Iterable, *args: Any, **kwds: Any) -> Iterable:
        reports = kwds.pop(_REPORTS, None)
        return real(iterable, *args, **kwds) if reports is None else reports.epochs(iterable)

    epochs.reports_epochs = True  # type: ignore[attr-defined]
    layouts.tqdm = epochs


def _fit(vectors: np.ndarray, n_neighbors: int, min_dist: float, n_epochs: int, seed: int,
         progress: ProgressFn | None = None) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, vectors.shape[0] - 1)
    dists, idx = NearestNeighbors(n_neighbors=k).fit(vectors).kneighbors(vectors)  # self is neighbour 0
    import umap  # noqa: PLC0415 - slow first import, only when a fit is needed
    import umap.layouts  # noqa: PLC0415

    _hook_epochs(umap.layouts)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", precomputed-knn notes
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric="euclidean",
                            n_epochs=n_epochs, random_state=seed, precomputed_knn=(idx, dists.astype(np.float32)), n_jobs=1,
                            tqdm_kwds=None if progress is None else {_REPORTS: _EpochReports(progress)})
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
