"""What runs inside a Slurm job: the run's launcher command, through the same runner as a local run.

submitit pickles a ``TrainingJob`` and calls it on every node of the job (one task per node). Node 0
prepares the run directory for this attempt and starts ``workbench.runs.runner``, which writes
``process.json``, ``train.log`` and ``exit.json`` exactly as for local runs; other nodes start their
share of ``torchrun`` with a log of their own. Every attempt (first start, Slurm requeue after
preemption, submitit requeue) resumes from the newest checkpoint when there is one.

``checkpoint`` is submitit's hook for the preemption / time-limit signal (USR2): stop the trainer at a
checkpoint, then let submitit requeue this same callable.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from workbench.runs.commands import split_python, with_resume
from workbench.runs.procs import signal_group
from workbench.runs.rundir import has_checkpoint, prepare_restart

STOP_WAIT_S = 60.0
RENDEZVOUS_PORT = 29400


def exited_within(pid: int, timeout: float) -> bool:
    """Whether our child ``pid`` exits within ``timeout`` s, left unreaped. submitit runs ``checkpoint`` as a
    signal handler, i.e. inside ``__call__``'s ``Popen.wait()``, which holds the lock a second ``wait`` needs
    (that one would only time out); ``waitid(WNOWAIT)`` looks without that lock and without reaping."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True  # already reaped
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


class TrainingFailed(RuntimeError):
    """The trainer ended with a non-zero exit code: the Slurm job must fail too."""


@dataclass
class TrainingJob(Checkpointable):
    command: list[str]
    run_dir: str
    cwd: str
    env: dict[str, str]
    nodes: int = 1
    gpus_per_node: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __call__(self) -> int:
        job = submitit.JobEnvironment()
        env = {**os.environ, **self.env}
        command = self.node_command(job.hostnames[0], job.job_id)
        if job.global_rank == 0:
            prepare_restart(self.run_dir)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "workbench.runs.runner", "--run-dir", self.run_dir, "--", *command],
                cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        else:
            with open(Path(self.run_dir) / f"train.node{job.global_rank}.log", "ab") as log:
                self._process = subprocess.Popen(command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        code = self._process.wait()
        if code != 0:
            raise TrainingFailed(f"the trainer ended with exit code {code} (see {self.run_dir}/train.log)")
        return code

    def node_command(self, first_host: str, job_id: str) -> list[str]:
        """The command of this attempt: ``--resume`` once a checkpoint exists; ``torchrun`` (one process
        per GPU, a c10d rendezvous on the first node) when the job has several GPUs or nodes."""
        command = with_resume(self.command) if has_checkpoint(self.run_dir) else list(self.command)
        if self.nodes == 1 and self.gpus_per_node <= 1:
            return command
        python, script_and_args = split_python(command)
        torchrun = [python, "-m", "torch.distributed.run", f"--nproc_per_node={max(1, self.gpus_per_node)}",
                    f"--nnodes={self.nodes}"]
        if self.nodes == 1:
            torchrun.append("--standalone")
        else:
            torchrun += ["--rdzv_backend=c10d", f"--rdzv_endpoint={first_host}:{RENDEZVOUS_PORT}",
                         f"--rdzv_id={job_id}"]
        return [*torchrun, *script_and_args]

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Stop the trainer (SIGTERM: it saves a checkpoint and exits 130); the requeued job resumes."""
        process = self._process
        if process is not None and process.returncode is None:
            signal_group(process.pid, signal.SIGTERM)
            if not exited_within(process.pid, STOP_WAIT_S):
                signal_group(process.pid, signal.SIGKILL)
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_process": None}  # a process handle does not travel in a pickle
