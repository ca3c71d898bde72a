"""Where runs execute: ``local`` (processes on this machine) and ``slurm`` (jobs on a Slurm cluster, via
submitit). Both take the same launcher command and run directory and share one interface (``base``)."""
from workbench.runs.executors.base import Executor, JobState
from workbench.runs.executors.local import LocalExecutor
from workbench.runs.executors.slurm import SlurmExecutor
from workbench.runs.executors.slurm_options import SlurmOptions, load_slurm_defaults

__all__ = ["Executor", "JobState", "LocalExecutor", "SlurmExecutor", "SlurmOptions", "load_slurm_defaults"]
