"""Codebook usage accumulated over a whole data set, one batch of token ids at a time.

Only a (positions x codebook) count matrix is kept, never the codes themselves, so a pass over
ImageNet costs 64 x 8192 int64 counters. Entropy and perplexity are taken over the pooled counts
of the whole set: averaging per-batch entropies would under-count codes that each batch misses.

A tokenizer with one codebook per token position (ReVQ: ``codebook()`` is (T, K, D)) has T x K distinct
code vectors: there a code is a (position, id) pair, numbered ``position * K + id``, and every pooled
statistic (utilisation, dead codes, entropy) is over those T x K position-codes; pooling id k of every
position would count T different vectors as one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import torch

from .estimators import entropy_from_counts
from .reservoir import CodeReservoir

if TYPE_CHECKING:
    from core.tokenizer import Tokenizer, TokenizerInfo

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

    codebook_size: int  # K, or P * K position-codes when ``per_position``
    num_positions: int
    num_samples: int
    counts: np.ndarray  # (codebook_size,) occurrences of each code
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
    per_position: bool = False  # one codebook of K per position: code = position * K + id (see the module notes)

    @property
    def codes_per_position(self) -> int:
        """K: the ids a position chooses among (the whole codebook unless ``per_position``)."""
        return int(self.position_counts.shape[1])

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
            "codes_per_position": self.codes_per_position, "per_position_codebooks": self.per_position,
        }


class CodebookUsage:
    """Streaming usage accumulator: ``update(ids)`` per batch, ``result()`` at any time.

    ``reservoir_size`` > 0 also keeps, per code, up to that many (sample key, position) references.
    ``per_position``: every position has its own ``codebook_size`` ids (ReVQ); codes are then position-codes.
    """

    def __init__(self, codebook_size: int, num_positions: int, reservoir_size: int = 0, seed: int = 0,
                 per_position: bool = False) -> None:
        if codebook_size < 1 or num_positions < 1:
            raise ValueError(f"codebook_size and num_positions: must be >= 1, got {codebook_size}, {num_positions}")
        self.codebook_size = int(codebook_size)
        self.num_positions = int(num_positions)
        self.per_position = bool(per_position)
        self.position_counts = np.zeros((num_positions, codebook_size), dtype=np.int64)
        self.num_samples = 0
        codes = self.position_counts.size if per_position else codebook_size
        self.reservoir = CodeReservoir(codes, reservoir_size, seed) if reservoir_size > 0 else None

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
        position_codes = np.arange(self.num_positions)[None, :] * self.codebook_size + arr
        self.position_counts += np.bincount(position_codes.ravel(),
                                            minlength=self.position_counts.size).reshape(self.position_counts.shape)
        if self.reservoir is not None:
            if keys is None:
                keys = [str(self.num_samples + i) for i in range(arr.shape[0])]
            self.reservoir.update(position_codes if self.per_position else arr, keys)
        self.num_samples += arr.shape[0]

    def examples(self, code: int) -> list[tuple[str, int]]:
        if self.reservoir is None:
            raise ValueError("examples: this accumulator was built with reservoir_size=0")
        return self.reservoir.examples(code)

    def result(self, top_k: int = 20) -> UsageStats:
        return usage_from_counts(self.position_counts.copy(), self.num_samples, top_k,
                                 self.reservoir.snapshot() if self.reservoir is not None else {}, self.per_position)


def usage_from_counts(position_counts: np.ndarray, num_samples: int, top_k: int = 20,
                      examples: Mapping[int, tuple[tuple[str, int], ...]] | None = None,
                      per_position: bool = False) -> UsageStats:
    """All usage statistics from a (P, K) count matrix (also usable on a hand-made histogram).

    ``per_position``: row p counts position p's own codebook, so the codes are the P x K (position, id) pairs
    and ``counts`` is the matrix flattened (code = p * K + id). Each image adds one count to every row, so the
    entropy over them is log2(P) + the mean per-position entropy, and the perplexity P times its 2 ** mean."""
    position_counts = np.asarray(position_counts, dtype=np.int64)
    if position_counts.ndim != 2:
        raise ValueError(f"position_counts: expected (P, K), got shape {position_counts.shape}")
    p, k = position_counts.shape
    counts = position_counts.reshape(-1) if per_position else position_counts.sum(axis=0)
    h = entropy_from_counts(counts)
    used = np.flatnonzero(counts)
    by_count = used[np.argsort(-counts[used], kind="stable")]
    top = min(top_k, used.size)
    least = by_count[::-1][:top]
    pos_h = _row_entropies_bits(position_counts)
    return UsageStats(
        codebook_size=counts.size, num_positions=p, num_samples=int(num_samples), counts=counts,
        position_counts=position_counts, utilisation=used.size / counts.size, entropy_bits=h, entropy_bits_miller_madow=entropy_from_counts(counts, "miller_madow"),
        perplexity=float(2.0 ** h) if np.isfinite(h) else float("nan"), dead_codes=np.flatnonzero(counts == 0),
        most_used=tuple((int(c), int(counts[c])) for c in by_count[:top]),
        least_used=tuple((int(c), int(counts[c])) for c in least),
        position_entropy_bits=pos_h, position_perplexity=np.exp2(pos_h),
        position_utilisation=(position_counts > 0).sum(axis=1) / k,
        examples=examples if examples is not None else {}, per_position=per_position,
    )


def has_codebook_per_position(tokenizer: "Tokenizer") -> bool:
    """Whether every token position has its own codebook ((T, K, D), ReVQ) rather than one shared (K, D)."""
    return tokenizer.codebook().dim() == 3


MAP_POSITION = 0  # the position whose codebook a per-position (ReVQ) book's map shows: its ids are its position-codes


def map_codebook(tokenizer: "Tokenizer") -> torch.Tensor:
    """The (K, D) codewords a codebook map draws: the shared codebook, or position MAP_POSITION's where every
    position has its own (its rows are position-codes 0..K-1)."""
    vectors = tokenizer.codebook().detach()
    return vectors[MAP_POSITION] if vectors.dim() == 3 else vectors


def codebook_title(name: str, info: "TokenizerInfo", per_position: bool) -> str:
    """A tokenizer's own book titled by its family's ``name`` and by what its positions are."""
    if per_position:
        return f"{name} codebooks (one per token position: {info.num_tokens} x {info.codebook_size} position-codes)"
    if info.token_grid:
        return f"{name} codebook ({info.token_grid[0]} x {info.token_grid[1]} grid codes)"
    return f"{name} codebook ({info.num_tokens} latent tokens)"


@torch.no_grad()
def collect_tokenizer_usage(tokenizer: "Tokenizer", teacher: "Tokenizer | None", batches: Iterable["ImageBatch"],
                            reservoir: int = 16, seed: int = 0,
                            top_k: int = 20) -> tuple[UsageStats, UsageStats | None]:
    """Usage of any tokenizer's codebook over every image of ``batches`` and, with ``teacher`` (the
    MaskGIT-VQGAN as a tokenizer at the same image size), of the teacher's own codes on the same images.

    Ids come from ``encode_each``, so the numbers do not move with the batch size (SFTok's Sinkhorn
    couples a batch); one codebook per position (ReVQ) is counted per (position, id), see the module notes."""
    info = tokenizer.info
    if teacher is not None and teacher.info.image_size != info.image_size:
        raise ValueError(f"teacher: works at {teacher.info.image_size} px, the {info.family} tokenizer at "
                         f"{info.image_size} px; both must read the same images")
    usage = CodebookUsage(info.codebook_size, info.num_tokens, reservoir, seed, has_codebook_per_position(tokenizer))
    proxy = CodebookUsage(teacher.info.codebook_size, teacher.info.num_tokens, reservoir, seed) if teacher else None
    for batch in batches:
        usage.update(tokenizer.encode_each(batch.images), batch.keys)
        if proxy is not None:
            proxy.update(teacher.encode_each(batch.images), batch.keys)
    if usage.num_samples == 0:
        raise ValueError("dataset: holds no images")
    return usage.result(top_k), (proxy.result(top_k) if proxy is not None else None)
