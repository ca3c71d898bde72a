"""The small JSON files a run directory carries besides the trainer's JSONL streams.

They let a run be understood from disk alone, without the database or the process that started it:

- ``run.json``     (manifest, written by the job manager before start): id, name, stage, overrides,
                   resolved config, command, device, sweep id, git commit, seed. A run directory
                   without one (a ``launch_training.py`` started by hand) is still registered by the
                   store, named after its folder; ``config.json``/``config.yaml``/``resolved_config.yaml``
                   are read for its config when present.
- ``process.json`` (written by ``workbench.runs.runner`` at start): pid and start time of the process
                   group leader, so an owner restarted later can re-attach or declare the run lost.
- ``exit.json``    (written by ``workbench.runs.runner`` when the trainer ends): exit code or signal.
- ``train.log``    stdout and stderr of the trainer.
- ``slurm/``       submitit's job files (scripts, pickles, wrapper logs) of a run sent to Slurm.

Writes are atomic (temp file + rename): a reader never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainers.sink import ARTIFACTS_FILE, EVENTS_FILE, METRICS_FILE

MANIFEST_FILE = "run.json"
PROCESS_FILE = "process.json"
EXIT_FILE = "exit.json"
LOG_FILE = "train.log"
CONFIG_CANDIDATES = ("config.json", "resolved_config.yaml", "config.yaml")
CHECKPOINTS_DIR = "checkpoints"
RUN_FILES = (METRICS_FILE, EVENTS_FILE, ARTIFACTS_FILE)


@dataclass(frozen=True)
class ProcessInfo:
    """The runner process (leader of the run's process group) and the trainer it started."""

    pid: int
    start_time: float | None
    child_pid: int | None = None


@dataclass(frozen=True)
class ExitInfo:
    """How the trainer ended: ``exit_code`` in subprocess convention (``-N`` = killed by signal N)."""

    exit_code: int
    ended: float


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (e.g. truncated by a crash)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_process_info(run_dir: str | os.PathLike) -> ProcessInfo | None:
    data = read_json(Path(run_dir) / PROCESS_FILE)
    if not isinstance(data, dict) or "pid" not in data:
        return None
    return ProcessInfo(int(data["pid"]), data.get("start_time"), data.get("child_pid"))


def write_process_info(run_dir: str | os.PathLike, info: ProcessInfo) -> None:
    write_json_atomic(Path(run_dir) / PROCESS_FILE,
                      {"pid": info.pid, "start_time": info.start_time, "child_pid": info.child_pid})


def read_exit_info(run_dir: str | os.PathLike) -> ExitInfo | None:
    data = read_json(Path(run_dir) / EXIT_FILE)
    if not isinstance(data, dict) or "exit_code" not in data:
        return None
    return ExitInfo(int(data["exit_code"]), float(data.get("ended") or 0.0))


def write_exit_info(run_dir: str | os.PathLike, info: ExitInfo) -> None:
    write_json_atomic(Path(run_dir) / EXIT_FILE, {"exit_code": info.exit_code, "ended": info.ended})


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    data = read_json(Path(run_dir) / MANIFEST_FILE)
    return data if isinstance(data, dict) else None


def read_config_file(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a hand-started run left in its directory, or {} when there is none."""
    for name in CONFIG_CANDIDATES:
        path = Path(run_dir) / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def read_log_tail(path: str | os.PathLike, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log, starting at a line boundary when possible."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    if size > max_bytes and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return data.decode("utf-8", errors="replace")


def terminate_partial_line(path: str | os.PathLike) -> bool:
    """End a JSONL file that a killed writer left mid-line with a newline.

    Called before a run resumes: otherwise the resumed writer's first line would be glued onto the
    fragment and both would be lost; now only the fragment is (it is skipped as malformed).
    Returns True when a newline was added.
    """
    try:
        with open(path, "rb+") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return False
            handle.write(b"\n")
            return True
    except FileNotFoundError:
        return False


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """True when the run saved anything to resume from: the launcher's own test (it refuses to start
    over such a folder without ``--resume``)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    return folder.is_dir() and any(folder.iterdir())


def prepare_restart(run_dir: str | os.PathLike) -> None:
    """Make a run directory ready for the next attempt of its run (a resume, a Slurm requeue): forget
    the last attempt's process and exit records and close the JSONL lines it left unfinished."""
    run_dir = Path(run_dir)
    for name in (EXIT_FILE, PROCESS_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_FILES:
        terminate_partial_line(run_dir / name)
