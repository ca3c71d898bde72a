"""Progress and time-to-finish of a running job from its logged steps.

What a run must log for this to work: its step with every metrics line (``trainers.sink`` does) and
either ``max_steps`` in its resolved config (the trainers do; ``train/step`` is logged too) or a
``progress`` metric in [0, 1]. The rate is measured over the last few dozen logged steps, so a resumed
run's pause and warm-up do not distort it.
"""
from __future__ import annotations

from typing import Sequence

from workbench.runs.records import Progress


def estimate_progress(points: Sequence[tuple[float, float]], max_steps: int | None,
                      progress_points: Sequence[tuple[float, float]] = ()) -> Progress:
    """``points``: recent ``(step, wall)`` ascending by step; ``progress_points``: recent
    ``(progress, wall)`` ascending by wall, used when ``max_steps`` is unknown."""
    step = int(points[-1][0]) if points else None
    rate = _rate(points)
    if max_steps and step is not None:
        fraction = min(1.0, step / max_steps)
        eta = max(0.0, (max_steps - step) / rate) if rate else None
        return Progress(step, int(max_steps), fraction, rate, eta)
    if progress_points:
        fraction = float(progress_points[-1][0])
        progress_rate = _rate(progress_points)
        eta = max(0.0, (1.0 - fraction) / progress_rate) if progress_rate else None
        return Progress(step, None, fraction, rate, eta)
    return Progress(step, None, None, rate, None)


def _rate(points: Sequence[tuple[float, float]]) -> float | None:
    """Units per second between the first and last point; None without two distinct times."""
    if len(points) < 2:
        return None
    (x0, t0), (x1, t1) = points[0], points[-1]
    if t1 <= t0 or x1 <= x0:
        return None
    return (x1 - x0) / (t1 - t0)
