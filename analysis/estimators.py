"""Count-based entropy and mutual-information estimators for discrete token statistics.

Plug-in (maximum-likelihood) entropy is biased low on small samples, by about (m - 1) / (2N) nats
for m occupied bins and N samples; Miller-Madow adds that term back. For mutual information the
plug-in bias is positive (spurious dependence), and the shuffle baseline measures it directly:
the MI of the same marginals with the pairing destroyed. Everything is reported in bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Correction = Literal["none", "miller_madow"]
CORRECTIONS: tuple[str, ...] = ("none", "miller_madow")
LN2 = math.log(2.0)


def _check_correction(correction: str) -> None:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: {correction!r} is not one of {CORRECTIONS}")


def _as_labels(values: np.ndarray | list, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of integer labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def entropy_from_counts(counts: np.ndarray | list, correction: Correction = "none") -> float:
    """Entropy in bits of the empirical distribution given by ``counts`` (any shape, non-negative).

    ``miller_madow`` adds (m - 1) / (2N) nats, m = occupied bins. NaN for an empty histogram.
    """
    _check_correction(correction)
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.size and c.min() < 0:
        raise ValueError("counts: must be non-negative")
    n = c.sum()
    if n <= 0:
        return float("nan")
    p = c[c > 0] / n
    h = float(-(p * np.log(p)).sum())
    if correction == "miller_madow":
        h += (p.size - 1) / (2.0 * n)
    return h / LN2


def entropy(labels: np.ndarray | list, correction: Correction = "none") -> float:
    """Entropy in bits of a sample of integer labels."""
    x = _as_labels(labels, "labels")
    _, counts = np.unique(x, return_counts=True)
    return entropy_from_counts(counts, correction)


def _pair_labels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One integer per (x, y) pair, distinct for distinct pairs."""
    y0 = y - y.min() if y.size else y
    return (x - (x.min() if x.size else 0)) * (int(y0.max()) + 1 if y.size else 1) + y0


