"""Data-parallel speed: the tiny stage-2 step on 1 and on 2 processes (torchrun, gloo, 1 thread each).

The parent writes small real shards (one per rank) and a random teacher into a temp dir, then runs
this file under ``torchrun --nproc-per-node N`` for N = 1 and 2. Every rank prints its world size
(proof that N processes ran). Rank 0 times each phase of the real step (the stage's batch
preparation with the teacher, forward, backward through DDP, clip + AdamW) and reports medians.
Throughput is the global batch times the timed steps over their end-to-end wall time; "per-core"
throughput divides by each rank's CPU seconds instead (what it would be if each rank had a core of
its own: the steadier figure while other jobs share the machine). DDP overlaps
the gradient all-reduce with the backward (which also absorbs waiting for the slower rank), so its
cost shows as the backward's growth from 1 to 2 processes; an all-reduce of all gradients alone is
timed too.

Usage: python bench/train.py --ddp [--ddp-steps 12] [--batch 8]   (or python bench/train_ddp.py)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import MaskGITVQGAN, save_pretrained  # noqa: E402
from trainers.config import TrainConfig, load_config  # noqa: E402
from tests.trainers.shard_fixtures import write_shards  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer")


def _config(root: Path, batch: int) -> TrainConfig:
    return load_config("2", None, [f"data.train_shards={root / 'shards' / 'train-{000000..000001}.tar'}",
                                   f"data.batch_size={batch}", f"teacher_path={root / 'teacher'}", "device=cpu",
                                   "optim.warmup_steps=2"])


def _prepare_assets(root: Path) -> None:
    write_shards(root / "shards", "train", 64, per_shard=32, seed=0)  # 2 shards: one per rank
    torch.manual_seed(0)
    model_cfg = load_config("2", None, [f"data.train_shards={root / 'shards' / 'train-000000.tar'}",
                                        "teacher_path=unused"]).model_config()
    save_pretrained(MaskGITVQGAN(model_cfg.teacher), root / "teacher")


def worker(root: Path, batch: int, steps: int, warmup: int, out: Path) -> None:
    """One rank: the loop's step, phase by phase (same calls as trainers.loop)."""
    import torch.distributed as dist
    from accelerate.utils import set_seed

    from trainers.data.loaders import make_train_loader
    from trainers.distributed import make_accelerator
    from trainers.draws import Draws
    from trainers.schedules import lr_at
    from trainers.stages import build_stage, param_groups

    torch.set_num_threads(1)
    cfg = _config(root, batch)
    accelerator = make_accelerator(cfg, cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    print(f"rank {rank}: world size {world}, {torch.get_num_threads()} thread(s), pid {os.getpid()}", flush=True)
    set_seed(cfg.seed)
    stage = build_stage(cfg, accelerator.device)
    optimizer = torch.optim.AdamW(param_groups(stage.saved_model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=cfg.optim.betas)
    objective, optimizer = accelerator.prepare(stage.objective, optimizer)
    params = [p for _, p in stage.trainable_named_parameters()]
    batches = iter(make_train_loader(cfg.data.train_shards, cfg.model_config().image_size, batch, seed=cfg.seed,
                                     random_crop=cfg.data.random_crop, flip=cfg.data.flip))
    times: dict[str, list[float]] = {name: [] for name in (*PHASES, "step", "cpu")}
    for step in range(warmup + steps):
        if step == warmup:
            accelerator.wait_for_everyone()
            start = time.perf_counter()
        marks = [time.perf_counter()]
        cpu = time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg.optim.lr, cfg.optim.warmup_steps, 1000, cfg.optim.end_lr)
        kwargs = stage.prepare(next(batches), Draws.make(cfg.seed, step, step * batch * world + rank * batch, batch, rank))
        marks.append(time.perf_counter())
        loss = objective(**kwargs)["loss"]
        marks.append(time.perf_counter())
        accelerator.backward(loss)
        marks.append(time.perf_counter())
        accelerator.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if step >= warmup:
            for name, a, b in zip(PHASES, marks, marks[1:]):
                times[name].append(b - a)
            times["step"].append(marks[-1] - marks[0])
            times["cpu"].append(time.process_time() - cpu)
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - start  # throughput: all timed steps end to end, every rank done
    numel = sum(p.numel() for p in params)
    allreduce = []
    if world > 1:
        flat = torch.zeros(numel)
        for _ in range(steps):
            accelerator.wait_for_everyone()
            tick = time.perf_counter()
            dist.all_reduce(flat)
            allreduce.append(time.perf_counter() - tick)
    if accelerator.is_main_process:
        result = {name: statistics.median(values) for name, values in times.items()}
        result.update(world=world, batch=batch, images_per_s=world * batch * steps / elapsed, grad_mb=numel * 4 / 2**20,
                      allreduce_alone=statistics.median(allreduce) if allreduce else 0.0)
        out.write_text(json.dumps(result))
    accelerator.wait_for_everyone()


def _launch(root: Path, processes: int, batch: int, steps: int, warmup: int) -> dict:
    out = root / f"result-{processes}.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(processes),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", str(Path(__file__).resolve()),
               "--worker", "--root", str(root), "--batch", str(batch), "--ddp-steps", str(steps),
               "--warmup", str(warmup), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in re.findall(r"rank \d+: world size \d+, \d+ thread\(s\), pid \d+", proc.stdout):
        print(f"  {line}", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"torchrun with {processes} process(es) failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def run(batch: int, steps: int, warmup: int) -> None:
    """Parent: assets, then 1 and 2 processes, then the table."""
    print(f"tiny stage-2 step, CPU, batch {batch} per process, 1 thread per process, {steps} timed steps", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        root = Path(tmp)
        _prepare_assets(root)
        results = [_launch(root, n, batch, steps, warmup) for n in (1, 2)]
    one = results[0]
    print()
    print(f"{'processes':>9} {'images/s':>9} {'speed-up':>9} {'per-core img/s':>15} {'speed-up':>9} {'step ms':>8} "
          f"{'cpu ms':>7} " + " ".join(f"{name + ' ms':>12}" for name in PHASES))
    for r in results:
        per_core = r["world"] * r["batch"] / r["cpu"]  # as if every rank had a core of its own (shared machines)
        print(f"{r['world']:>9} {r['images_per_s']:9.1f} {r['images_per_s'] / one['images_per_s']:8.2f}x "
              f"{per_core:15.1f} {per_core / (one['batch'] / one['cpu']):8.2f}x {1e3 * r['step']:8.1f} "
              f"{1e3 * r['cpu']:7.1f} " + " ".join(f"{1e3 * r[name]:12.1f}" for name in PHASES))
    two = results[1]
    overhead = two["backward"] - one["backward"]
    print(f"gradients: {two['grad_mb']:.2f} MB fp32; all-reduce of all of them alone (2 ranks, gloo): "
          f"{1e3 * two['allreduce_alone']:.1f} ms; backward growth 1 -> 2 processes (all-reduce inside DDP's "
          f"backward): {1e3 * overhead:+.1f} ms = {100 * overhead / two['step']:+.1f}% of the 2-process step")
    print(f"goal: 2 processes >= 1.8x one process -> "
          f"{'met' if two['images_per_s'] >= 1.8 * one['images_per_s'] else 'NOT met'}")
    print(f"(load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help="per process")
    parser.add_argument("--ddp-steps", type=int, default=12, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    args, _ = parser.parse_known_args(argv)
    if args.worker:
        worker(args.root, args.batch, args.ddp_steps, args.warmup, args.out)
    else:
        run(args.batch, args.ddp_steps, args.warmup)


if __name__ == "__main__":
    main()
