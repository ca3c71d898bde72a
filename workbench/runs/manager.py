"""Background training jobs: validate, queue, start, watch, cancel, resume, sweep.

Each run is ``launch_training.py --stage S --config C --run-dir RUN_DIR [overrides] [--resume]``, started
by an executor (``workbench.runs.executors``): ``local`` runs it as a process on this machine, ``slurm``
as a Slurm job. Either way the run directory gets the same files (``train.log``, ``process.json``,
``exit.json``, the trainer's JSONL streams); runs report only through them, and the ``JobManager``,
which lives in the process that owns the ``Store``, ingests them. Nothing here knows about Gradio.

Status stays true after failures: exit 0 -> done, 130 -> stopped, other codes and signals -> failed
(with the log's tail in ``error``); Slurm adds pending, timeout and preempted. Closing the manager
leaves runs going; the next manager on the workspace re-attaches those still alive and settles those
that ended unseen (``lost`` when nothing recorded their end).

Local devices have a concurrency limit (default 1); jobs beyond it wait in the queue, which lives in
the database and so survives an owner restart. Slurm runs go to Slurm's own queue at once.
"""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from trainers.provenance import code_version

from workbench.runs.commands import (DEFAULT_LAUNCHER, DEFAULT_LAUNCHER_ARGS, REPO_ROOT, LaunchSpec,
                                     launcher_command, stage_args, with_resume)
from workbench.runs.executors.base import Executor, JobState
from workbench.runs.executors.local import (ACCELERATE_LAUNCH, LocalExecutor, build_command, device_env,
                                            format_devices, parse_devices)
from workbench.runs.executors.slurm import SlurmExecutor, check_slurm_tools
from workbench.runs.executors.slurm_options import SlurmOptions
from workbench.runs.procs import describe_exit
from workbench.runs.records import STAGES, RunRecord, RunStatus, SweepRecord, find_config_value
from workbench.runs.rundir import LOG_FILE, MANIFEST_FILE, prepare_restart, read_log_tail, write_json_atomic
from workbench.runs.store import Store
from workbench.runs.sweeps import expand_grid, point_overrides

__all__ = ["ACCELERATE_LAUNCH", "DEFAULT_LAUNCHER", "DEFAULT_LAUNCHER_ARGS", "DryRunValidator", "InvalidConfigError",
           "JobManager", "LaunchSpec", "build_command", "device_env", "format_devices", "parse_devices"]
LOG_TAIL_BYTES = 3000
ENDED_WITH_LOG = frozenset({RunStatus.FAILED, RunStatus.LOST, RunStatus.TIMEOUT, RunStatus.PREEMPTED})


class InvalidConfigError(ValueError):
    """The launcher rejected a config (``--dry-run`` exit 2); the message is the launcher's."""


Validator = Callable[[LaunchSpec], dict]
"""Returns the resolved config of a spec or raises ``InvalidConfigError`` with the reason."""


class DryRunValidator:
    """Asks the launcher itself: ``launch_training.py ... --dry-run`` prints the resolved config as YAML
    (exit 0) or the reason it is invalid (exit 2). Nothing is started and no run directory is made."""

    def __init__(self, launcher: Sequence[str] = DEFAULT_LAUNCHER, *, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 300.0) -> None:
        self.launcher, self.cwd, self.env, self.timeout = list(launcher), cwd, env, timeout

    def __call__(self, spec: LaunchSpec) -> dict:
        command = [*self.launcher, *stage_args(spec), "--dry-run"]
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


@dataclass
class _Planned:
    """A run about to be queued and the spec its config is validated with."""

    run: RunRecord
    spec: LaunchSpec


