"""How the card writes a number: fixed digits, a mean with its interval, a gain per decode step."""
from __future__ import annotations

from collections.abc import Iterable


def fmt(value: float, digits: int = 2) -> str:
    """``value`` with a fixed number of digits, so table columns line up and numbers never read as more precise."""
    return f"{value:.{digits}f}"


def with_ci(stat: dict, digits: int = 2) -> str:
    """A measured mean with its interval in brackets, as the evaluation stores it (mean, ci_low, ci_high)."""
    return f"{fmt(stat['mean'], digits)} [{fmt(stat['ci_low'], digits)}, {fmt(stat['ci_high'], digits)}]"


def gains_text(gains: Iterable[float]) -> str:
    """Bits per image at each decode step, one decimal: the information gains the card lists step by step."""
    return ", ".join(fmt(g, 1) for g in gains)


def seed_verdict(diff: float, spread: float, first: str, second: str, word: str = "higher") -> str:
    """A difference between two models is claimed only when it exceeds the seeds' spread; else no claim."""
    if abs(diff) <= spread:
        return "no difference can be claimed"
    return f"{first if diff > 0 else second} is {word}"
