"""The process group of a distributed evaluation (torchrun / accelerate launch / Slurm via torchrun).

Ranks only talk twice: an all-reduce (SUM) of the sufficient statistics at the end, and barriers. gloo on
CPU, nccl on CUDA (statistics travel as float64 / int64 tensors on the rank's device); one process needs
no group at all.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_process_group(device: str | torch.device, timeout_s: int = 7200) -> Ranks:
    """This process's rank and device, joining the group torchrun described in RANK / WORLD_SIZE."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    device = torch.device(device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return Ranks(rank, world, device)


def all_reduce_sum(state: Mapping[str, np.ndarray], ranks: Ranks) -> dict[str, np.ndarray]:
    """Element-wise sum of every rank's arrays (same names and shapes on every rank)."""
    if ranks.world == 1:
        return {k: np.array(v) for k, v in state.items()}
    names = sorted(state)
    out = {}
    for name in names:  # same order on every rank
        value = np.asarray(state[name])
        dtype = torch.int64 if np.issubdtype(value.dtype, np.integer) else torch.float64
        tensor = torch.as_tensor(value, dtype=dtype).to(ranks.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        out[name] = tensor.cpu().numpy()
    return out


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def gather_rank_rows(rows: np.ndarray, total: int, ranks: Ranks) -> np.ndarray:
    """Every rank's rows back in global order (total, ...), on every rank.

    Rank r holds global rows r, r + world, ... (the split of :mod:`analysis.rank_data`), in that order; rows
    that are not sums (per-image features for precision/recall) travel this way, in their own dtype.
    """
    from .rank_data import rank_share

    rows = np.ascontiguousarray(rows)
    if rows.shape[0] != rank_share(total, ranks.rank, ranks.world):
        raise ValueError(f"rank {ranks.rank}: holds {rows.shape[0]} rows, its share of {total} is "
                         f"{rank_share(total, ranks.rank, ranks.world)}")
    if ranks.world == 1:
        return rows.copy()
    padded = torch.zeros((rank_share(total, 0, ranks.world), *rows.shape[1:]), dtype=torch.from_numpy(rows).dtype,
                         device=ranks.device)
    padded[:rows.shape[0]] = torch.from_numpy(rows).to(ranks.device)
    parts = [torch.empty_like(padded) for _ in range(ranks.world)]
    dist.all_gather(parts, padded)
    out = np.empty((total, *rows.shape[1:]), rows.dtype)
    for r, part in enumerate(parts):
        out[r::ranks.world] = part[:rank_share(total, r, ranks.world)].cpu().numpy()
    return out