class JobManager:
    """Starts and watches training runs of one workspace; the process holding it owns the ``Store``.

    ``workspace`` is a ``Store`` (shared with the UI) or a path (the manager opens and owns a store).
    ``launcher`` is the command before ``--stage ...`` (default ``[python, launch_training.py]``);
    ``validator`` defaults to the launcher's ``--dry-run``. ``device_limits`` caps concurrent local runs
    per device (default 1 each). A background thread ticks every ``poll_interval`` seconds unless
    ``start=False`` (then call ``tick()`` yourself); Slurm is asked every ``slurm_poll_interval``.
    """

    def __init__(self, workspace: Store | str | os.PathLike, *, launcher: Sequence[str] | None = None,
                 launcher_args: Sequence[str] = DEFAULT_LAUNCHER_ARGS, validator: Validator | None = None,
                 device_limits: Mapping[str, int] | None = None, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, stop_timeout: float = 30.0, poll_interval: float = 0.5,
                 scan_interval: float = 5.0, slurm_poll_interval: float = 2.0, start: bool = True) -> None:
        self._owns_store = not isinstance(workspace, Store)
        self.store = Store(workspace) if self._owns_store else workspace
        self.launcher = list(launcher or DEFAULT_LAUNCHER)
        self.launcher_args = list(launcher_args)
        self.cwd = Path(cwd or REPO_ROOT)
        self.env = dict(env or {})
        self.validator = validator or DryRunValidator(self.launcher, cwd=self.cwd, env=self._base_env())
        self.device_limits = dict(device_limits or {})
        self.poll_interval, self.scan_interval = poll_interval, scan_interval
        self.git_commit = code_version(self.cwd)
        self.local = LocalExecutor(cwd=self.cwd, env=self._base_env, device_limits=self.device_limits,
                                   stop_timeout=stop_timeout)
        self.slurm = SlurmExecutor(cwd=self.cwd, env=self._job_env, poll_interval=slurm_poll_interval)
        self.executors: dict[str, Executor] = {self.local.name: self.local, self.slurm.name: self.slurm}
        self._active: dict[str, str] = {}  # run id -> the status last recorded, for runs an executor watches
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_scan = 0.0
        self._reconcile([r.id for r in self.store.list_runs(status=RunStatus.ACTIVE)])
        self._watch_ended(self.store.list_runs(status=sorted(RunStatus.TERMINAL)))
        if start:
            self.start()

    @property
    def stop_timeout(self) -> float:
        return self.local.stop_timeout

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
            for run_id in list(self._active):
                self.cancel(run_id)
            deadline = time.time() + self.stop_timeout + 5
            while self._active and time.time() < deadline:
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
               device: str = "cpu", name: str | None = None, slurm: SlurmOptions | None = None) -> RunRecord:
        """Validate, then queue one run: on this machine's ``device``, or as a Slurm job when ``slurm``
        options are given. Raises ``InvalidConfigError`` (nothing queued) when invalid."""
        [run] = self._queue([self._plan(stage, config, list(overrides), device, name, slurm=slurm)])
        return run

    def submit_sweep(self, stage: str, config: str | os.PathLike | None, grid: Mapping[str, Sequence[Any]],
                     overrides: Sequence[str] = (), *, device: str = "cpu", name: str | None = None,
                     slurm: SlurmOptions | None = None) -> SweepRecord:
        """One run per grid point (``{"optim.lr": [1e-4, 3e-4], ...}``), grouped under a sweep id;
        with ``slurm`` options, one Slurm job per point.

        Every point is validated first; if any is invalid nothing is queued and the error lists them.
        """
        points = expand_grid(grid)
        sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        name = name or sweep_id
        planned = [self._plan(stage, config, [*overrides, *point_overrides(p)], device, f"{name}[{i}]", sweep_id, slurm)
                   for i, p in enumerate(points)]
        sweep = SweepRecord(sweep_id, name, stage, str(config or ""), {k: list(v) for k, v in grid.items()},
                            time.time())
        self._validate(planned)
        self.store.create_sweep(sweep)
        sweep.run_ids = [run.id for run in self._queue(planned, validated=True)]
        return sweep

    def submit_job(self, kind: str, command_for: Callable[[Path], list[str]], config: Mapping[str, Any], *,
                   device: str = "cpu", name: str | None = None, slurm: SlurmOptions | None = None) -> RunRecord:
        """Queue a run that is not a training stage (``kind``, e.g. an evaluation): the caller has checked it and
        ``command_for(run_dir)`` gives its command line. It then starts, stops, resumes (``--resume`` appended)
        and reports through its run directory exactly as a training run; ``config`` is what it records."""
        if kind in STAGES:
            raise ValueError(f"{kind!r} is a training stage: submit it with submit()")
        if slurm is not None:
            check_slurm_tools()
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        run_dir = self.store.run_dir_for(run_id)
        where = format_devices(parse_devices(device)) if slurm is None else slurm.describe()
        run = RunRecord(id=run_id, run_dir=str(run_dir), name=name or run_id, stage=kind, status=RunStatus.QUEUED,
                        config=dict(config), command=list(command_for(run_dir)), git_commit=self.git_commit,
                        device=where, executor="local" if slurm is None else self.slurm.name,
                        executor_options={} if slurm is None else slurm.to_dict())
        [run] = self._queue([_Planned(run, LaunchSpec(kind, None, (), str(run_dir)))], validated=True)
        return run

    def _plan(self, stage: str, config: str | os.PathLike | None, overrides: list[str], device: str,
              name: str | None, sweep_id: str | None = None, slurm: SlurmOptions | None = None) -> _Planned:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        if slurm is not None:
            check_slurm_tools()
        devices = parse_devices(device) if slurm is None else ()
        config_path = str(Path(config).resolve()) if config else None
        if config_path and not Path(config_path).is_file():
            raise InvalidConfigError(f"config file not found: {config_path}")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{stage}-{secrets.token_hex(3)}"
        run_dir = self.store.run_dir_for(run_id)
        spec = LaunchSpec(stage, config_path, tuple(overrides), str(run_dir))
        if slurm is None:
            command, where, options = build_command(self.launcher, spec, devices, self.launcher_args), format_devices(devices), {}
        else:
            command, where, options = launcher_command(self.launcher, spec, self.launcher_args), slurm.describe(), slurm.to_dict()
        run = RunRecord(id=run_id, run_dir=str(run_dir), name=name or run_id, stage=stage,
                        status=RunStatus.QUEUED, overrides=overrides, command=command,
                        git_commit=self.git_commit, device=where, sweep_id=sweep_id,
                        executor="local" if slurm is None else self.slurm.name, executor_options=options)
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
                "seed": item.run.seed, "created_at": item.run.created_at, "executor": item.run.executor,
                "executor_options": item.run.executor_options})
        self._wake()
        return runs

    # ------------------------------------------------------------------ control
    def cancel(self, run_id: str) -> RunRecord:
        """Stop a run: a queued one at once; a started one through its executor (local: SIGTERM to its
        process group, SIGKILL after ``stop_timeout``; Slurm: ``scancel``). The trainer saves a
        checkpoint and exits 130 when it can."""
        with self._lock:
            run = self.store.get_run(run_id)
            if run.status == RunStatus.QUEUED and run_id not in self._active:
                return self.store.update_run(run_id, status=RunStatus.STOPPED, ended_at=time.time(),
                                             error="cancelled before it started")
            if run_id not in self._active:
                raise ValueError(f"run {run_id} is {run.status}, not running: nothing to cancel")
            if run.status != RunStatus.STOPPING:
                self.executors[run.executor].cancel(run_id)
                self._record(run_id, status=RunStatus.STOPPING)
            self._wake()
            return self.store.get_run(run_id)

    def resume(self, run_id: str) -> RunRecord:
        """Queue a stopped/failed/lost/timed-out run again in the same run directory with ``--resume``
        (a Slurm run is submitted as a new job with its options)."""
        with self._lock:
            run = self.store.get_run(run_id)
            if run.status not in RunStatus.RESUMABLE or run_id in self._active:
                raise ValueError(f"run {run_id} is {run.status}: only {sorted(RunStatus.RESUMABLE)} runs resume")
            if not run.command:
                raise ValueError(f"run {run_id} was not started by the job manager: its command is unknown")
            prepare_restart(run.run_dir)
            command = run.command if run.started_at is None else with_resume(run.command)
            run = self.store.update_run(run_id, status=RunStatus.QUEUED, command=command, exit_code=None,
                                        ended_at=None, error=None, pid=None, pid_start=None, job_id=None)
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
            return self.local.running_per_device()

    # ------------------------------------------------------------------ the tick
    def tick(self) -> None:
        """Take the executors' news (ends, starts, requeues), start queued runs, ingest new lines."""
        with self._lock:
            for executor in self.executors.values():
                for run_id, state in executor.poll().items():
                    self._observe(run_id, state)
            self._start_queued()
            active = list(self._active)
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

    def _start_queued(self) -> None:
        for run in self.store.list_runs(status=RunStatus.QUEUED):
            executor = self.executors[run.executor]
            if run.id in self._active or not executor.can_start(run):
                continue
            try:
                started = executor.start(run)
            except Exception as exc:  # noqa: BLE001 -- whatever the executor met, the run says so
                self.store.update_run(run.id, status=RunStatus.FAILED, ended_at=time.time(),
                                      error=f"could not start on {executor.name}: {exc}")
                continue
            self._active[run.id] = started["status"]
            self.store.update_run(run.id, exit_code=None, ended_at=None, error=None, **started)

    def _observe(self, run_id: str, state: JobState) -> None:
        """Record what an executor reports about one of its runs, when it changed."""
        if state.ended:
            self._active.pop(run_id, None)
            self.store.ingest([run_id])  # everything it wrote, before its end is recorded
            self._record_end(run_id, state)
            return
        if self._active.get(run_id) == RunStatus.STOPPING:
            return  # cancel sent: it stays stopping until it ends
        if run_id not in self._active:  # an ended run its scheduler requeued: it lives again
            self.store.update_run(run_id, exit_code=None, ended_at=None, error=None)
        if self._active.get(run_id) != state.status:
            extra = {"started_at": time.time()} if state.status == RunStatus.RUNNING else {}
            self._record(run_id, status=state.status, **extra)

    def _record(self, run_id: str, **changes: Any) -> None:
        self._active[run_id] = changes["status"]
        self.store.update_run(run_id, **changes)

    def _base_env(self) -> dict[str, str]:
        return {**os.environ, **self._job_env()}

    def _job_env(self) -> dict[str, str]:
        """What a run's environment adds to the one it starts in (here or on a Slurm node)."""
        path = os.pathsep.join(p for p in (str(REPO_ROOT), self.env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))) if p)
        return {**self.env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}

    def _record_end(self, run_id: str, state: JobState) -> None:
        error = state.reason
        if state.status in ENDED_WITH_LOG:
            log_tail = read_log_tail(Path(self.store.get_run(run_id).run_dir) / LOG_FILE, LOG_TAIL_BYTES)
            reason = state.reason or describe_exit(state.exit_code or 0)
            error = f"{reason}\n--- end of {LOG_FILE} ---\n{log_tail}"
        self.store.update_run(run_id, status=state.status, exit_code=state.exit_code, ended_at=time.time(), error=error)

    def _watch_ended(self, runs: Sequence[RunRecord]) -> None:
        """Ended runs go to their executor too: a scheduler may run one again (a Slurm requeue after the
        manager that saw it end has gone)."""
        for run in runs:
            if run.status in RunStatus.TERMINAL and run.id not in self._active:
                self.executors[run.executor].watch_ended(run)

    def _reconcile(self, run_ids: Sequence[str]) -> None:
        """Re-attach runs that still live; settle those that ended while nobody watched; watch ended ones."""
        for run_id in run_ids:
            run = self.store.get_run(run_id)
            if run.status in RunStatus.TERMINAL:
                self._watch_ended([run])
            if run.status not in RunStatus.ACTIVE or run_id in self._active:
                continue
            state = self.executors[run.executor].attach(run)
            if state is None:
                continue  # never started: stays queued
            if state.ended:
                self.store.ingest([run_id])
                self._record_end(run_id, state)
            else:
                self._active[run_id] = run.status
                if state.status != run.status:
                    self._record(run_id, status=state.status)


def _stop_at_exit(ref: "weakref.ref[JobManager]") -> None:
    """Let the watcher thread finish its tick before the interpreter (and DuckDB) go down under it."""
    manager = ref()
    if manager is not None and manager._thread is not None:
        manager._stop.set()
        manager._thread.join(timeout=10)
