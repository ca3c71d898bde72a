"""Improved precision and recall (Kynkaanniemi et al. 2019), by the ADM evaluator's rules.

Each set's manifold is the union of balls around its points, a ball's squared radius being the squared
distance to the point's k-th nearest neighbour in its own set (k = 3; the point itself is neighbour 0, so a
duplicate counts as a neighbour at distance 0). Precision is the share of generated points inside the real
manifold (some real point's ball, distance <= radius), recall the share of real points inside the generated
one. Features are Inception pool vectors; distances are computed block by block (``block`` rows x ``block``
columns at a time) so 50k x 10k pairs never sit in memory at once. We compute in float64; the ADM evaluator
computes squared distances in float16 (float32 when a float16 block overflows), which can move a point across
a ball's boundary, so the two need not agree in the last counted point (not measured here: no TensorFlow).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

K_NEIGHBOURS = 3
PR_PROTOCOL = (f"improved precision/recall (Kynkaanniemi et al. 2019) as the ADM evaluator: k = {K_NEIGHBOURS} "
               "nearest-neighbour radii (self excluded, duplicates count) in the 2048-d pool features, squared "
               "Euclidean distances in float64, inside a ball when distance <= radius; precision: generated points "
               "inside the reference manifold, recall: reference points inside the generated manifold")


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    k: int
    num_real: int
    num_fake: int


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) -> (N, M) squared Euclidean distances, clamped at 0 (the expansion can dip below)."""
    return ((a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]).clamp_min_(0.0)


def _as_tensor(features: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    if x.ndim != 2:
        raise ValueError(f"features: expected (N, D), got shape {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float64)


def knn_radii(features: np.ndarray | torch.Tensor, k: int = K_NEIGHBOURS, block: int = 4096,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Squared distance of every point to its k-th nearest neighbour in the same set (N,), float64."""
    x = _as_tensor(features, device)
    if x.shape[0] <= k:
        raise ValueError(f"precision/recall: needs more than k = {k} points per set, got {x.shape[0]}")
    radii = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], block):
        rows = x[start:start + block]
        best = None  # the k + 1 smallest distances so far (self at 0 included)
        for col in range(0, x.shape[0], block):
            d = squared_distances(rows, x[col:col + block])
            pool = d if best is None else torch.cat([best, d], dim=1)
            best = pool.topk(min(k + 1, pool.shape[1]), dim=1, largest=False).values
        radii[start:start + rows.shape[0]] = best[:, k]
    return radii


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = K_NEIGHBOURS,
                     block: int = 4096, device: torch.device | str = "cpu") -> PrecisionRecall:
    """Precision and recall of ``fake`` features against ``real`` ones (both (N, D))."""
    r, f = _as_tensor(real, device), _as_tensor(fake, device)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"precision/recall: feature sizes differ ({r.shape[1]} real, {f.shape[1]} generated)")
    real_radii, fake_radii = knn_radii(r, k, block, device), knn_radii(f, k, block, device)
    fake_inside = torch.zeros(f.shape[0], dtype=torch.bool, device=f.device)
    real_inside = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    for rs in range(0, r.shape[0], block):
        for fs in range(0, f.shape[0], block):
            d = squared_distances(r[rs:rs + block], f[fs:fs + block])  # (real rows, fake columns), computed once
            fake_inside[fs:fs + block] |= (d <= real_radii[rs:rs + block, None]).any(0)
            real_inside[rs:rs + block] |= (d <= fake_radii[None, fs:fs + block]).any(1)
    return PrecisionRecall(float(fake_inside.double().mean()), float(real_inside.double().mean()), k,
                           r.shape[0], f.shape[0])
