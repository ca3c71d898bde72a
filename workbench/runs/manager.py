"""Background training jobs: validate, queue per device, start, watch, cancel, resume, sweep.

Each run is ``launch_training.py --stage S --config C --run-dir RUN_DIR [overrides] [--resume]`` in
its own OS process group (session), wrapped by ``workbench.runs.runner`` which records its pid and, at the
end, its exit code in the run directory; stdout and stderr go to ``RUN_DIR/train.log``. Runs report
only through JSONL files; the ``JobManager`` lives in the process that owns the ``Store`` and ingests
them. Nothing here knows about Gradio.

Status stays true after failures: exit 0 -> done, 130 -> stopped, other codes and signals -> failed
(with the log's tail in ``error``). Closing the manager leaves runs going; the next manager on the
workspace re-attaches those still alive (pid + start time) and marks those that died unseen ``lost``
(or takes their true end from ``exit.json``).

Devices: ``"cpu"``, ``"cuda:N"``, or ``"cuda:0,1"`` for one run on several GPUs (started through
``accelerate launch --num_processes N``). Each device has a concurrency limit (default 1); jobs beyond
it wait in the queue, which lives in the database and so survives an owner restart.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from workbench.runs.procs import describe_exit, is_same_process_alive, process_start_time, signal_group
from workbench.runs.records import (STAGES, RunRecord, RunStatus, SweepRecord, find_config_value,
                               status_for_exit)
from workbench.runs.rundir import (EXIT_FILE, LOG_FILE, MANIFEST_FILE, PROCESS_FILE, read_exit_info,
                              read_log_tail, read_process_info, terminate_partial_line, write_json_atomic)
from workbench.runs.store import RUN_FILES, Store
from workbench.runs.sweeps import expand_grid, point_overrides

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LAUNCHER = (sys.executable, str(REPO_ROOT / "launch_training.py"))
DEFAULT_LAUNCHER_ARGS = ("--no-progress",)  # a tqdm bar in a log file is noise
ACCELERATE_LAUNCH = (sys.executable, "-m", "accelerate.commands.launch")
LOG_TAIL_BYTES = 3000


class InvalidConfigError(ValueError):
    """The launcher rejected a config (``--dry-run`` exit 2); the message is the launcher's."""


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: enough for the validator and for building the command line."""

    stage: str
    config_path: str | None
    overrides: tuple[str, ...]
    run_dir: str


Validator = Callable[[LaunchSpec], dict]
"""Returns the resolved config of a spec or raises ``InvalidConfigError`` with the reason."""


class DryRunValidator:
    """Asks the launcher itself: ``launch_training.py ... --dry-run`` prints the resolved config as YAML
    (exit 0) or the reason it is invalid (exit 2). Nothing is started and no run directory is made."""

    def __init__(self, launcher: Sequence[str] = DEFAULT_LAUNCHER, *, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 300.0) -> None:
        self.launcher, self.cwd, self.env, self.timeout = list(launcher), cwd, env, timeout

    def __call__(self, spec: LaunchSpec) -> dict:
        command = [*self.launcher, *_stage_args(spec), "--dry-run"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, cwd=self.cwd, env=self.env,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise InvalidConfigError(f"config validation timed out after {self.timeout:.0f} s") from exc
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip() or describe_exit(done.returncode)).splitlines()
            raise InvalidConfigError("\n".join(reason[-20:]))
        try:
            resolved = yaml.safe_load(done.stdout)
        except yaml.YAMLError:
            resolved = None
        return resolved if isinstance(resolved, dict) else {}


def parse_devices(device: str) -> tuple[str, ...]:
    """``"cpu"`` -> ("cpu",); ``"cuda:1"`` -> ("cuda:1",); ``"cuda:0,1"`` -> ("cuda:0", "cuda:1")."""
    text = device.strip().lower()
    if text == "cpu":
        return ("cpu",)
    match = re.fullmatch(r"cuda:(\d+(?:,\d+)*)", text)
    if not match:
        raise ValueError(f"device must be 'cpu', 'cuda:N' or 'cuda:N,M,...', got {device!r}")
    indices = match.group(1).split(",")
    if len(set(indices)) != len(indices):
        raise ValueError(f"device {device!r} names a GPU twice")
    return tuple(f"cuda:{i}" for i in indices)


def format_devices(devices: Sequence[str]) -> str:
    """The inverse of ``parse_devices``: ("cuda:0", "cuda:1") -> "cuda:0,1"."""
    if len(devices) == 1:
        return devices[0]
    return "cuda:" + ",".join(d.split(":", 1)[1] for d in devices)


def device_env(devices: Sequence[str]) -> dict[str, str]:
    """The environment that pins a run to its devices (an empty list hides all GPUs for CPU runs)."""
    gpus = [d.split(":", 1)[1] for d in devices if d.startswith("cuda:")]
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}


def build_command(launcher: Sequence[str], spec: LaunchSpec, devices: Sequence[str],
                  launcher_args: Sequence[str] = DEFAULT_LAUNCHER_ARGS) -> list[str]:
    """The trainer's command line; several GPUs go through ``accelerate launch --num_processes N``."""
    args = [*_stage_args(spec), *launcher_args]
    if len(devices) > 1:
        if len(launcher) < 2 or "python" not in Path(launcher[0]).name:
            raise ValueError(f"multi-GPU runs need a launcher of the form [python, script], got {list(launcher)}")
        return [*ACCELERATE_LAUNCH, "--num_processes", str(len(devices)), *launcher[1:], *args]
    return [*launcher, *args]


