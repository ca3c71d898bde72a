"""What finished or running runs produced, arranged for comparison: sweep tables, config differences
between overlaid runs, and the sample images each evaluation wrote (``images/step-*.png``)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workbench.runs.records import RunRecord, SweepRecord, flatten_config
from workbench.runs.store import Store

LOWER_IS_BETTER = ("loss", "fid", "lpips", "ce", "kl")
_STEP_IMAGE = re.compile(r"step-(\d+)\.png$")


def lower_is_better(key: str) -> bool:
    return any(word in key.lower() for word in LOWER_IS_BETTER)


def point_of(run: RunRecord, grid_keys: Sequence[str]) -> dict[str, str]:
    """The swept values of a run, read back from its overrides (the last ``key=value`` wins)."""
    found: dict[str, str] = {}
    for item in run.overrides:
        key, sep, value = item.partition("=")
        if sep and key in grid_keys:
            found[key] = value
    return {k: found.get(k, "") for k in grid_keys}


def sweep_table(store: Store, sweep: SweepRecord) -> pd.DataFrame:
    """One row per point: run, status, its swept values, and final / best of every eval metric
    (best = max, or min for losses and distances)."""
    runs = store.list_runs(sweep_id=sweep.id)
    grid_keys = list(sweep.grid)
    latest = store.latest([r.id for r in runs]) if runs else pd.DataFrame(columns=["run_id", "key", "value"])
    eval_keys = sorted(k for k in latest["key"].unique() if str(k).startswith("eval/"))
    rows = []
    for run in sorted(runs, key=lambda r: r.name or r.id):
        row: dict[str, Any] = {"run": run.name or run.id, "run_id": run.id, "status": run.status,
                               **point_of(run, grid_keys)}
        frame = store.metrics_frame(run.id, eval_keys) if eval_keys else pd.DataFrame(columns=["key", "value"])
        for key in eval_keys:
            values = frame.loc[frame["key"] == key, "value"]
            short = key.removeprefix("eval/")
            row[f"{short} final"] = round(float(values.iloc[-1]), 4) if len(values) else None
            best = values.min() if lower_is_better(key) else values.max()
            row[f"{short} best"] = round(float(best), 4) if len(values) else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "run_id", "status", *grid_keys,
                                       *[f"{k.removeprefix('eval/')} {w}" for k in eval_keys for w in ("final", "best")]])


def overlay_diff(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """The config keys on which overlaid runs differ: one column per run (its name)."""
    if len(runs) < 2:
        return pd.DataFrame(columns=["key"])
    flats = [flatten_config(r.config or {}) for r in runs]
    keys = sorted(set().union(*flats))
    differing = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    names = [r.name or r.id for r in runs]
    return pd.DataFrame([[k, *("" if f.get(k) is None else str(f.get(k)) for f in flats)] for k in differing],
                        columns=["key", *names])


def eval_images(run_dir: str | Path) -> dict[int, Path]:
    """Step -> sample grid written at that evaluation, in step order."""
    folder = Path(run_dir) / "images"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _STEP_IMAGE.search(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def nearest_step(steps: Sequence[int], wanted: float | None) -> int | None:
    """The logged step closest to ``wanted`` at or below it (the first when none is); None without steps."""
    if not steps:
        return None
    if wanted is None:
        return steps[-1]
    below = [s for s in steps if s <= wanted]
    return below[-1] if below else steps[0]


def sample_columns(run: RunRecord) -> str:
    """What the columns of a run's eval sample picture are, left to right (the trainer's stage decides)."""
    stage = run.stage
    if stage == "teacher":
        return "input | reconstruction"
    if stage == "generator":
        return "generated samples (4 classes)"
    steps = sorted({int(s) for s in (run.config or {}).get("eval_num_steps") or (1, 2, 4, 8)})
    shown = [steps[0]] if steps[0] == steps[-1] else [steps[0], steps[-1]]
    return "input | " + " | ".join(f"{n}-step decode" for n in shown)


#: What a sweep is judged on by default, most wanted first: reconstruction quality, then accuracy, then anything.
OPTIMISED_METRICS = ("rfid", "psnr", "accuracy", "code_acc")


def default_sweep_metric(metrics: Sequence[str]) -> str | None:
    """The sweep plot's first metric: the final value of the eval metric a sweep optimises (rFID, then PSNR at the
    most steps, then accuracy), not whichever column sorts first."""
    finals = [m for m in metrics if m.endswith(" final")]

    def most_steps(name: str) -> int:
        match = re.search(r"@(\d+)", name)
        return int(match.group(1)) if match else 0

    for word in OPTIMISED_METRICS:
        hits = [m for m in finals if word in m.lower()]
        if hits:
            return max(hits, key=most_steps)
    return finals[0] if finals else (metrics[0] if metrics else None)
