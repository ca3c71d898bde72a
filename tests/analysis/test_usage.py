"""Codebook usage on hand-made histograms, streaming equivalence, and the per-code reservoir."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.reservoir import CodeReservoir
from analysis.usage import CodebookUsage, usage_from_counts


def test_usage_statistics_of_a_hand_made_histogram() -> None:
    # 2 positions x 4 codes; code 3 is dead.
    counts = np.array([[2, 2, 0, 0],
                       [0, 2, 2, 0]])
    stats = usage_from_counts(counts, num_samples=4, top_k=2)
    assert stats.counts.tolist() == [2, 4, 2, 0]
    assert stats.utilisation == 0.75
    assert stats.used_codes == 3
    assert stats.dead_codes.tolist() == [3]
    assert stats.entropy_bits == pytest.approx(1.5)  # p = (1/4, 1/2, 1/4)
    assert stats.perplexity == pytest.approx(2 ** 1.5)
    assert stats.normalized_entropy == pytest.approx(0.75)
    assert stats.position_entropy_bits.tolist() == pytest.approx([1.0, 1.0])
    assert stats.position_utilisation.tolist() == [0.5, 0.5]
    assert stats.most_used == ((1, 4), (0, 2))
    assert stats.least_used == ((2, 2), (0, 2))
    assert stats.summary()["dead_codes"] == 1


def test_streamed_usage_equals_usage_of_the_pooled_set_not_a_mean_of_batches() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (300, 8))
    acc = CodebookUsage(codebook_size=64, num_positions=8)
    for chunk in np.array_split(ids, 7):
        acc.update(torch.from_numpy(chunk).unsqueeze(1))  # (B, 1, P) as SFTok.encode returns
    stats = acc.result()
    pooled = np.bincount(ids.ravel(), minlength=64)
    assert stats.counts.tolist() == pooled.tolist()
    p = pooled[pooled > 0] / pooled.sum()
    assert stats.entropy_bits == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert stats.num_samples == 300 and stats.num_tokens == 2400
    assert stats.dead_codes.tolist() == list(range(50, 64))
    per_batch = np.mean([usage_from_counts(np.bincount(c.ravel(), minlength=64)[None], len(c)).entropy_bits
                         for c in np.array_split(ids, 7)])
    assert stats.entropy_bits > per_batch + 0.05  # why the accumulator pools counts
    col = ids[:, 5]
    q = np.bincount(col, minlength=64) / col.size
    q = q[q > 0]
    assert stats.position_entropy_bits[5] == pytest.approx(float(-(q * np.log2(q)).sum()))


def test_usage_rejects_bad_ids_by_name() -> None:
    acc = CodebookUsage(codebook_size=8, num_positions=4)
    with pytest.raises(ValueError, match=r"ids: values must lie in \[0, 8\)"):
        acc.update(np.array([[0, 1, 2, 8]]))
    with pytest.raises(ValueError, match=r"expected shape \(B, 4\)"):
        acc.update(np.zeros((2, 5), dtype=int))
    with pytest.raises(ValueError, match="reservoir_size=0"):
        acc.examples(0)


def test_reservoir_keeps_everything_under_capacity_and_is_uniform_beyond() -> None:
    usage = CodebookUsage(codebook_size=4, num_positions=3, reservoir_size=8, seed=0)
    usage.update(np.array([[0, 1, 0], [2, 0, 3]]), keys=["a", "b"])
    assert usage.examples(0) == [("a", 0), ("a", 2), ("b", 1)]
    assert usage.examples(3) == [("b", 2)]
    assert usage.result().examples[1] == (("a", 1),)
    # One code occurring 10 times in 10 samples, capacity 2: each occurrence kept with probability 1/5.
    kept = np.zeros(10)
    trials = 1000
    for seed in range(trials):
        res = CodeReservoir(codebook_size=1, capacity=2, seed=seed)
        for first in (0, 4, 7):  # uneven batches
            last = {0: 4, 4: 7, 7: 10}[first]
            res.update(np.zeros((last - first, 1), dtype=np.int64), [str(i) for i in range(first, last)])
        refs = res.examples(0)
        assert len(refs) == 2 and len({k for k, _ in refs}) == 2
        for key, _ in refs:
            kept[int(key)] += 1
    freq = kept / trials
    assert freq.sum() == pytest.approx(2.0)
    assert np.abs(freq - 0.2).max() < 4 * math.sqrt(0.2 * 0.8 / trials)
