"""Counts of what a data pass yielded and skipped, so bad samples are visible rather than silent.

A long training run must not die on one truncated JPEG, but it must not quietly drop a tenth of
the data either. Every skip goes through :meth:`DataStats.skip`, which counts it by reason, keeps a
few examples (key, shard, message) and logs the first ones as warnings.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("trainers.data")

# Why a sample (or the rest of a shard) was dropped.
SKIP_REASONS = (
    "corrupt_tar",     # the tar stream broke (truncated or garbled shard); the rest of that shard is lost
    "missing_image",   # no jpg/jpeg/png/webp member
    "corrupt_image",   # image bytes that PIL cannot decode fully (truncated, not an image)
    "image_too_large", # header claims too many pixels (decompression bomb) or an absurd aspect ratio
    "missing_label",   # no cls member
    "bad_label",       # cls is not a non-negative ASCII integer
    "missing_proxy",   # proxy codes requested but proxy.npy / proxy_flip.npy / proxy_size absent
    "bad_proxy",       # proxy arrays unreadable, not 1-D integer, or of different lengths
)
EXAMPLES_PER_REASON = 5
WARN_FIRST = 10  # individual warning lines per pass; later skips are only counted


@dataclass
class DataStats:
    """What one pass over a shard set produced: ``samples`` yielded, ``skipped`` by reason."""

    samples: int = 0
    shards_opened: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        """Record one dropped sample (or broken shard) and warn about the first few."""
        if reason not in SKIP_REASONS:
            raise ValueError(f"reason: unknown skip reason {reason!r}; allowed: {SKIP_REASONS}")
        self.skipped[reason] += 1
        message = f"{where}: {detail}" if detail else where
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_PER_REASON:
            kept.append(message)
        if self.total_skipped <= WARN_FIRST:
            logger.warning("skipped sample (%s) %s", reason, message)
        elif self.total_skipped == WARN_FIRST + 1:
            logger.warning("more samples skipped; further skips are only counted (see loader.stats)")

    def summary(self) -> str:
        """One line for logs: ``'120 samples from 3 shards; 2 skipped (corrupt_image 1, bad_label 1)'``."""
        line = f"{self.samples} samples from {self.shards_opened} shards"
        if not self.skipped:
            return line + "; none skipped"
        parts = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
        return f"{line}; {self.total_skipped} skipped ({parts})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, so a worker process can ship its counts to the main process inside a batch."""
        return {"samples": self.samples, "shards_opened": self.shards_opened,
                "skipped": dict(self.skipped), "examples": {k: list(v) for k, v in self.examples.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataStats":
        return cls(samples=data["samples"], shards_opened=data["shards_opened"],
                   skipped=Counter(data["skipped"]), examples={k: list(v) for k, v in data["examples"].items()})

    @classmethod
    def combine(cls, parts: list["DataStats"]) -> "DataStats":
        """Sum of the per-worker stats (examples: the first few of each reason across workers)."""
        total = cls()
        for part in parts:
            total.samples += part.samples
            total.shards_opened += part.shards_opened
            total.skipped.update(part.skipped)
            for reason, kept in part.examples.items():
                room = EXAMPLES_PER_REASON - len(total.examples.setdefault(reason, []))
                total.examples[reason].extend(kept[:max(room, 0)])
        return total
