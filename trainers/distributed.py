"""What data-parallel training needs around accelerate's ``prepare``: the process group, agreement
between ranks, and loss normalisers that make N ranks at batch b equal one process at batch N*b.

All communication goes through torch.distributed (set up by accelerate under torchrun or
``accelerate launch``); with one process every helper is a no-op.
"""
from __future__ import annotations

import contextlib
import os
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Iterator, Mapping

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import TrainConfig

_COLLECTIVE_FAILURES = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe")


def make_accelerator(cfg: "TrainConfig", cpu: bool) -> "Accelerator":
    """The run's Accelerator; its process group gives up on a collective after ``cfg.dist_timeout_s``."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.dist_timeout_s))
    return Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision if not cpu else "no", kwargs_handlers=[timeout])


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_normaliser(local_total: torch.Tensor) -> torch.Tensor:
    """Denominator for this rank's share of a mean over the global batch: (sum over ranks) / world size.

    DDP averages gradients over ranks, so with every rank dividing its local numerator by this value
    the averaged gradient is that of (global numerator / global total), the one-process loss.
    """
    world = _world()
    if world == 1:
        return local_total
    total = local_total.detach().clone()
    dist.all_reduce(total)
    return total / world


def any_rank(accelerator: "Accelerator", flag: bool) -> bool:
    """True on every rank when it is True on any: ranks must stop at the same step or they deadlock."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item() > 0)


def mean_over_ranks(accelerator: "Accelerator", metrics: Mapping[str, float]) -> dict[str, float]:
    """Scalar metrics averaged over ranks (one all-reduce), so the log shows the global batch."""
    if accelerator.num_processes == 1 or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    values = accelerator.reduce(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                                             device=accelerator.device), "mean")
    return dict(zip(keys, values.tolist()))


def world_summary(accelerator: "Accelerator", batch_size: int, grad_accumulation: int = 1) -> dict[str, int]:
    """What the run record states: ``batch_size`` is per process, the optimiser sees the global batch."""
    world = accelerator.num_processes
    return {"world_size": world, "num_machines": max(1, world // max(1, _local_world())),
            "batch_size_per_process": batch_size, "grad_accumulation": grad_accumulation,
            "global_batch_size": batch_size * world * grad_accumulation}


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


@contextlib.contextmanager
def explain_collective_failures(accelerator: "Accelerator", timeout_s: int) -> Iterator[None]:
    """A collective that times out or loses a peer fails with a message saying what that means."""
    try:
        yield
    except RuntimeError as err:
        text = str(err).lower()
        if accelerator.num_processes > 1 and any(word in text for word in _COLLECTIVE_FAILURES):
            print(f"\nrank {accelerator.process_index} of {accelerator.num_processes}: a collective with the other "
                  f"ranks failed ({str(err).splitlines()[0][:200]}). Another rank died or stalled for more than "
                  f"dist_timeout_s={timeout_s}s; see the other ranks' logs. Resume with --resume from the last "
                  f"checkpoint.", file=sys.stderr, flush=True)
        raise
