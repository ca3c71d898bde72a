"""Runs as Slurm jobs, submitted with submitit; states from ``squeue``, cancel with ``scancel``.

The run directory must lie on a filesystem the compute nodes share (with the repository and its
Python environment at the same paths): the job writes ``train.log`` and the JSONL metrics there,
and the owner of the workspace ingests them live, as for local runs. submitit's own files (batch
script, pickled ``TrainingJob``, wrapper logs) go to ``RUN_DIR/slurm/``.

States come from ``squeue --states=all`` (``scontrol``'s view, so it works without accounting),
falling back to the run directory's ``exit.json`` once Slurm has forgotten a job. A job that ended
stays watched while Slurm still lists it: should anyone requeue it (``scontrol requeue``, a
preemption), the run becomes active again and resumes from its checkpoint. A manager started later
watches the ended runs of the store the same way (``watch_ended``), so a requeue is noticed whichever
manager runs at the time.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from workbench.runs.executors.base import Executor, JobState
from workbench.runs.executors.slurm_options import SlurmOptions
from workbench.runs.procs import describe_exit
from workbench.runs.records import RunRecord, RunStatus, status_for_exit
from workbench.runs.rundir import read_exit_info, read_log_tail

SUBMITIT_DIR = "slurm"
SLURM_TOOLS = ("sbatch", "squeue", "scancel", "srun")
_ACTIVE = {"PENDING": RunStatus.PENDING, "REQUEUED": RunStatus.PENDING, "REQUEUE_HOLD": RunStatus.PENDING,
           "REQUEUE_FED": RunStatus.PENDING, "CONFIGURING": RunStatus.PENDING, "RESV_DEL_HOLD": RunStatus.PENDING,
           "RUNNING": RunStatus.RUNNING, "COMPLETING": RunStatus.RUNNING, "SUSPENDED": RunStatus.RUNNING,
           "STOPPED": RunStatus.RUNNING, "SIGNALING": RunStatus.RUNNING, "STAGE_OUT": RunStatus.RUNNING,
           "RESIZING": RunStatus.RUNNING}
_TIMED_OUT_NOTE = "Job not requeued because: timed-out"  # submitit's words when the requeues ran out


class SlurmUnavailable(ValueError):
    """This machine cannot submit Slurm jobs (its client tools are missing)."""


def check_slurm_tools() -> None:
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SlurmUnavailable(f"Slurm executor: {', '.join(missing)} not found on PATH (install the Slurm client "
                               "tools, e.g. `apt-get install slurm-client`, and point SLURM_CONF at the cluster's slurm.conf)")


def query_states(job_ids: list[str], timeout: float = 30.0) -> dict[str, tuple[str, str]] | None:
    """``{job id: (STATE, reason)}`` for the jobs slurmctld still holds; None when it cannot be asked."""
    if not job_ids:
        return {}
    try:
        done = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%r", f"--jobs={','.join(job_ids)}"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None  # every id forgotten / controller unreachable
    states = {}
    for line in done.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        states[job_id] = (state.split()[0] if state else "UNKNOWN", reason)
    return states


class SlurmExecutor(Executor):
    """``env`` gives the variables a job adds to the node's environment (``PYTHONPATH`` and the
    manager's extras); ``poll_interval`` spaces out ``squeue`` calls."""

    name = "slurm"

    def __init__(self, *, cwd: str | os.PathLike, env: Callable[[], Mapping[str, str]],
                 poll_interval: float = 2.0) -> None:
        self.cwd, self.env, self.poll_interval = Path(cwd), env, poll_interval
        self._active: dict[str, tuple[str, Path]] = {}   # run id -> (job id, run dir)
        self._ended: dict[str, tuple[str, Path]] = {}    # ended, but Slurm may still requeue them
        self._cancelled: set[str] = set()
        self._last_poll = 0.0

    def describe(self, run: RunRecord) -> str:
        return SlurmOptions.from_mapping(run.executor_options).describe()

    def watched(self) -> list[str]:
        return list(self._active)

    def start(self, run: RunRecord) -> dict[str, Any]:
        import submitit

        from workbench.runs.executors.slurm_job import TrainingJob

        check_slurm_tools()
        options = SlurmOptions.from_mapping(run.executor_options)
        single_node = options.nodes == 1
        # One node: the batch script execs python itself, so Slurm's SIGTERM (cancel, time limit) reaches the
        # trainer, which checkpoints; srun (needed to start one task per node) would kill it at once instead.
        executor = submitit.SlurmExecutor(folder=Path(run.run_dir) / SUBMITIT_DIR, max_num_timeout=options.timeout_requeues,
                                          python=f"exec {shlex.quote(sys.executable)}" if single_node else None)
        executor.update_parameters(**options.submitit_parameters(job_name=f"sftok-{run.id}"), use_srun=not single_node)
        job = executor.submit(TrainingJob(list(run.command), run.run_dir, str(self.cwd), dict(self.env()),
                                          options.nodes, options.gpus_per_node))
        self._track(run.id, job.job_id, run.run_dir)
        self._last_poll = 0.0
        return {"status": RunStatus.PENDING, "job_id": job.job_id, "pid": None, "pid_start": None}

    def attach(self, run: RunRecord) -> JobState | None:
        if not run.job_id:
            return None
        self._track(run.id, run.job_id, run.run_dir)
        if run.status == RunStatus.STOPPING:
            self._cancelled.add(run.id)
        self._last_poll = 0.0
        return JobState(run.status)

    def watch_ended(self, run: RunRecord) -> None:
        """An ended run some other manager saw end: watched while Slurm still lists its job, so a requeue
        (``scontrol requeue``, a preemption) is noticed whichever manager is running then."""
        if run.job_id and run.id not in self._active:
            self._ended[run.id] = (run.job_id, Path(run.run_dir))

    def cancel(self, run_id: str) -> None:
        """``scancel``: Slurm sends SIGTERM (the trainer checkpoints and exits), SIGKILL after its KillWait."""
        job_id, _ = self._active[run_id]
        self._cancelled.add(run_id)
        subprocess.run(["scancel", job_id], check=True, capture_output=True, timeout=60)

    def poll(self) -> dict[str, JobState]:
        if time.time() - self._last_poll < self.poll_interval or not (self._active or self._ended):
            return {}
        self._last_poll = time.time()
        watched = {**self._ended, **self._active}
        known = query_states([job_id for job_id, _ in watched.values()])
        if known is None:
            return {}
        states = {}
        for run_id, (job_id, run_dir) in watched.items():
            slurm_state, reason = known.get(job_id, ("", ""))
            if run_id in self._ended:
                if slurm_state in _ACTIVE:  # requeued after it ended: watch it again
                    self._track(run_id, job_id, run_dir)
                    states[run_id] = JobState(_ACTIVE[slurm_state])
                elif not slurm_state:
                    del self._ended[run_id]
                continue
            state = self._state(run_id, job_id, run_dir, slurm_state, reason)
            states[run_id] = state
            if state.ended:
                del self._active[run_id]
                self._cancelled.discard(run_id)
                if slurm_state:
                    self._ended[run_id] = (job_id, run_dir)
        return states

    def _track(self, run_id: str, job_id: str, run_dir: str | os.PathLike) -> None:
        self._ended.pop(run_id, None)
        self._active[run_id] = (job_id, Path(run_dir))

    def _state(self, run_id: str, job_id: str, run_dir: Path, slurm_state: str, reason: str) -> JobState:
        cancelled = run_id in self._cancelled
        if slurm_state in _ACTIVE:
            status = _ACTIVE[slurm_state]
            return JobState(RunStatus.STOPPING if cancelled and status == RunStatus.RUNNING else status)
        exit_info = read_exit_info(run_dir)
        code = exit_info.exit_code if exit_info else None
        if slurm_state == "COMPLETED":
            return JobState(RunStatus.DONE, 0 if code is None else code)
        if slurm_state == "CANCELLED" or (cancelled and slurm_state):
            return JobState(RunStatus.STOPPED, code, "cancelled" if cancelled else f"Slurm job {job_id} was cancelled")
        if slurm_state == "TIMEOUT":
            return JobState(RunStatus.TIMEOUT, code, f"Slurm job {job_id} reached its time limit")
        if slurm_state == "PREEMPTED":
            return JobState(RunStatus.PREEMPTED, code, f"Slurm job {job_id} was preempted")
        wrapper_log = read_log_tail(run_dir / SUBMITIT_DIR / f"{job_id}_0_log.err", 1500)
        if _TIMED_OUT_NOTE in wrapper_log:
            return JobState(RunStatus.TIMEOUT, code, f"Slurm job {job_id} stopped at its time-limit warning")
        if code is not None:  # the trainer's own exit code says how it ended
            status = status_for_exit(code)
            return JobState(status, code, "interrupted (exit 130)" if status == RunStatus.STOPPED else describe_exit(code))
        if not slurm_state:
            return JobState(RunStatus.LOST, None, f"Slurm no longer lists job {job_id} and it left no exit record")
        return JobState(RunStatus.FAILED, None, f"Slurm job {job_id} ended {slurm_state} ({reason})\n"
                                                f"--- end of its submitit log ---\n{wrapper_log}")
