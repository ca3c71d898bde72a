"""Helpers for the data-parallel tests: shards whose per-rank split matches one process's batches,
random-weight models to start from, and ``launch_training.py`` under torchrun as real subprocesses."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import webdataset as wds
from PIL import Image
from safetensors.torch import load_file

from .shard_fixtures import photo_crops

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "launch_training.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _write_tar(path: Path, samples: list[tuple[int, "object"]]) -> str:
    with wds.TarWriter(str(path)) as writer:
        for index, crop in samples:
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="PNG")
            writer.write({"__key__": f"{index:08d}", "png": buf.getvalue(), "cls": str(index % 4).encode()})
    return str(path)


def split_shards(out_dir: Path, ranks: int, batch: int, steps: int, size: int = 64) -> dict[str, str]:
    """One shard per rank, and one shard for a single process, holding the same samples so that
    with ordered reading (``data.shuffle=false``) the single process's batch ``ranks * batch`` at
    step s is the concatenation, in rank order, of every rank's batch ``batch`` at step s.

    Rank r reads shard r in order, so its batch s is its samples s*batch .. (s+1)*batch-1; the
    single shard interleaves those blocks: [rank 0 batch 0, rank 1 batch 0, rank 0 batch 1, ...].
    Returns ``{"ranks": "<brace pattern of the per-rank shards>", "single": "<path>"}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    crops = photo_crops(ranks * batch * steps, size, seed=3)
    per_rank = [[(r * batch * steps + i, crops[r * batch * steps + i]) for i in range(batch * steps)] for r in range(ranks)]
    for r, samples in enumerate(per_rank):
        _write_tar(out_dir / f"rank-{r:06d}.tar", samples)
    interleaved = [per_rank[r][s * batch + i] for s in range(steps) for r in range(ranks) for i in range(batch)]
    single = _write_tar(out_dir / "single.tar", interleaved)
    return {"ranks": str(out_dir / f"rank-{{000000..{ranks - 1:06d}}}.tar"), "single": single}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun_command(args: list[str], nproc: int, port: int, nnodes: int = 1, node_rank: int = 0,
                     run_id: str = "sftok-test", script: Path = LAUNCHER) -> list[str]:
    """``torchrun`` with a c10d rendezvous on 127.0.0.1 (works for one node and for several on one machine)."""
    return [str(TORCHRUN), "--nnodes", str(nnodes), "--node-rank", str(node_rank), "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id,
            str(script), *args]


def run(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def single_process(args: list[str]) -> subprocess.CompletedProcess:
    return run([sys.executable, str(LAUNCHER), *args])


def checkpoint_tensors(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """Model and EMA weights (``model.``/``ema.`` prefixes) and, in stage 3, the discriminator (``disc.``)."""
    folder = run_dir / "checkpoints" / f"checkpoint-{step}"
    out = {f"model.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    if (folder / "ema.safetensors").is_file():
        out.update({f"ema.{k}": v for k, v in load_file(folder / "ema.safetensors").items()})
    state = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
    out.update({f"disc.{k}": v for k, v in state.get("discriminator", {}).items()})
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert a.keys() == b.keys()
    worst = max(((float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0), k) for k in a)
    return worst
