"""How long a long analysis will take, estimated from its first timed batch, said before the rest runs.

A researcher who starts the Information or Codebook screen on SFTok-B/L should learn within one batch
whether the whole run takes seconds or an hour, and how much work fits a minute, so that they can
cancel and lower the count. Cost is taken as proportional to the items done (images, or image x slot
rows): the first batch's time per item times the total.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MINUTE = 60.0


@dataclass(frozen=True)
class Budget:
    """The first ``done`` of ``total`` items took ``seconds``."""

    done: int
    seconds: float
    total: int
    unit: str = "images"

    def __post_init__(self) -> None:
        if self.done < 1 or self.total < self.done or not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"budget: need 1 <= done <= total and a finite time >= 0, got done={self.done}, "
                             f"total={self.total}, seconds={self.seconds}")

    @property
    def seconds_per_item(self) -> float:
        return self.seconds / self.done

    @property
    def total_seconds(self) -> float:
        """Estimated time for all ``total`` items, the first batch included."""
        return self.seconds_per_item * self.total

    @property
    def remaining_seconds(self) -> float:
        return self.seconds_per_item * (self.total - self.done)

    def fit(self, seconds: float = MINUTE) -> int:
        """How many items fit ``seconds`` at this rate (whole items; every one if the batch took no time)."""
        if self.seconds_per_item == 0:
            return self.total
        return int(math.floor(seconds / self.seconds_per_item + 1e-9))

    def text(self) -> str:
        """One status line: 'about 64 s for all 256 images; about 240 images fit a minute'."""
        return (f"about {format_seconds(self.total_seconds)} for all {self.total} {self.unit}; "
                f"about {self.fit()} {self.unit} fit a minute")


def format_seconds(seconds: float) -> str:
    """Seconds as a person reads a wait: '64 s', '12 min', '2.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["Budget", "MINUTE", "format_seconds"]
