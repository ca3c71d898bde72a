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


def _event_text(level: str, message: str) -> str:
    return f"[note] {message}" if level == "warning" else message


def place_printed(printed: list[str], events: list[tuple[float, str, str]]) -> list[tuple[float, int, str]]:
    """Give each printed line a time: ``(wall, order, line)``.

    ``train.log`` has no timestamps, but the trainer prints most of what it records as an event (``started
    stage ...``, ``[note] ...``), and events have times. Those lines take their event's time (matched from the
    end, since the log is read from its tail). A line with no event (a signal, ``done``, a traceback) goes just
    before the first event after the last timed line above it: the signal line before ``stopped at step N``,
    ``done`` before ``finished``; with no event after, it goes last. A resumed run thus reads in order: its
    first session, the stop, the resume, the second session.
    """
    walls_of: dict[str, list[float]] = {}
    for wall, level, message in events:
        walls_of.setdefault(_event_text(level, message), []).append(wall)
        if level == "warning":
            walls_of.setdefault(message, []).append(wall)
    timed: list[float | None] = [None] * len(printed)
    for i in range(len(printed) - 1, -1, -1):
        walls = walls_of.get(printed[i])
        if walls:
            timed[i] = walls.pop()
    event_walls = sorted(wall for wall, _, _ in events)
    placed, previous = [], float("-inf")
    for i, line in enumerate(printed):
        if timed[i] is not None:
            previous = timed[i]
            placed.append((previous, i, line))
            continue
        following = next((w for w in event_walls if w > previous), None)
        placed.append((float("inf") if following is None else following - 1e-6, i, line))
    return placed


def live_log(store: Store, run_id: str, max_lines: int = MAX_LINES) -> str:
    """The run's printed lines, events and metrics as one timeline (latest last), at most ``max_lines``.

    Events the trainer did not print (``stopped at step N; checkpoint saved``, ``resumed from ...``) are shown
    too, so a cancel and a resume read as they happened."""
    run = store.get_run(run_id)
    frame = store.metrics_frame(run_id, last_steps=max_lines)  # a timer calls this: never the whole run
    events = [(e.wall, e.level, e.message) for e in store.events(run_id, limit=max_lines)]
    printed = place_printed(printed_lines(run.run_dir)[-max_lines:], events)
    shown = {line for _, _, line in printed}
    lines = [(wall, -1, line) for wall, line in metric_lines(frame)]
    lines += [(wall, -1, _event_text(level, message)) for wall, level, message in events
              if _event_text(level, message) not in shown and message not in shown]
    lines += printed
    if not lines:
        return f"{run.name or run.id}: {run.status}; nothing logged yet"
    return "\n".join(line for _, _, line in sorted(lines, key=lambda x: (x[0], x[1]))[-max_lines:])
