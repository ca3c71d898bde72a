"""Record types shared by the store, the job manager and the UI, plus pure helpers on them.

Times are seconds since the epoch (floats), the same clock the run's JSONL lines carry in ``wall``.
Configs travel as plain nested dicts (the resolved config a run was started with); they are compared
through their flattened dotted keys, the same spelling the CLI overrides use (``optim.lr=3e-4``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.stage_names import STAGES as STAGES  # re-exported for the job manager and the Train screen


class RunStatus:
    """The lifecycle of a run. A string constant per state keeps the DB column readable."""

    QUEUED = "queued"        # accepted (config valid), waiting for a device slot
    PENDING = "pending"      # handed to a scheduler (Slurm), waiting there for resources or a requeue
    RUNNING = "running"      # its process is alive
    STOPPING = "stopping"    # cancel sent (SIGTERM), waiting for the checkpoint-and-exit
    DONE = "done"            # exit code 0
    STOPPED = "stopped"      # cancelled by the user or interrupted (exit 130): resumable
    FAILED = "failed"        # crashed: non-zero exit code or killed by a signal
    LOST = "lost"            # its process vanished while no owner watched and left no exit record
    UNKNOWN = "unknown"      # found on disk, started outside the job manager, end not recorded
    TIMEOUT = "timeout"      # the scheduler killed it at its time limit: resumable
    PREEMPTED = "preempted"  # the scheduler took its resources back and did not requeue it: resumable

    ACTIVE = frozenset({QUEUED, PENDING, RUNNING, STOPPING})
    TERMINAL = frozenset({DONE, STOPPED, FAILED, LOST, UNKNOWN, TIMEOUT, PREEMPTED})
    RESUMABLE = frozenset({STOPPED, FAILED, LOST, UNKNOWN, TIMEOUT, PREEMPTED})
    FAILURES = frozenset({FAILED, LOST})


@dataclass
class RunRecord:
    """One training run: what was started, where it writes, and how it ended.

    ``exit_code`` is the trainer's exit status, or ``-N`` when signal N killed it (``subprocess``'s
    convention). ``error`` holds the reason of a failure and the tail of ``train.log``.
    ``pid``/``pid_start`` identify the process group leader across owner restarts (a pid alone can be
    reused by an unrelated process; pid plus start time cannot). ``executor`` says where it runs
    (``"local"`` or ``"slurm"``); a Slurm run is identified by ``job_id`` and resubmitted with
    ``executor_options`` (``SlurmOptions`` as a dict).
    """

    id: str
    run_dir: str
    name: str = ""
    stage: str | None = None
    status: str = RunStatus.QUEUED
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    git_commit: str | None = None
    seed: int | None = None
    device: str = "cpu"
    sweep_id: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    pid_start: float | None = None
    error: str | None = None
    executor: str = "local"
    job_id: str | None = None
    executor_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepRecord:
    """A grid over config fields: one run per point, all sharing ``id`` as their ``sweep_id``."""

    id: str
    name: str
    stage: str
    config_path: str
    grid: dict[str, list[Any]]
    created_at: float
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetricPoint:
    run_id: str
    step: int
    key: str
    value: float
    wall: float


@dataclass(frozen=True)
class EventRecord:
    run_id: str
    wall: float
    level: str
    message: str


@dataclass(frozen=True)
class ArtifactRecord:
    run_id: str
    step: int
    wall: float
    kind: str
    path: str


@dataclass(frozen=True)
class IngestReport:
    """Rows committed by one ``Store.ingest`` call (each row is committed exactly once)."""

    metrics: int = 0
    events: int = 0
    artifacts: int = 0
    skipped_lines: int = 0
    new_runs: tuple[str, ...] = ()

    def __add__(self, other: "IngestReport") -> "IngestReport":
        return IngestReport(self.metrics + other.metrics, self.events + other.events,
                            self.artifacts + other.artifacts, self.skipped_lines + other.skipped_lines,
                            self.new_runs + other.new_runs)


@dataclass(frozen=True)
class Progress:
    """Where a run stands. ``fraction``/``eta_s`` are None when the run gives no way to know the end
    (neither ``max_steps`` in its config nor a ``progress`` metric in [0, 1])."""

    step: int | None
    max_steps: int | None
    fraction: float | None
    steps_per_s: float | None
    eta_s: float | None


@dataclass(frozen=True)
class ConfigDiff:
    """Difference between two configs over flattened dotted keys, seen from ``a`` to ``b``."""

    added: dict[str, Any]                    # only in b
    removed: dict[str, Any]                  # only in a
    changed: dict[str, tuple[Any, Any]]      # (value in a, value in b)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def rows(self) -> list[tuple[str, str, Any, Any]]:
        """``(key, "added"|"removed"|"changed", a, b)`` sorted by key: a table for the UI."""
        out = [(k, "added", None, v) for k, v in self.added.items()]
        out += [(k, "removed", v, None) for k, v in self.removed.items()]
        out += [(k, "changed", a, b) for k, (a, b) in self.changed.items()]
        return sorted(out, key=lambda row: row[0])


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": leaf}``. Lists stay leaves: a list is one setting, not many."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def diff_configs(a: Mapping[str, Any], b: Mapping[str, Any]) -> ConfigDiff:
    """Added/removed/changed dotted keys between two (nested) configs."""
    fa, fb = flatten_config(a), flatten_config(b)
    return ConfigDiff(
        added={k: fb[k] for k in sorted(fb.keys() - fa.keys())},
        removed={k: fa[k] for k in sorted(fa.keys() - fb.keys())},
        changed={k: (fa[k], fb[k]) for k in sorted(fa.keys() & fb.keys()) if not _same(fa[k], fb[k])},
    )


def find_config_value(config: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` at the top level, else of the first dotted key ending in ``.name``."""
    flat = flatten_config(config)
    if name in flat:
        return flat[name]
    for key in sorted(flat):
        if key.endswith("." + name):
            return flat[key]
    return None


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return type(x) is type(y) and x == y or (_is_number(x) and _is_number(y) and x == y)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


EXIT_OK = 0
EXIT_INVALID_CONFIG = 2
EXIT_INTERRUPTED = 130


def status_for_exit(exit_code: int, cancelled: bool = False) -> str:
    """The status a run ends in, from ``launch_training.py``'s exit contract: 0 done, 130 interrupted
    after saving a checkpoint (resumable), anything else (or a signal, ``exit_code < 0``) failed.
    A run the user cancelled is ``stopped`` however it went down, unless it had finished anyway."""
    if exit_code == EXIT_OK:
        return RunStatus.DONE
    if cancelled or exit_code == EXIT_INTERRUPTED:
        return RunStatus.STOPPED
    return RunStatus.FAILED