def _stage_args(spec: LaunchSpec) -> list[str]:
    args = ["--stage", spec.stage, "--run-dir", spec.run_dir]
    if spec.config_path:
        args += ["--config", spec.config_path]
    return [*args, *spec.overrides]


@dataclass
class _Tracked:
    """A run whose process this manager watches: its own child (``popen``) or a re-attached one."""

    run_id: str
    run_dir: Path
    devices: tuple[str, ...]
    pid: int
    pid_start: float | None
    popen: subprocess.Popen | None = None
    cancelled: bool = False
    kill_at: float | None = None
    killed: bool = False

    def has_ended(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return not is_same_process_alive(self.pid, self.pid_start)


@dataclass
class _Planned:
    """A run about to be queued and the spec its config is validated with."""

    run: RunRecord
    spec: LaunchSpec


class JobManager:
    """Starts and watches training runs of one workspace; the process holding it owns the ``Store``.

    ``workspace`` is a ``Store`` (shared with the UI) or a path (the manager opens and owns a store).
    ``launcher`` is the command before ``--stage ...`` (default ``[python, launch_training.py]``);
    ``validator`` defaults to the launcher's ``--dry-run``. ``device_limits`` caps concurrent runs
    per device (default 1 each). A background thread ticks every ``poll_interval`` seconds unless
    ``start=False`` (then call ``tick()`` yourself).
    """

    def __init__(self, workspace: Store | str | os.PathLike, *, launcher: Sequence[str] | None = None,
                 launcher_args: Sequence[str] = DEFAULT_LAUNCHER_ARGS, validator: Validator | None = None,
                 device_limits: Mapping[str, int] | None = None, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, stop_timeout: float = 30.0, poll_interval: float = 0.5,
                 scan_interval: float = 5.0, start: bool = True) -> None:
        self._owns_store = not isinstance(workspace, Store)
        self.store = Store(workspace) if self._owns_store else workspace
        self.launcher = list(launcher or DEFAULT_LAUNCHER)
        self.launcher_args = list(launcher_args)
        self.cwd = Path(cwd or REPO_ROOT)
        self.env = dict(env or {})
        self.validator = validator or DryRunValidator(self.launcher, cwd=self.cwd, env=self._base_env())
        self.device_limits = dict(device_limits or {})
        self.stop_timeout, self.poll_interval, self.scan_interval = stop_timeout, poll_interval, scan_interval
        self.git_commit = _git_commit(self.cwd)
        self._tracked: dict[str, _Tracked] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_scan = 0.0
        self._reconcile([r.id for r in self.store.list_runs(status=RunStatus.ACTIVE)])
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="workbench-jobs", daemon=True)
            self._thread.start()
            atexit.register(_stop_at_exit, weakref.ref(self))

    def close(self, cancel_running: bool = False) -> None:
        """Stop watching. Runs keep going (a later manager re-attaches them) unless ``cancel_running``."""
        if cancel_running:
            for run_id in list(self._tracked):
                self.cancel(run_id)
            deadline = time.time() + self.stop_timeout + 5
            while self._tracked and time.time() < deadline:
                self.tick()
                time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "JobManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep watching: one bad tick must not orphan every run
                print(f"workbench.runs.manager: tick failed: {exc!r}", file=sys.stderr)
            self._stop.wait(self.poll_interval)

    # ------------------------------------------------------------------ submitting
    def submit(self, stage: str, config: str | os.PathLike | None, overrides: Sequence[str] = (), *,
               device: str = "cpu", name: str | None = None) -> RunRecord:
        """Validate, then queue one run. Raises ``InvalidConfigError`` (nothing queued) when invalid."""
        [run] = self._queue([self._plan(stage, config, list(overrides), device, name)])
        return run

    def submit_sweep(self, stage: str, config: str | os.PathLike | None, grid: Mapping[str, Sequence[Any]],
                     overrides: Sequence[str] = (), *, device: str = "cpu", name: str | None = None) -> SweepRecord:
        """One run per grid point (``{"optim.lr": [1e-4, 3e-4], ...}``), grouped under a sweep id.

        Every point is validated first; if any is invalid nothing is queued and the error lists them.
        """
        points = expand_grid(grid)
        sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        name = name or sweep_id
        planned = [self._plan(stage, config, [*overrides, *point_overrides(p)], device, f"{name}[{i}]", sweep_id)
                   for i, p in enumerate(points)]
        sweep = SweepRecord(sweep_id, name, stage, str(config or ""), {k: list(v) for k, v in grid.items()},
                            time.time())
        self._validate(planned)
        self.store.create_sweep(sweep)
        sweep.run_ids = [run.id for run in self._queue(planned, validated=True)]
        return sweep

    def _plan(self, stage: str, config: str | os.PathLike | None, overrides: list[str], device: str,
              name: str | None, sweep_id: str | None = None) -> _Planned:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        devices = parse_devices(device)
        config_path = str(Path(config).resolve()) if config else None
        if config_path and not Path(config_path).is_file():
            raise InvalidConfigError(f"config file not found: {config_path}")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{stage}-{secrets.token_hex(3)}"
        run_dir = self.store.run_dir_for(run_id)
        spec = LaunchSpec(stage, config_path, tuple(overrides), str(run_dir))
        run = RunRecord(id=run_id, run_dir=str(run_dir), name=name or run_id, stage=stage,
                        status=RunStatus.QUEUED, overrides=overrides,
                        command=build_command(self.launcher, spec, devices, self.launcher_args),
                        git_commit=self.git_commit, device=format_devices(devices),
                        sweep_id=sweep_id)
        return _Planned(run, spec)

    def _validate(self, planned: Sequence[_Planned]) -> None:
        """Resolve every config (in parallel); raise one error naming every invalid point."""
        def check(item: _Planned) -> str | None:
            try:
                item.run.config = self.validator(item.spec)
            except InvalidConfigError as exc:
                return str(exc)
            seed = find_config_value(item.run.config, "seed")
            item.run.seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None
            return None

        with ThreadPoolExecutor(max_workers=min(4, len(planned))) as pool:
            errors = list(pool.map(check, planned))
        bad = [(item, err) for item, err in zip(planned, errors) if err is not None]
        if len(bad) == 1 and len(planned) == 1:
            raise InvalidConfigError(bad[0][1])
        if bad:
            raise InvalidConfigError("\n".join(f"{item.run.name} ({' '.join(item.spec.overrides)}): {err}"
                                               for item, err in bad))

    def _queue(self, planned: Sequence[_Planned], validated: bool = False) -> list[RunRecord]:
        if not validated:
            self._validate(planned)
        runs = []
        for item in planned:
            runs.append(self.store.create_run(item.run))  # the row first: a scan never sees an unknown folder
            run_dir = Path(item.run.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_dir / MANIFEST_FILE, {
                "id": item.run.id, "name": item.run.name, "stage": item.run.stage, "config_path": item.spec.config_path,
                "overrides": item.run.overrides, "config": item.run.config, "command": item.run.command,
                "device": item.run.device, "sweep_id": item.run.sweep_id, "git_commit": item.run.git_commit,
                "seed": item.run.seed, "created_at": item.run.created_at})
        self._wake()
        return runs

    # ------------------------------------------------------------------ control
    def cancel(self, run_id: str) -> RunRecord:
        """Stop a run: a queued one at once; a running one by SIGTERM to its process group (the trainer
        saves a checkpoint and exits 130), then SIGKILL after ``stop_timeout`` seconds."""
        with self._lock:
            run = self.store.get_run(run_id)
            if run.status == RunStatus.QUEUED and run_id not in self._tracked:
                return self.store.update_run(run_id, status=RunStatus.STOPPED, ended_at=time.time(),
                                             error="cancelled before it started")
            tracked = self._tracked.get(run_id)
            if tracked is None:
                raise ValueError(f"run {run_id} is {run.status}, not running: nothing to cancel")
            if not tracked.cancelled:
                tracked.cancelled = True
                tracked.kill_at = time.time() + self.stop_timeout
                signal_group(tracked.pid, signal.SIGTERM)
                self.store.update_run(run_id, status=RunStatus.STOPPING)
            self._wake()
            return self.store.get_run(run_id)

    def resume(self, run_id: str) -> RunRecord:
        """Queue a stopped/failed/lost run again in the same run directory with ``--resume``."""
        with self._lock:
            run = self.store.get_run(run_id)
            if run.status not in RunStatus.RESUMABLE or run_id in self._tracked:
                raise ValueError(f"run {run_id} is {run.status}: only {sorted(RunStatus.RESUMABLE)} runs resume")
            if not run.command:
                raise ValueError(f"run {run_id} was not started by the job manager: its command is unknown")
            run_dir = Path(run.run_dir)
            for name in (EXIT_FILE, PROCESS_FILE):
                (run_dir / name).unlink(missing_ok=True)
            for name in RUN_FILES:
                terminate_partial_line(run_dir / name)
            command = run.command if "--resume" in run.command or run.started_at is None else [*run.command, "--resume"]
            run = self.store.update_run(run_id, status=RunStatus.QUEUED, command=command, exit_code=None,
                                        ended_at=None, error=None, pid=None, pid_start=None)
            self._wake()
            return run

    def wait(self, run_id: str, timeout: float = 60.0) -> RunRecord:
        """Block until the run reaches a terminal status; TimeoutError naming its status otherwise."""
        deadline = time.time() + timeout
        while True:
            run = self.store.get_run(run_id)
            if run.status in RunStatus.TERMINAL:
                return run
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout} s")
            if self._thread is None or not self._thread.is_alive():
                self.tick()
            with self._changed:
                self._changed.wait(min(remaining, self.poll_interval))

    def log_tail(self, run_id: str, max_bytes: int = LOG_TAIL_BYTES) -> str:
        return read_log_tail(Path(self.store.get_run(run_id).run_dir) / LOG_FILE, max_bytes)

    def running_per_device(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(d for t in self._tracked.values() for d in t.devices))

    # ------------------------------------------------------------------ the tick
    def tick(self) -> None:
        """Reap ended runs, escalate overdue cancels, start queued runs, ingest new lines."""
        with self._lock:
            for tracked in list(self._tracked.values()):
                if tracked.has_ended():
                    self._finish(tracked)
                elif tracked.kill_at is not None and time.time() >= tracked.kill_at and not tracked.killed:
                    signal_group(tracked.pid, signal.SIGKILL)
                    tracked.killed = True
            self._start_queued()
            active = list(self._tracked)
        if time.time() - self._last_scan >= self.scan_interval:
            self._last_scan = time.time()
            report = self.store.ingest()
            if report.new_runs:
                with self._lock:
                    self._reconcile(list(report.new_runs))
        elif active:
            self.store.ingest(active)
        self._wake()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _limit(self, device: str) -> int:
        return self.device_limits.get(device, 1)

    def _start_queued(self) -> None:
        used = Counter(d for t in self._tracked.values() for d in t.devices)
        for run in self.store.list_runs(status=RunStatus.QUEUED):
            if run.id in self._tracked:
                continue
            devices = parse_devices(run.device)
            if all(used[d] < self._limit(d) for d in devices):
                self._launch(run, devices)
                used.update(devices)

    def _base_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        return env

    def _launch(self, run: RunRecord, devices: tuple[str, ...]) -> None:
        run_dir = Path(run.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (EXIT_FILE, PROCESS_FILE):
            (run_dir / name).unlink(missing_ok=True)
        with open(run_dir / LOG_FILE, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "workbench.runs.runner", "--run-dir", str(run_dir), "--", *run.command],
                cwd=self.cwd, env={**self._base_env(), **device_env(devices)}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pid_start = process_start_time(popen.pid)
        self._tracked[run.id] = _Tracked(run.id, run_dir, devices, popen.pid, pid_start, popen)
        self.store.update_run(run.id, status=RunStatus.RUNNING, started_at=time.time(), pid=popen.pid,
                              pid_start=pid_start, exit_code=None, ended_at=None, error=None)

    def _finish(self, tracked: _Tracked) -> None:
        """Record how a run ended, after ingesting everything it wrote."""
        del self._tracked[tracked.run_id]
        exit_info = read_exit_info(tracked.run_dir)
        if exit_info is not None:
            code: int | None = exit_info.exit_code
        else:  # the runner itself died (SIGKILL to the group): its trainer must not live on unwatched
            signal_group(tracked.pid, signal.SIGKILL)
            code = tracked.popen.returncode if tracked.popen is not None else None
        self.store.ingest([tracked.run_id])
        self._record_end(tracked.run_id, code, cancelled=tracked.cancelled)

    def _record_end(self, run_id: str, code: int | None, cancelled: bool) -> None:
        run = self.store.get_run(run_id)
        log_tail = read_log_tail(Path(run.run_dir) / LOG_FILE, LOG_TAIL_BYTES)
        if code is None:
            self.store.update_run(run_id, status=RunStatus.LOST, ended_at=time.time(),
                                  error=f"process {run.pid} ended while no owner watched it and left no exit "
                                        f"record\n--- end of {LOG_FILE} ---\n{log_tail}")
            return
        status = status_for_exit(code, cancelled)
        error = None
        if status == RunStatus.FAILED:
            error = f"{describe_exit(code)}\n--- end of {LOG_FILE} ---\n{log_tail}"
        elif status == RunStatus.STOPPED:
            error = "cancelled" if cancelled else "interrupted (exit 130)"
        self.store.update_run(run_id, status=status, exit_code=code, ended_at=time.time(), error=error)

    def _reconcile(self, run_ids: Sequence[str]) -> None:
        """Re-attach runs whose process still lives; settle those that ended while nobody watched."""
        for run_id in run_ids:
            run = self.store.get_run(run_id)
            if run.status not in RunStatus.ACTIVE or run_id in self._tracked:
                continue
            info = read_process_info(run.run_dir)
            pid, pid_start = (run.pid, run.pid_start) if run.pid else ((info.pid, info.start_time) if info else (None, None))
            if run.status == RunStatus.QUEUED and pid is None:
                continue  # never started: stays queued
            if is_same_process_alive(pid, pid_start):
                self._tracked[run_id] = _Tracked(run_id, Path(run.run_dir), parse_devices(run.device), pid, pid_start,
                                                 cancelled=run.status == RunStatus.STOPPING)
                if run.status != RunStatus.STOPPING:
                    self.store.update_run(run_id, status=RunStatus.RUNNING, pid=pid, pid_start=pid_start)
                else:
                    self._tracked[run_id].kill_at = time.time() + self.stop_timeout
                continue
            exit_info = read_exit_info(run.run_dir)
            self.store.ingest([run_id])
            self._record_end(run_id, exit_info.exit_code if exit_info else None,
                             cancelled=run.status == RunStatus.STOPPING)


def _stop_at_exit(ref: "weakref.ref[JobManager]") -> None:
    """Let the watcher thread finish its tick before the interpreter (and DuckDB) go down under it."""
    manager = ref()
    if manager is not None and manager._thread is not None:
        manager._stop.set()
        manager._thread.join(timeout=10)


def _git_commit(cwd: Path) -> str | None:
    """``<sha>`` of the code a run starts from, ``<sha>+dirty`` with uncommitted tracked changes."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return None
