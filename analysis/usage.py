"""Codebook usage accumulated over a whole data set, one batch of token ids at a time.

Only a (positions x codebook) count matrix is kept, never the codes themselves, so a pass over
ImageNet costs 64 x 8192 int64 counters. Entropy and perplexity are taken over the pooled counts
of the whole set: averaging per-batch entropies would under-count codes that each batch misses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import torch

from .estimators import entropy_from_counts
from .reservoir import CodeReservoir

if TYPE_CHECKING:
    from core import MaskGITVQGAN, SFTok

    from .data import ImageBatch


def _row_entropies_bits(counts: np.ndarray) -> np.ndarray:
    """Plug-in entropy (bits) of each row of a count matrix; NaN for empty rows."""
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / totals
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    h = -terms.sum(axis=1)
    h[totals[:, 0] == 0] = np.nan
    return h


@dataclass(frozen=True)
class UsageStats:
    """Usage of a codebook over a data set. Entropies in bits; perplexity = 2 ** entropy."""

    codebook_size: int
    num_positions: int
    num_samples: int
    counts: np.ndarray  # (K,) occurrences of each code
    position_counts: np.ndarray  # (P, K)
    utilisation: float  # fraction of codes used at least once
    entropy_bits: float
    entropy_bits_miller_madow: float
    perplexity: float
    dead_codes: np.ndarray  # ids never used
    most_used: tuple[tuple[int, int], ...]  # (code, count), descending
    least_used: tuple[tuple[int, int], ...]  # among used codes, ascending
    position_entropy_bits: np.ndarray  # (P,)
    position_perplexity: np.ndarray  # (P,)
    position_utilisation: np.ndarray  # (P,) fraction of codes seen at each position
    examples: Mapping[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def used_codes(self) -> int:
        return int((self.counts > 0).sum())

    @property
    def normalized_entropy(self) -> float:
        """Entropy over log2(K): 1 for perfectly uniform usage."""
        return self.entropy_bits / float(np.log2(self.codebook_size))

    def summary(self) -> dict[str, float | int]:
        return {
            "codebook_size": self.codebook_size, "num_positions": self.num_positions,
            "num_samples": self.num_samples, "num_tokens": self.num_tokens, "used_codes": self.used_codes,
            "dead_codes": int(self.dead_codes.size), "utilisation": self.utilisation,
            "entropy_bits": self.entropy_bits, "entropy_bits_miller_madow": self.entropy_bits_miller_madow,
            "normalized_entropy": self.normalized_entropy, "perplexity": self.perplexity,
            "mean_position_entropy_bits": float(np.nanmean(self.position_entropy_bits)),
            "mean_position_utilisation": float(self.position_utilisation.mean()),
        }


class CodebookUsage:
    """Streaming usage accumulator: ``update(ids)`` per batch, ``result()`` at any time.

    ``reservoir_size`` > 0 also keeps, per code, up to that many (sample key, position) references.
    """

    def __init__(self, codebook_size: int, num_positions: int, reservoir_size: int = 0, seed: int = 0) -> None:
        if codebook_size < 1 or num_positions < 1:
            raise ValueError(f"codebook_size and num_positions: must be >= 1, got {codebook_size}, {num_positions}")
        self.codebook_size = int(codebook_size)
        self.num_positions = int(num_positions)
        self.position_counts = np.zeros((num_positions, codebook_size), dtype=np.int64)
        self.num_samples = 0
        self.reservoir = CodeReservoir(codebook_size, reservoir_size, seed) if reservoir_size > 0 else None

    def update(self, ids: torch.Tensor | np.ndarray, keys: Sequence[str] | None = None) -> None:
        """Add a batch of ids (B, P) or (B, 1, P); ``keys`` name the samples (default: running index)."""
        arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        if arr.ndim == 3 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 2 or arr.shape[1] != self.num_positions:
            raise ValueError(f"ids: expected shape (B, {self.num_positions}), got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids: expected integer codes, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= self.codebook_size):
            raise ValueError(f"ids: values must lie in [0, {self.codebook_size}), got [{arr.min()}, {arr.max()}]")
        flat = (np.arange(self.num_positions)[None, :] * self.codebook_size + arr).ravel()
        self.position_counts += np.bincount(flat, minlength=self.position_counts.size).reshape(self.position_counts.shape)
        if self.reservoir is not None:
            if keys is None:
                keys = [str(self.num_samples + i) for i in range(arr.shape[0])]
            self.reservoir.update(arr, keys)
        self.num_samples += arr.shape[0]

    def examples(self, code: int) -> list[tuple[str, int]]:
        if self.reservoir is None:
            raise ValueError("examples: this accumulator was built with reservoir_size=0")
        return self.reservoir.examples(code)

    def result(self, top_k: int = 20) -> UsageStats:
        return usage_from_counts(self.position_counts, self.num_samples, top_k,
                                 self.reservoir.snapshot() if self.reservoir is not None else {})


def usage_from_counts(position_counts: np.ndarray, num_samples: int, top_k: int = 20,
                      examples: Mapping[int, tuple[tuple[str, int], ...]] | None = None) -> UsageStats:
    """All usage statistics from a (P, K) count matrix (also usable on a hand-made histogram)."""
    position_counts = np.asarray(position_counts, dtype=np.int64)
    if position_counts.ndim != 2:
        raise ValueError(f"position_counts: expected (P, K), got shape {position_counts.shape}")
    p, k = position_counts.shape
    counts = position_counts.sum(axis=0)
    h = entropy_from_counts(counts)
    used = np.flatnonzero(counts)
    by_count = used[np.argsort(-counts[used], kind="stable")]
    top = min(top_k, used.size)
    least = by_count[::-1][:top]
    pos_h = _row_entropies_bits(position_counts)
    return UsageStats(
        codebook_size=k, num_positions=p, num_samples=int(num_samples), counts=counts, position_counts=position_counts,
        utilisation=used.size / k, entropy_bits=h, entropy_bits_miller_madow=entropy_from_counts(counts, "miller_madow"),
        perplexity=float(2.0 ** h) if np.isfinite(h) else float("nan"), dead_codes=np.flatnonzero(counts == 0),
        most_used=tuple((int(c), int(counts[c])) for c in by_count[:top]),
        least_used=tuple((int(c), int(counts[c])) for c in least),
        position_entropy_bits=pos_h, position_perplexity=np.exp2(pos_h),
        position_utilisation=(position_counts > 0).sum(axis=1) / k, examples=dict(examples or {}),
    )


@torch.no_grad()
def collect_model_usage(model: "SFTok", teacher: "MaskGITVQGAN | None", batches: Iterable["ImageBatch"],
                        reservoir: int = 16, seed: int = 0, top_k: int = 20,
                        device: torch.device | str | None = None) -> tuple[UsageStats, UsageStats | None]:
    """Usage of the SFTok codebook (latent tokens) and, with a teacher, of the teacher's own codebook
    (proxy codes, sized by the teacher that produced them) over every image of ``batches``."""
    cfg = model.config
    usage = CodebookUsage(cfg.codebook_size, cfg.num_latent_tokens, reservoir, seed)
    proxy = CodebookUsage(teacher.config.codebook_size, cfg.num_proxy_codes, reservoir, seed) if teacher else None
    for batch in batches:
        images = batch.images if device is None else batch.images.to(device)
        _, info = model.encode(images, per_image=True)
        usage.update(info["min_encoding_indices"], batch.keys)
        if proxy is not None:
            proxy.update(teacher.encode(images), batch.keys)
    if usage.num_samples == 0:
        raise ValueError("dataset: holds no images")
    return usage.result(top_k), (proxy.result(top_k) if proxy is not None else None)
