"""The launcher's command line, the one language every executor speaks:
``launch_training.py --stage S --run-dir RUN [--config C] [overrides] [--no-progress] [--resume]``."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LAUNCHER = (sys.executable, str(REPO_ROOT / "launch_training.py"))
DEFAULT_LAUNCHER_ARGS = ("--no-progress",)  # a tqdm bar in a log file is noise
RESUME_FLAG = "--resume"


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: enough for the validator and for building the command line."""

    stage: str
    config_path: str | None
    overrides: tuple[str, ...]
    run_dir: str


def stage_args(spec: LaunchSpec) -> list[str]:
    args = ["--stage", spec.stage, "--run-dir", spec.run_dir]
    if spec.config_path:
        args += ["--config", spec.config_path]
    return [*args, *spec.overrides]


def launcher_command(launcher: Sequence[str], spec: LaunchSpec,
                     launcher_args: Sequence[str] = DEFAULT_LAUNCHER_ARGS) -> list[str]:
    """One process on one device: ``[*launcher, stage args..., *launcher_args]``."""
    return [*launcher, *stage_args(spec), *launcher_args]


def with_resume(command: Sequence[str]) -> list[str]:
    """The command continuing from the run directory's newest checkpoint (``--resume`` once)."""
    return list(command) if RESUME_FLAG in command else [*command, RESUME_FLAG]


def split_python(command: Sequence[str]) -> tuple[str, list[str]]:
    """``[python, script, args...]`` -> (python, [script, args...]), for wrapping a launcher in a
    multi-process launcher (``accelerate launch``, ``torchrun``); other shapes are refused."""
    if len(command) < 2 or "python" not in Path(command[0]).name:
        raise ValueError(f"multi-GPU runs need a launcher of the form [python, script], got {list(command)}")
    return command[0], list(command[1:])
