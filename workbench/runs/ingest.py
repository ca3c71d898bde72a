"""Tailing a run's JSONL files: read complete lines from a byte offset and turn them into rows.

The store keeps, per run and file, the byte offset up to which lines are committed, and commits the
rows of a chunk together with the chunk's end offset in one transaction. So each line is ingested
exactly once, also when the owner process dies between reading and committing (the offset did not
move, the next owner reads the chunk again). Metrics lines are parsed by DuckDB's JSON reader inside
that transaction (per-line ``json.loads`` in Python was the bottleneck); events and artifacts, a few
lines per run, are parsed here. Only lines ending in ``\\n`` are read: a line the writer
is still writing (or was killed while writing) waits.

Resume rewinds time: a run killed at step 1234 and resumed from ``checkpoint-1000`` logs steps
1001.. again. Like TensorBoard's purge, a step lower than one already seen drops the stored rows at
and after that step, so a curve shows the trajectory that the checkpoints actually continue. A
resumed run also writes an explicit rewind line (``"rewind": true``), which purges even when its
step equals the highest one seen (killed right after logging the first step past a checkpoint).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_CHUNK_BYTES = 8 << 20


@dataclass
class Chunk:
    """Complete lines read from ``start`` up to ``end`` (the offset after the last newline)."""

    start: int
    end: int
    lines: list[bytes]

    def text_lines(self) -> list[str]:
        """The lines as text (undecodable bytes replaced: such a line fails JSON parsing instead)."""
        return b"\n".join(self.lines).decode("utf-8", errors="replace").split("\n")

    def line_offsets(self) -> list[int]:
        offsets, pos = [], self.start
        for line in self.lines:
            offsets.append(pos)
            pos += len(line) + 1
        return offsets


@dataclass(frozen=True)
class RewindPlan:
    """What a chunk of metrics lines does to the stored curve of its run."""

    keep: np.ndarray | None     # per line: keep its rows (None: keep all)
    purge_from: int | None      # first delete the stored rows with step >= purge_from
    max_step: int | None        # the run's highest surviving step afterwards


def read_chunk(path: str | os.PathLike, offset: int, max_bytes: int = DEFAULT_CHUNK_BYTES,
               max_lines: int | None = None) -> Chunk | None:
    """Complete lines after ``offset``; None when there is no complete line yet (or no file).

    Reads at most ``max_bytes`` unless a single line is longer, then reads to that line's end;
    ``max_lines`` caps the lines per chunk (small transactions, e.g. for a live owner).
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size <= offset:
            return None
        handle.seek(offset)
        data = handle.read(max_bytes)
        cut = data.rfind(b"\n")
        while cut < 0 and offset + len(data) < size:
            more = handle.read(max_bytes)
            if not more:
                break
            pos = more.find(b"\n")
            data += more
            if pos >= 0:
                cut = len(data) - len(more) + pos
    if cut < 0:
        return None
    lines = data[:cut].split(b"\n")
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        cut = sum(len(line) + 1 for line in lines) - 1
    return Chunk(offset, offset + cut + 1, lines)


def plan_rewinds(steps: np.ndarray, prior_max_step: int | None, explicit: np.ndarray | None = None) -> RewindPlan:
    """Apply resume semantics to the steps of a chunk's lines (in file order).

    A line whose step is lower than the highest surviving step so far is a rewind to that step: every
    earlier row at that step or later is dropped (stored ones via ``purge_from``, earlier lines of
    this chunk via ``keep``). Equal steps are no rewind (several log calls per step are normal),
    unless the line is an ``explicit`` rewind (a resumed run's first line).
    """
    steps = np.asarray(steps, dtype=np.int64)
    explicit = np.zeros(steps.size, dtype=bool) if explicit is None else np.asarray(explicit, dtype=bool)
    if steps.size == 0:
        return RewindPlan(None, None, prior_max_step)
    floor = np.iinfo(np.int64).min if prior_max_step is None else prior_max_step
    high_before = np.maximum.accumulate(np.r_[floor, steps[:-1]])
    if not np.any(steps < high_before) and not explicit.any():  # the usual case: steps never go back
        return RewindPlan(None, None, int(max(steps.max(), floor)))
    high, purge_from = prior_max_step, None
    rewind_at = np.full(steps.size, np.iinfo(np.int64).max)
    for i, step in enumerate(steps.tolist()):
        if explicit[i] or (high is not None and step < high):
            rewind_at[i] = step
            purge_from = step if purge_from is None else min(purge_from, step)
            high = step
        else:
            high = step if high is None else max(high, step)
    later_rewind = np.minimum.accumulate(rewind_at[::-1])[::-1]  # lowest rewind at or after each line
    lowest_after = np.r_[later_rewind[1:], np.iinfo(np.int64).max]
    return RewindPlan(steps < lowest_after, purge_from, high)


def parse_event_lines(chunk: Chunk) -> tuple[list[tuple[float, str, str]], list[str]]:
    """``(wall, level, message)`` rows of ``events.jsonl`` and the malformed-line notes."""
    rows, skipped = [], []
    for offset, line in zip(chunk.line_offsets(), chunk.lines):
        record = _load(line)
        try:
            rows.append((float(record["wall"]), str(record.get("level", "info")), str(record["message"])))
        except (TypeError, KeyError, ValueError, AttributeError):
            skipped.append(f"events line at byte {offset} is malformed: {line[:120]!r}")
    return rows, skipped


def parse_artifact_lines(chunk: Chunk) -> tuple[list[tuple[int, float, str, str]], list[str]]:
    """``(step, wall, kind, path)`` rows of ``artifacts.jsonl`` and the malformed-line notes."""
    rows, skipped = [], []
    for offset, line in zip(chunk.line_offsets(), chunk.lines):
        record = _load(line)
        try:
            rows.append((int(record["step"]), float(record["wall"]), str(record["kind"]), str(record["path"])))
        except (TypeError, KeyError, ValueError, AttributeError):
            skipped.append(f"artifacts line at byte {offset} is malformed: {line[:120]!r}")
    return rows, skipped


def _load(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        return None
