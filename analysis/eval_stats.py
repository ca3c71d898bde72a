"""Sufficient statistics of an evaluation: sums that add across batches, resumes and ranks.

Every metric of ``python -m analysis eval`` is a function of sums over images, so N ranks (or a run
cut in pieces by preemption) that each hold the sums of a disjoint part of the data give, once the
sums are added, exactly the one-process answer:
- rFID: float64 feature sum, sum of outer products and count (:class:`analysis.fid.FeatureStats`, its ``state``);
- IS: over all images as ONE split (torch-fidelity's ``isc_splits=1, samples_shuffle=False``):
  IS = exp( (1/N) sum_x sum_y p(y|x) log p(y|x) - sum_y q(y) log q(y) ), q = (1/N) sum_x p(y|x), from the
  per-class sums of p(y|x) and the scalar sum of p log p. The usual 10-split mean is not a function of
  sums (it depends on which images share a split), so it is not reported;
- PSNR / SSIM / LPIPS: sum and sum of squares per metric (mean and its standard error);
- codebook usage: the (positions x codebook) count matrix.
``state()`` flattens any of them to named numpy arrays (checkpoints, all-reduce); ``load_state`` reads them back.
"""
from __future__ import annotations

import math
from typing import Mapping, Protocol

import numpy as np
import torch

State = dict[str, np.ndarray]


class Accumulator(Protocol):
    """Anything whose sums flatten to named arrays and read back: the statistics here, FeatureStats, groups of them."""

    def state(self) -> State: ...

    def load_state(self, state: Mapping[str, np.ndarray]) -> None: ...


class InceptionScoreStats:
    """Sums for the Inception Score of all images as one split (see the module docstring)."""

    def __init__(self, num_classes: int) -> None:
        self.class_sum = np.zeros(num_classes, np.float64)
        self.plogp_sum = 0.0
        self.count = 0

    def update_probs(self, probs: torch.Tensor | np.ndarray) -> None:
        """Add class probabilities p(y|x), shape (B, C), rows summing to 1."""
        p = probs.detach().cpu().double().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, np.float64)
        if p.ndim != 2 or p.shape[1] != self.class_sum.size:
            raise ValueError(f"probs: expected (B, {self.class_sum.size}), got {p.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        self._add(p.sum(axis=0), float(plogp.sum()), p.shape[0])

    def update_logits(self, logits: torch.Tensor) -> None:
        """Add classifier logits (B, C); softmax in float64, as torch-fidelity."""
        logits = logits.detach().double()
        p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
        self._add(p.sum(0).cpu().numpy(), float((p * log_p).sum()), logits.shape[0])

    def _add(self, class_sum: np.ndarray, plogp: float, count: int) -> None:
        self.class_sum += class_sum
        self.plogp_sum += plogp
        self.count += int(count)

    def score(self) -> float:
        if self.count == 0:
            raise ValueError("inception score: no images")
        q = self.class_sum / self.count
        with np.errstate(divide="ignore", invalid="ignore"):
            q_log_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum()
        return float(math.exp(self.plogp_sum / self.count - q_log_q))

    def state(self) -> State:
        return {"class_sum": self.class_sum.copy(), "plogp_sum": np.array(self.plogp_sum, np.float64),
                "count": np.array(self.count, np.int64)}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.class_sum = np.array(state["class_sum"], np.float64)
        self.plogp_sum = float(state["plogp_sum"])
        self.count = int(state["count"])


class MeanStats:
    """Sum, sum of squares and count of per-image values: the mean and its standard error."""

    def __init__(self) -> None:
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0

    def update(self, values: torch.Tensor | np.ndarray) -> None:
        v = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float64)
        self.total += float(v.sum())
        self.total_sq += float((v * v).sum())
        self.count += int(v.size)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def sem(self) -> float | None:
        if self.count < 2:
            return None
        var = max(0.0, (self.total_sq - self.total ** 2 / self.count) / (self.count - 1))
        return math.sqrt(var / self.count)

    def state(self) -> State:
        return {"total": np.array(self.total, np.float64), "total_sq": np.array(self.total_sq, np.float64),
                "count": np.array(self.count, np.int64)}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.total, self.total_sq, self.count = float(state["total"]), float(state["total_sq"]), int(state["count"])


def prefixed(prefix: str, state: Mapping[str, np.ndarray]) -> State:
    return {f"{prefix}/{k}": v for k, v in state.items()}


def unprefixed(prefix: str, state: Mapping[str, np.ndarray]) -> State:
    start = prefix + "/"
    return {k[len(start):]: v for k, v in state.items() if k.startswith(start)}


def joint_state(parts: Mapping[str, Accumulator]) -> State:
    """One flat state of several named accumulators, each one's arrays under its name (``name/key``)."""
    out: State = {}
    for name, part in parts.items():
        out.update(prefixed(name, part.state()))
    return out


def load_joint_state(parts: Mapping[str, Accumulator], state: Mapping[str, np.ndarray]) -> None:
    """Read a :func:`joint_state` back into the same named accumulators."""
    for name, part in parts.items():
        part.load_state(unprefixed(name, state))
