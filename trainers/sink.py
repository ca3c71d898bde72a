"""Where a training run reports to: a narrow ``log(step, metrics)`` interface and its JSONL file form.

A run never talks to the database. It appends JSON lines to files in its run directory and
flushes them often; the workbench's store ingests them (one owner process per DuckDB file), so any
number of runs and a live reader can coexist without lock errors.

Files in a run directory:
- ``metrics.jsonl``: one line per log call: ``{"step": int, "wall": float, "metrics": {key: float}}``;
  a resumed run first writes ``{"step": s, "wall": float, "metrics": {}, "rewind": true}``: rows at step >= s
  from before are superseded (a step number alone cannot say so when the last one logged was s itself)
- ``events.jsonl``: ``{"wall": float, "level": "info"|"warning"|"error", "message": str}``
- ``artifacts.jsonl``: ``{"step": int, "wall": float, "kind": "image"|"checkpoint"|..., "path": str}``
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import IO, Mapping, Protocol

METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
ARTIFACTS_FILE = "artifacts.jsonl"


class MetricSink(Protocol):
    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...
    def rewind(self, step: int) -> None: ...
    def event(self, message: str, level: str = "info") -> None: ...
    def artifact(self, step: int, kind: str, path: str) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """Appends to the run directory's JSONL files; each line is written whole and flushed."""

    def __init__(self, run_dir: str | os.PathLike, fsync_every: int = 50) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[str]] = {}
        self._writes = 0
        self.fsync_every = fsync_every

    def _write(self, name: str, record: Mapping) -> None:
        handle = self._files.get(name)
        if handle is None:
            handle = self._files[name] = open(self.run_dir / name, "a", encoding="utf-8")
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        handle.flush()
        self._writes += 1
        if self.fsync_every and self._writes % self.fsync_every == 0:
            os.fsync(handle.fileno())

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        if clean:
            self._write(METRICS_FILE, {"step": int(step), "wall": time.time(), "metrics": clean})

    def rewind(self, step: int) -> None:
        """Declare that logging restarts at ``step`` (a resume): earlier rows at ``step`` or later are stale."""
        self._write(METRICS_FILE, {"step": int(step), "wall": time.time(), "metrics": {}, "rewind": True})

    def event(self, message: str, level: str = "info") -> None:
        self._write(EVENTS_FILE, {"wall": time.time(), "level": level, "message": str(message)})

    def artifact(self, step: int, kind: str, path: str) -> None:
        self._write(ARTIFACTS_FILE, {"step": int(step), "wall": time.time(), "kind": kind, "path": str(path)})

    def close(self) -> None:
        for handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        self._files.clear()


class MemorySink:
    """Keeps records in lists; for tests and library use without files."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.events: list[tuple[str, str]] = []
        self.artifacts: list[tuple[int, str, str]] = []

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.metrics.append((int(step), {k: float(v) for k, v in metrics.items()}))

    def rewind(self, step: int) -> None:
        self.metrics = [(s, m) for s, m in self.metrics if s < step]

    def event(self, message: str, level: str = "info") -> None:
        self.events.append((level, message))

    def artifact(self, step: int, kind: str, path: str) -> None:
        self.artifacts.append((step, kind, path))

    def close(self) -> None:
        pass


class NullSink:
    """Drops everything: the sink of every rank but the main one, so a run directory is written once."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def rewind(self, step: int) -> None:
        pass

    def event(self, message: str, level: str = "info") -> None:
        pass

    def artifact(self, step: int, kind: str, path: str) -> None:
        pass

    def close(self) -> None:
        pass
