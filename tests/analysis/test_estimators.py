"""Count-based estimators against joint distributions with analytic entropy and MI."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.estimators import (entropy, entropy_from_counts, mutual_information, mutual_information_test,
                                 left_neighbour_cross_entropy, neighbour_mutual_information, pairwise_mutual_information)


def h2(p: float) -> float:
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def test_entropy_of_hand_made_histograms() -> None:
    assert entropy_from_counts([1, 1, 2]) == pytest.approx(1.5, abs=1e-12)
    assert entropy_from_counts([5, 0, 5]) == pytest.approx(1.0, abs=1e-12)
    assert entropy_from_counts([7]) == 0.0
    # Miller-Madow adds (m - 1) / (2N) nats: 2 / 8 nats for 3 occupied bins and 4 samples.
    assert entropy_from_counts([1, 1, 2], "miller_madow") == pytest.approx(1.5 + 0.25 / math.log(2), abs=1e-12)
    assert math.isnan(entropy_from_counts([0, 0]))
    with pytest.raises(ValueError, match="correction"):
        entropy_from_counts([1, 2], "jackknife")


def test_large_sample_entropy_and_mi_of_known_channels() -> None:
    rng = np.random.default_rng(0)
    n, k = 200_000, 8
    x = rng.integers(0, k, n)
    assert entropy(x) == pytest.approx(3.0, abs=0.005)
    # Independent: 0 bits.
    assert mutual_information(x, rng.integers(0, k, n), "miller_madow") == pytest.approx(0.0, abs=0.002)
    # Exact copy: I = H(X) = 3 bits.
    assert mutual_information(x, x) == pytest.approx(3.0, abs=0.005)
    # Binary symmetric channel, flip 0.1: I = 1 - h(0.1).
    b = rng.integers(0, 2, n)
    noisy = np.where(rng.random(n) < 0.1, 1 - b, b)
    assert mutual_information(b, noisy) == pytest.approx(1 - h2(0.1), abs=0.005)
    # K-ary symmetric channel, error e spread evenly: I = log2 K - h(e) - e log2(K - 1).
    e = 0.3
    other = (x + rng.integers(1, k, n)) % k
    y = np.where(rng.random(n) < e, other, x)
    expected = math.log2(k) - h2(e) - e * math.log2(k - 1)
    assert mutual_information(x, y, "miller_madow") == pytest.approx(expected, abs=0.005)


def test_miller_madow_moves_small_sample_estimates_toward_the_truth() -> None:
    rng = np.random.default_rng(1)
    k, n, trials = 16, 24, 400
    plugin, corrected = [], []
    mi_plugin, mi_corrected = [], []
    for _ in range(trials):
        x = rng.integers(0, k, n)
        plugin.append(entropy(x))
        corrected.append(entropy(x, "miller_madow"))
        y = rng.integers(0, 4, n)
        z = rng.integers(0, 4, n)
        mi_plugin.append(mutual_information(y, z))
        mi_corrected.append(mutual_information(y, z, "miller_madow"))
    truth = math.log2(k)
    assert np.mean(plugin) < truth - 0.5  # plug-in is biased low by a lot at N = 1.5 K
    assert abs(np.mean(corrected) - truth) < abs(np.mean(plugin) - truth) / 2
    assert np.mean(mi_plugin) > 0.15  # spurious dependence of independent variables
    assert abs(np.mean(mi_corrected)) < 0.7 * np.mean(mi_plugin)  # about half the bias removed


def test_shuffle_baseline_matches_bias_of_independent_variables_and_not_of_dependent_ones() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 8, 60), rng.integers(0, 8, 60)
    indep = mutual_information_test(x, y, "none", num_shuffles=50, seed=0)
    assert indep.plugin_bits > 0.5  # large finite-sample bias at N = 60 for 64 joint cells
    assert abs(indep.excess_bits) < 3 * indep.shuffle_std_bits
    copy = mutual_information_test(x, x, "none", num_shuffles=50, seed=0)
    assert copy.excess_bits > 1.0
    again = mutual_information_test(x, y, "none", num_shuffles=50, seed=0)
    assert again == indep  # seeded


def test_pairwise_and_neighbour_mi_find_the_planted_dependence() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    ids = rng.integers(0, 4, (n, 4))
    ids[:, 3] = ids[:, 0]  # position 3 copies position 0
    pair = pairwise_mutual_information(ids, "miller_madow", num_shuffles=2, seed=0)
    assert pair.bits.shape == (4, 4)
    assert pair.bits[0, 3] == pytest.approx(2.0, abs=0.01)
    assert pair.bits[3, 0] == pair.bits[0, 3]
    assert abs(pair.bits[1, 2]) < 0.01
    assert pair.bits[1, 1] == pytest.approx(2.0, abs=0.01)  # diagonal: entropy
    assert pair.excess_bits[0, 3] > 1.9
    # Grids whose rows are constant: horizontal neighbours are copies, vertical ones independent.
    rows = rng.integers(0, 4, (2000, 4))
    grids = np.repeat(rows[:, :, None], 4, axis=2).reshape(2000, 16)
    nb = neighbour_mutual_information(grids, "miller_madow", num_shuffles=3, seed=0)
    assert nb["horizontal"].bits == pytest.approx(2.0, abs=0.01)
    assert abs(nb["vertical"].bits) < 0.01
    with pytest.raises(ValueError, match="square"):
        neighbour_mutual_information(np.zeros((3, 10), dtype=int))


def test_left_neighbour_cross_entropy_known_answers():
    # every training row is (0, 1): from 8 pairs the smoothed table gives P(1 | 0) = 8.1 / 8.2
    train = np.tile([0, 1, 0, 1], (4, 1))
    assert left_neighbour_cross_entropy(train, train, vocab=2) == pytest.approx(-math.log2(8.1 / 8.2), abs=1e-12)
    # a pair never seen in training costs log2(8.2 / 0.1) bits
    assert left_neighbour_cross_entropy(train, np.zeros((3, 4)), vocab=2) == pytest.approx(math.log2(82), abs=1e-12)
    with pytest.raises(ValueError, match="square"):
        left_neighbour_cross_entropy(np.zeros((2, 6)), np.zeros((2, 6)), vocab=2)
