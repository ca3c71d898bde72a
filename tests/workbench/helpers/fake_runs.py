"""Factories for tests that run the fake trainer as real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from workbench.runs.manager import JobManager

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
FAKE_LAUNCHER = [sys.executable, str(FAKE_TRAINER)]


def write_config(path: Path, **values: Any) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def fake_env() -> dict[str, str]:
    """Environment for a fake trainer started by hand (the job manager sets the same itself)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def start_fake_trainer(run_dir: Path, *overrides: str, stage: str = "1") -> subprocess.Popen:
    """The fake trainer as a plain process (no job manager), as a user would start it by hand."""
    return subprocess.Popen([*FAKE_LAUNCHER, "--stage", stage, "--run-dir", str(run_dir), *overrides],
                            env=fake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_manager(workspace: Path, **kwargs: Any) -> JobManager:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("stop_timeout", 5.0)
    return JobManager(workspace, launcher=FAKE_LAUNCHER, **kwargs)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)