def mutual_information(x: np.ndarray | list, y: np.ndarray | list, correction: Correction = "none") -> float:
    """I(X; Y) in bits from paired integer samples: H(X) + H(Y) - H(X, Y), each term corrected alike."""
    _check_correction(correction)
    x, y = _as_labels(x, "x"), _as_labels(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y: need the same number of samples, got {x.size} and {y.size}")
    if x.size == 0:
        return float("nan")
    return entropy(x, correction) + entropy(y, correction) - entropy(_pair_labels(x, y), correction)


@dataclass(frozen=True)
class MIEstimate:
    """An MI estimate with its shuffle baseline (the value expected if X and Y were independent)."""

    bits: float  # with the requested correction
    plugin_bits: float
    shuffle_mean_bits: float  # NaN when no shuffles were run
    shuffle_std_bits: float
    num_samples: int
    correction: str

    @property
    def excess_bits(self) -> float:
        """Estimate minus the shuffle baseline: the dependence beyond finite-sample bias."""
        return self.bits - self.shuffle_mean_bits


def mutual_information_test(x: np.ndarray | list, y: np.ndarray | list, correction: Correction = "miller_madow",
                            num_shuffles: int = 20, seed: int = 0) -> MIEstimate:
    """MI with a shuffle baseline: ``num_shuffles`` random re-pairings of y (seeded) give the bias floor."""
    x, y = _as_labels(x, "x"), _as_labels(y, "y")
    value = mutual_information(x, y, correction)
    plugin = value if correction == "none" else mutual_information(x, y, "none")
    rng = np.random.default_rng(seed)
    shuffled = [mutual_information(x, rng.permutation(y), correction) for _ in range(num_shuffles)]
    mean = float(np.mean(shuffled)) if shuffled else float("nan")
    std = float(np.std(shuffled, ddof=1)) if len(shuffled) > 1 else float("nan")
    return MIEstimate(value, plugin, mean, std, int(x.size), correction)


@dataclass(frozen=True)
class PairwiseMI:
    """MI between every pair of token positions over a set of sequences; diagonals hold entropies."""

    bits: np.ndarray  # (P, P)
    shuffle_mean_bits: np.ndarray | None  # (P, P), None without shuffles
    num_samples: int
    correction: str

    @property
    def excess_bits(self) -> np.ndarray:
        if self.shuffle_mean_bits is None:
            raise ValueError("excess_bits: this estimate was computed without shuffles")
        return self.bits - self.shuffle_mean_bits

    def off_diagonal_mean(self, excess: bool = False) -> float:
        values = self.excess_bits if excess else self.bits
        p = values.shape[0]
        return float(values[~np.eye(p, dtype=bool)].mean()) if p > 1 else float("nan")


def pairwise_mutual_information(ids: np.ndarray, correction: Correction = "miller_madow", num_shuffles: int = 0,
                                seed: int = 0) -> PairwiseMI:
    """I(t_i; t_j) for all position pairs of ``ids`` (N sequences, P positions), with a shuffle baseline.

    Marginal entropies are computed once per position; a shuffle permutes the second position's
    column, which changes only the joint term.
    """
    _check_correction(correction)
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids: expected (N, P) integer tokens, got shape {ids.shape}")
    ids = ids.astype(np.int64, copy=False)
    n, p = ids.shape
    marginal = np.array([entropy(ids[:, i], correction) for i in range(p)])
    mi = np.diag(marginal).astype(np.float64)
    base = np.zeros((p, p)) if num_shuffles else None
    rng = np.random.default_rng(seed)
    for i in range(p):
        for j in range(i + 1, p):
            mi[i, j] = mi[j, i] = marginal[i] + marginal[j] - entropy(_pair_labels(ids[:, i], ids[:, j]), correction)
            if base is not None:
                vals = [marginal[i] + marginal[j] - entropy(_pair_labels(ids[:, i], rng.permutation(ids[:, j])), correction)
                        for _ in range(num_shuffles)]
                base[i, j] = base[j, i] = float(np.mean(vals))
    if base is not None:
        np.fill_diagonal(base, 0.0)
    return PairwiseMI(mi, base, n, correction)


def neighbour_mutual_information(grid_ids: np.ndarray, correction: Correction = "miller_madow",
                                 num_shuffles: int = 10, seed: int = 0) -> dict[str, MIEstimate]:
    """MI between horizontally and vertically adjacent cells of square code grids (N, S), pooled over cells.

    Pooling all adjacent pairs of all images into one joint histogram gives the average dependence
    between neighbouring proxy codes, the marginal (Z-free) counterpart of the paper's I(m_i; m_rest | Z).
    """
    grid_ids = np.asarray(grid_ids)
    if grid_ids.ndim != 2:
        raise ValueError(f"grid_ids: expected (N, S) codes, got shape {grid_ids.shape}")
    side = int(round(math.sqrt(grid_ids.shape[1])))
    if side * side != grid_ids.shape[1]:
        raise ValueError(f"grid_ids: {grid_ids.shape[1]} slots do not form a square grid")
    grid = grid_ids.reshape(-1, side, side).astype(np.int64)
    pairs = {
        "horizontal": (grid[:, :, :-1].ravel(), grid[:, :, 1:].ravel()),
        "vertical": (grid[:, :-1, :].ravel(), grid[:, 1:, :].ravel()),
    }
    return {name: mutual_information_test(a, b, correction, num_shuffles, seed) for name, (a, b) in pairs.items()}


def left_neighbour_cross_entropy(train_grids: np.ndarray, test_grids: np.ndarray, vocab: int,
                                 alpha: float = 0.1) -> float:
    """Bits per code to predict each held-out code from its left neighbour alone, by a bigram table of training codes.

    A model-free baseline for what revealed codes could tell a decoder: a decoder that reads its revealed
    neighbours should do at least this well on the codes it has to guess. Add-``alpha`` smoothing keeps
    pairs unseen in training finite. Grids are (N, S) with S a square; the first column has no left
    neighbour and is not scored.
    """
    train, test = np.asarray(train_grids, dtype=np.int64), np.asarray(test_grids, dtype=np.int64)
    side = int(round(math.sqrt(train.shape[1])))
    if train.ndim != 2 or test.ndim != 2 or side * side != train.shape[1] or test.shape[1] != train.shape[1]:
        raise ValueError(f"grids: expected (N, S) with the same square S, got {train.shape} and {test.shape}")
    if alpha <= 0:
        raise ValueError(f"alpha: must be > 0, got {alpha}")
    train, test = train.reshape(-1, side, side), test.reshape(-1, side, side)
    counts = np.full((vocab, vocab), alpha)
    np.add.at(counts, (train[:, :, :-1].ravel(), train[:, :, 1:].ravel()), 1)
    table = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(table[test[:, :, :-1].ravel(), test[:, :, 1:].ravel()]).mean())
