"""Codebook UMAP: cache keyed by the codebook, and one small real fit (slow: umap import + numba compile)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import analysis.umap_embedding as cu


def clustered_codebook(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 10
    return np.concatenate([c + rng.normal(size=(20, 8)) for c in centres]).astype(np.float32)


def test_cache_is_keyed_by_codebook_and_settings(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_fit(vectors, n_neighbors, min_dist, n_epochs, seed, progress=None):
        calls.append((vectors.shape, n_neighbors, seed))
        return vectors[:, :2].copy()

    monkeypatch.setattr(cu, "_fit", fake_fit)
    book = clustered_codebook()
    first = cu.codebook_umap(book, seed=0, cache_dir=tmp_path)
    second = cu.codebook_umap(torch.from_numpy(book), seed=0, cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache and len(calls) == 1
    np.testing.assert_array_equal(first.coords, second.coords)
    assert first.codebook_hash == cu.codebook_hash(book) == second.codebook_hash
    cu.codebook_umap(book, seed=1, cache_dir=tmp_path)  # other seed: other cache entry
    changed = book.copy()
    changed[0, 0] += 1e-3
    other = cu.codebook_umap(changed, seed=0, cache_dir=tmp_path)
    assert len(calls) == 3 and other.codebook_hash != first.codebook_hash
    cu.codebook_umap(book, seed=0, cache_dir=tmp_path, use_cache=False)
    assert len(calls) == 4
    assert len(list(tmp_path.glob("umap-*.npy"))) == 3
    with pytest.raises(ValueError, match="K >= 4"):
        cu.codebook_umap(book[:3], cache_dir=tmp_path)


@pytest.mark.slow
def test_small_real_fit_keeps_clusters_apart(tmp_path) -> None:
    book = clustered_codebook()
    emb = cu.codebook_umap(book, seed=0, n_neighbors=5, n_epochs=50, cache_dir=tmp_path)
    assert emb.coords.shape == (60, 2) and np.isfinite(emb.coords).all()
    labels = np.repeat(np.arange(3), 20)
    d = np.linalg.norm(emb.coords[:, None] - emb.coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    again = cu.codebook_umap(book, seed=0, n_neighbors=5, n_epochs=50, cache_dir=tmp_path)
    assert again.from_cache


class Stop(Exception):
    pass


@pytest.mark.slow
def test_fit_reports_every_epoch_and_stops_when_progress_raises(tmp_path) -> None:
    book = clustered_codebook(1)
    heard: list[tuple[float, str]] = []
    emb = cu.codebook_umap(book, seed=0, n_neighbors=5, n_epochs=30, cache_dir=tmp_path,
                           progress=lambda f, text: heard.append((f, text)))
    assert emb.coords.shape == (60, 2) and not emb.from_cache
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and heard[-1][1] == "UMAP epoch 30 / 30"
    assert len({f for f in fractions if f > 0}) == 30  # one report an epoch

    def stop_at_ten(fraction: float, text: str) -> None:
        if fraction >= 10 / 30:
            raise Stop(text)

    with pytest.raises(Stop, match="UMAP epoch 10 / 30"):
        cu.codebook_umap(book, seed=1, n_neighbors=5, n_epochs=30, cache_dir=tmp_path, progress=stop_at_ten)
    assert len(list(tmp_path.glob("umap-*.npy"))) == 1  # the stopped fit left nothing in the cache
    # a stopped fit leaves no lock behind: a tqdm bar and another reporting fit in another thread still run
    # (raising from inside a bar's output once left tqdm's process-wide write lock held: every later bar hung)
    import io
    import threading

    from tqdm.auto import tqdm

    finished: list[bool] = []

    def elsewhere() -> None:
        for _ in tqdm(range(3), file=io.StringIO(), mininterval=0):
            pass
        cu.codebook_umap(book, seed=2, n_neighbors=5, n_epochs=5, cache_dir=tmp_path, progress=lambda f, t: None)
        finished.append(True)

    worker = threading.Thread(target=elsewhere, daemon=True)
    worker.start()
    worker.join(120)
    assert finished == [True]
