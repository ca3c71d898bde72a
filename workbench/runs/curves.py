"""Curve arithmetic on numpy arrays: TensorBoard's debiased EMA and min/max-preserving downsampling.

The store downsamples raw curves inside DuckDB (only a few hundred rows leave the database); a
smoothed curve has to be smoothed at full resolution first, so it is downsampled here with the same
bucket rule, ``bucket = (step - first_step) * num_buckets // (last_step - first_step + 1)``.
"""
from __future__ import annotations

import numpy as np


def ema_debiased(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: ``ema_t = w * ema_{t-1} + (1 - w) * x_t`` from ``ema_0 = 0``, divided
    by ``1 - w**t`` so the first points are not pulled towards zero. ``weight`` in [0, 1)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    x = np.asarray(values, dtype=np.float64)
    if weight == 0.0 or x.size == 0:
        return x.copy()
    from scipy.signal import lfilter  # lazy: scipy costs a second at start-up of the CLI

    ema = lfilter([1.0 - weight], [1.0, -weight], x)
    debias = 1.0 - weight ** np.arange(1, x.size + 1, dtype=np.float64)
    return ema / debias


def minmax_downsample(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: per step bucket, the points holding the bucket's min and max.

    Spikes survive (a bucket's extreme is always kept), hence also the global min and max.
    ``steps`` must be sorted ascending.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if steps.size <= max_points:
        return steps, values
    num_buckets = max(1, max_points // 2)
    first, last = int(steps[0]), int(steps[-1])
    bucket = (steps.astype(np.int64) - first) * num_buckets // (last - first + 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    picks: list[int] = []
    for begin, end in zip(starts, np.r_[starts[1:], steps.size]):
        segment = values[begin:end]
        picks.append(begin + int(np.argmin(segment)))
        picks.append(begin + int(np.argmax(segment)))
    index = np.unique(np.asarray(picks))
    return steps[index], values[index]
