"""Process identity and signals for runs that outlive the process that started them.

A pid alone cannot identify a run's process after the owner restarts: the run may be gone and the
pid reused. A pid together with the process start time (from ``/proc/PID/stat`` via psutil) can.
Each run is its own session and process group, led by ``workbench.runs.runner``; signals go to the group
so the trainer and any workers it spawned (``accelerate launch``) all receive them.
"""
from __future__ import annotations

import os
import signal

import psutil

START_TIME_TOLERANCE_S = 0.05


def process_start_time(pid: int) -> float | None:
    """Start time of ``pid`` (seconds since the epoch), None when no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_same_process_alive(pid: int | None, start_time: float | None) -> bool:
    """True when ``pid`` runs, is not a zombie, and (if known) started at ``start_time``."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_time is None or abs(proc.create_time() - start_time) <= START_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def describe_exit(exit_code: int) -> str:
    """``exit code 1`` / ``killed by SIGKILL`` for a subprocess-convention exit status."""
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"
