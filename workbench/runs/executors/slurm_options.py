"""What a run asks of Slurm (partition, nodes, GPUs, CPUs, memory, time, account, QOS, extra lines),
with defaults read from ``WORKSPACE/slurm.yaml`` so the Train screen and the CLI start filled in.

One task per node: each node's task starts the trainer (``torchrun`` when the job has several GPUs or
nodes), so ``cpus_per_task`` is the CPUs of one node's share of the job.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

SLURM_DEFAULTS_FILE = "slurm.yaml"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""            # empty: the cluster's default partition
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 4         # per node (one task per node)
    mem_gb: float = 0.0            # per node; 0: the cluster's default
    time_min: int = 60             # time limit; Slurm stops the run there (status "timeout", resumable)
    account: str = ""
    qos: str = ""
    extra_sbatch: tuple[str, ...] = ()   # more #SBATCH lines: "--constraint=a100", "--exclusive"
    setup: tuple[str, ...] = ()          # shell lines run before the job ("module load cuda")
    timeout_requeues: int = 0      # on the time-limit warning, checkpoint and requeue up to this many times
    signal_delay_s: int = 120      # that warning comes this many seconds before the limit

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_task", "time_min"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"slurm.{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("gpus_per_node", "mem_gb", "timeout_requeues", "signal_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"slurm.{name} must not be negative, got {getattr(self, name)!r}")
        for line in self.extra_sbatch:
            if not _sbatch_flag(line)[0]:
                raise ValueError(f"slurm.extra_sbatch: expected --key=value or --flag, got {line!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SlurmOptions":
        """Options from YAML/JSON/form values; unknown keys are refused, naming the known ones."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown Slurm option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        typed: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            default = known[name].default
            if isinstance(default, tuple):
                typed[name] = _lines(value)
            elif isinstance(default, str):
                typed[name] = str(value).strip()
            else:
                typed[name] = type(default)(value)
        return cls(**typed)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def describe(self) -> str:
        """Short resource summary for the jobs table: ``slurm:gpu 2x4 GPU``."""
        where = f"slurm:{self.partition}" if self.partition else "slurm"
        per_node = f"{self.gpus_per_node} GPU" if self.gpus_per_node else f"{self.cpus_per_task} CPU"
        return f"{where} {self.nodes}x{per_node}"

    def submitit_parameters(self, job_name: str) -> dict[str, Any]:
        """Keyword arguments for ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {"job_name": job_name, "nodes": self.nodes, "ntasks_per_node": 1,
                                  "cpus_per_task": self.cpus_per_task, "time": self.time_min,
                                  "signal_delay_s": self.signal_delay_s, "stderr_to_stdout": False}
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos,
                    "gpus_per_node": self.gpus_per_node, "setup": list(self.setup)}
        params.update({k: v for k, v in optional.items() if v})
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}MB"
        # Slurm requeues the job on preemption or node failure; the job then resumes from its checkpoint.
        params["additional_parameters"] = {"requeue": True, **dict(_sbatch_flag(line) for line in self.extra_sbatch)}
        return params


def load_slurm_defaults(workspace: str | os.PathLike) -> SlurmOptions:
    """``WORKSPACE/slurm.yaml`` as options (the built-in defaults when the file is missing)."""
    path = Path(workspace) / SLURM_DEFAULTS_FILE
    if not path.is_file():
        return SlurmOptions()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of Slurm options, got {type(data).__name__}")
    try:
        return SlurmOptions.from_mapping(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def _lines(value: Any) -> tuple[str, ...]:
    """A list, or text with one item per line, as a tuple of non-empty stripped lines."""
    items = value.splitlines() if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _sbatch_flag(line: str) -> tuple[str, Any]:
    """``#SBATCH --constraint=a100`` / ``--constraint=a100`` -> ("constraint", "a100"); ``--exclusive`` ->
    ("exclusive", True); anything else -> ("", None)."""
    text = line.strip().removeprefix("#SBATCH").strip()
    if not text.startswith("--") or len(text) < 3:
        return "", None
    key, sep, value = text[2:].partition("=")
    return key.strip(), (value.strip() if sep else True)
