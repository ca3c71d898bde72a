"""Runs as processes on this machine, one OS session each, pinned to devices with per-device slots.

Each run is ``python -m workbench.runs.runner --run-dir RUN -- COMMAND`` started as the leader of a
new session; the runner writes ``process.json``, ``train.log`` and, at the end, ``exit.json``. A run
is identified by pid plus process start time, so a later owner can re-attach (or call it lost).
Cancel is SIGTERM to the group (the trainer checkpoints and exits 130), SIGKILL after ``stop_timeout``.

Devices: ``"cpu"``, ``"cuda:N"``, or ``"cuda:0,1"`` for one run on several GPUs (started through
``accelerate launch --num_processes N``).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from workbench.runs.commands import DEFAULT_LAUNCHER_ARGS, LaunchSpec, launcher_command, split_python
from workbench.runs.executors.base import Executor, JobState
from workbench.runs.procs import describe_exit, is_same_process_alive, process_start_time, signal_group
from workbench.runs.records import RunRecord, RunStatus, status_for_exit
from workbench.runs.rundir import EXIT_FILE, LOG_FILE, PROCESS_FILE, read_exit_info, read_process_info

ACCELERATE_LAUNCH = (sys.executable, "-m", "accelerate.commands.launch")


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
    command = launcher_command(launcher, spec, launcher_args)
    if len(devices) > 1:
        _, script_and_args = split_python(command)
        return [*ACCELERATE_LAUNCH, "--num_processes", str(len(devices)), *script_and_args]
    return command


@dataclass
class _LocalJob:
    """A run whose process group this executor watches: its own child (``popen``) or a re-attached one."""

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


class LocalExecutor(Executor):
    """``env`` gives the base environment of each start (the manager's, with ``PYTHONPATH``);
    ``device_limits`` caps concurrent runs per device (default 1 each) and may be changed live."""

    name = "local"

    def __init__(self, *, cwd: str | os.PathLike, env: Callable[[], Mapping[str, str]],
                 device_limits: dict[str, int], stop_timeout: float) -> None:
        self.cwd, self.env, self.device_limits, self.stop_timeout = Path(cwd), env, device_limits, stop_timeout
        self._jobs: dict[str, _LocalJob] = {}

    def running_per_device(self) -> dict[str, int]:
        return dict(Counter(d for job in self._jobs.values() for d in job.devices))

    def can_start(self, run: RunRecord) -> bool:
        used = self.running_per_device()
        return all(used.get(d, 0) < self.device_limits.get(d, 1) for d in parse_devices(run.device))

    def watched(self) -> list[str]:
        return list(self._jobs)

    def start(self, run: RunRecord) -> dict[str, Any]:
        devices = parse_devices(run.device)
        run_dir = Path(run.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (EXIT_FILE, PROCESS_FILE):
            (run_dir / name).unlink(missing_ok=True)
        with open(run_dir / LOG_FILE, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "workbench.runs.runner", "--run-dir", str(run_dir), "--", *run.command],
                cwd=self.cwd, env={**self.env(), **device_env(devices)}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pid_start = process_start_time(popen.pid)
        self._jobs[run.id] = _LocalJob(run.id, run_dir, devices, popen.pid, pid_start, popen)
        return {"status": RunStatus.RUNNING, "started_at": time.time(), "pid": popen.pid, "pid_start": pid_start}

    def attach(self, run: RunRecord) -> JobState | None:
        info = read_process_info(run.run_dir)
        pid, pid_start = (run.pid, run.pid_start) if run.pid else ((info.pid, info.start_time) if info else (None, None))
        if run.status == RunStatus.QUEUED and pid is None:
            return None
        stopping = run.status == RunStatus.STOPPING
        if is_same_process_alive(pid, pid_start):
            job = _LocalJob(run.id, Path(run.run_dir), parse_devices(run.device), pid, pid_start, cancelled=stopping)
            job.kill_at = time.time() + self.stop_timeout if stopping else None
            self._jobs[run.id] = job
            return JobState(RunStatus.STOPPING if stopping else RunStatus.RUNNING)
        exit_info = read_exit_info(run.run_dir)
        return _end_state(exit_info.exit_code if exit_info else None, stopping, pid)

    def poll(self) -> dict[str, JobState]:
        states = {}
        for job in list(self._jobs.values()):
            if job.has_ended():
                states[job.run_id] = self._reap(job)
            else:
                if job.kill_at is not None and time.time() >= job.kill_at and not job.killed:
                    signal_group(job.pid, signal.SIGKILL)
                    job.killed = True
                states[job.run_id] = JobState(RunStatus.STOPPING if job.cancelled else RunStatus.RUNNING)
        return states

    def cancel(self, run_id: str) -> None:
        job = self._jobs[run_id]
        if not job.cancelled:
            job.cancelled = True
            job.kill_at = time.time() + self.stop_timeout
            signal_group(job.pid, signal.SIGTERM)

    def _reap(self, job: _LocalJob) -> JobState:
        del self._jobs[job.run_id]
        exit_info = read_exit_info(job.run_dir)
        if exit_info is not None:
            code: int | None = exit_info.exit_code
        else:  # the runner itself died (SIGKILL to the group): its trainer must not live on unwatched
            signal_group(job.pid, signal.SIGKILL)
            code = job.popen.returncode if job.popen is not None else None
        return _end_state(code, job.cancelled, job.pid)


def _end_state(code: int | None, cancelled: bool, pid: int | None) -> JobState:
    if code is None:
        return JobState(RunStatus.LOST, None, f"process {pid} ended while no owner watched it and left no exit record")
    status = status_for_exit(code, cancelled)
    reason = {RunStatus.FAILED: describe_exit(code), RunStatus.DONE: None,
              RunStatus.STOPPED: "cancelled" if cancelled else "interrupted (exit 130)"}[status]
    return JobState(status, code, reason)
