"""The interface between the job manager and a place that runs training commands.

The manager owns the queue, the store and the run records; an executor only starts a run's command
in its run directory, says where each of its runs stands, cancels, and re-attaches after an owner
restart. States come back as ``JobState`` carrying a ``RunStatus``, so the manager maps nothing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from workbench.runs.records import RunRecord, RunStatus


@dataclass(frozen=True)
class JobState:
    """Where a run stands: an active ``RunStatus`` (pending, running) or how it ended.

    ``exit_code`` is the trainer's (subprocess convention), when known; ``reason`` says why a run
    ended when the exit code alone does not (a Slurm time limit, a process that vanished).
    """

    status: str
    exit_code: int | None = None
    reason: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in RunStatus.TERMINAL


class Executor(ABC):
    """Starts and watches the runs the manager hands it; one instance per manager."""

    name: ClassVar[str]

    def describe(self, run: RunRecord) -> str:
        """What the jobs table shows in its device column."""
        return run.device

    def can_start(self, run: RunRecord) -> bool:
        """Whether a queued run may start now (the local executor has per-device slots)."""
        return True

    @abstractmethod
    def start(self, run: RunRecord) -> dict[str, Any]:
        """Start the run's command; return the run columns to record (``status`` and identity)."""

    @abstractmethod
    def attach(self, run: RunRecord) -> JobState | None:
        """Watch a run an earlier owner started; its state now, or None when it never started."""

    def watch_ended(self, run: RunRecord) -> None:
        """Keep an eye on a run that ended before this executor watched it (a manager started later): should
        its scheduler run it again (a Slurm requeue), ``poll`` reports it active. Default: nothing reruns."""
        return None

    @abstractmethod
    def poll(self) -> dict[str, JobState]:
        """States of watched runs by run id. A run reported ended is no longer watched (an
        executor may still report it again, should its scheduler run it once more)."""

    @abstractmethod
    def cancel(self, run_id: str) -> None:
        """Ask a watched run to stop (it saves a checkpoint when it can); ``poll`` reports the end."""

    @abstractmethod
    def watched(self) -> list[str]:
        """Ids of the runs this executor watches now."""
