"""A run's live log: what it printed, its events, and one readable line per logged step and evaluation.

Runs under the job manager print little (``--no-progress``: no tqdm bar), and the numbers a
researcher watches are in ``metrics.jsonl``. This merges ``train.log`` with those metrics, as
the store has ingested them, into tqdm-free lines ordered by time.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from workbench.runs.rundir import LOG_FILE, read_log_tail
from workbench.runs.store import Store

MAX_LINES = 60
_SHORT = {"train/loss": "loss", "lr": "lr", "grad_norm": "grad norm", "throughput/images_per_s": "img/s"}
_ORDER = {key: i for i, key in enumerate(_SHORT)}  # the familiar numbers first, then the rest by name
_SKIP = {"train/step", "progress"}
_BAR = re.compile(r"\d+%\|")  # a tqdm progress bar


def _value(key: str, value: float) -> str:
    if key == "lr":
        return f"{value:.2e}"
    if key.startswith("throughput"):
        return f"{value:.1f}"
    return f"{value:.4g}"


def metric_lines(frame: pd.DataFrame) -> list[tuple[float, str]]:
    """(wall, line) per step of a ``step, key, value, wall`` frame; eval keys get their own line."""
    lines = []
    for step, rows in frame.groupby("step", sort=True):
        train = rows[~rows["key"].str.startswith("eval/") & ~rows["key"].isin(_SKIP)]
        evals = rows[rows["key"].str.startswith("eval/")]
        for part, prefix in ((train, f"step {int(step)}"), (evals, f"eval @ step {int(step)}")):
            if len(part):
                pairs = sorted(zip(part["key"], part["value"]), key=lambda kv: (_ORDER.get(kv[0], len(_ORDER)), kv[0]))
                text = " · ".join(f"{_SHORT.get(k, k.removeprefix('eval/'))} {_value(k, v)}" for k, v in pairs)
                lines.append((float(part["wall"].max()), f"{prefix}: {text}"))
    return lines


def printed_lines(run_dir: str | Path) -> list[str]:
    """``train.log``'s last lines without carriage-return redraws or progress bars."""
    text = read_log_tail(Path(run_dir) / LOG_FILE, 8000)
    out = []
    for raw in text.splitlines():
        line = raw.rsplit("\r", 1)[-1].rstrip()
        if line and not _BAR.search(line):
            out.append(line)
    return out


def split_at_start(printed: list[str]) -> tuple[list[str], list[str]]:
    """(lines up to the trainer's ``started stage`` line, the lines printed after it).

    ``train.log`` has no timestamps; what a trainer prints after starting (warnings, ``done``, a
    signal, a traceback) happens while or after it logs steps, so it is shown after the metric lines.
    """
    for i, line in enumerate(printed):
        if line.startswith("started stage"):
            return printed[:i + 1], printed[i + 1:]
    return printed, []


def live_log(store: Store, run_id: str, max_lines: int = MAX_LINES) -> str:
    """Setup lines, the metrics as lines, then what the run printed since (latest last), at most ``max_lines``."""
    run = store.get_run(run_id)
    frame = store.metrics_frame(run_id, last_steps=max_lines)  # a timer calls this: never the whole run
    printed = printed_lines(run.run_dir)
    metrics = [line for _, line in sorted(metric_lines(frame))]
    head, tail = split_at_start(printed[-max_lines // 3:])
    lines = head + metrics + tail
    if not lines:
        return f"{run.name or run.id}: {run.status}; nothing logged yet"
    return "\n".join(lines[-max_lines:])
