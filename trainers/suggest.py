"""Nearest valid name for a mistyped config key, so an error can say what was probably meant."""
from __future__ import annotations

import difflib
from typing import Iterable


def nearest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest candidate (difflib ratio >= ``cutoff``), or None when nothing is close.

    Dotted names in the same section are compared by their last part only: a shared prefix such as
    ``model.decoder.`` would otherwise make unrelated names look alike.
    """
    parent, _, last = name.rpartition(".")

    def score(candidate: str) -> float:
        c_parent, _, c_last = candidate.rpartition(".")
        a, b = (last, c_last) if c_parent == parent else (name, candidate)
        return difflib.SequenceMatcher(None, a, b).ratio()

    scored = [(score(c), c) for c in candidates if c != name]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= cutoff else None


def unknown_key(name: str, candidates: Iterable[str], what: str = "unknown field",
                allowed: Iterable[str] | None = None) -> str:
    """``"<name>: <what>; did you mean '<nearest>'?"``, else the ``allowed`` names (default: the candidates)."""
    candidates = sorted(set(candidates))
    guess = nearest(name, candidates)
    if guess is not None:
        return f"{name}: {what}; did you mean {guess!r}?"
    return f"{name}: {what}; allowed: {sorted(set(allowed)) if allowed is not None else candidates}"
