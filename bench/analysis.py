"""Speed of the analysis package: codebook UMAP, streamed codebook usage, leave-one-out MI.

Prints one table with wall seconds and process CPU seconds (user + sys). On a shared machine the
CPU column is the better guide to uncontended speed (the single-threaded UMAP work takes about its
CPU time when it has a core to itself). Each measurement has a baseline in the same process (for
UMAP's cold start, a fresh process), so ratios stay meaningful on a busy machine:
- UMAP of an 8192 x 32 L2-normalised codebook: cold (fresh process: umap import + numba compile +
  fit), warm (second fit in the process), cache hit; baseline = umap-learn defaults (pynndescent
  kNN, 500 epochs) in the same process.
- Codebook usage over N images with a random-init tiny SFTok (encode + accumulate, reservoir 16);
  baseline for the accumulator = a per-occurrence Python Algorithm R on the same ids.
- Leave-one-out MI over 64 images x 256 slots (tiny preset, random-init model and teacher),
  128 decoder rows per pass; baseline = one row per pass on a subset, extrapolated per row.

Usage: python bench/analysis.py [--only umap,usage,mi] [--usage-images 10000] [--mi-images 64]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.model_mi import leave_one_out_mi  # noqa: E402
from analysis.umap_embedding import codebook_umap  # noqa: E402
from analysis.usage import CodebookUsage  # noqa: E402
from core import MaskGITVQGAN, SFTok, create_config  # noqa: E402

ROWS: list[tuple[str, str, float, float, str]] = []


class Timer:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> "Timer":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def record(name: str, setting: str, wall: float, cpu: float, note: str = "") -> None:
    ROWS.append((name, setting, wall, cpu, note))
    print(f"  {name:<26} {setting:<44} {wall:8.2f} s wall {cpu:8.2f} s cpu  {note}", flush=True)


def codebook(k: int = 8192, d: int = 32, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(k, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


COLD_SCRIPT = """
import sys, time, json
t = time.perf_counter()
sys.path.insert(0, {root!r})
import torch, torch.nn.functional as F
from analysis.umap_embedding import codebook_umap
v = F.normalize(torch.randn(8192, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
c = time.process_time()
emb = codebook_umap(v, seed=0, use_cache=False)
print(json.dumps({{"fit": emb.seconds, "fit_cpu": time.process_time() - c, "total": time.perf_counter() - t}}))
"""


def bench_umap() -> None:
    print("UMAP 8192 x 32", flush=True)
    proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                          timeout=600)
    cold = json.loads(proc.stdout.strip().splitlines()[-1])
    record("umap cold (fresh process)", "import umap + numba compile + fit", cold["fit"], cold["fit_cpu"],
           f"process total {cold['total']:.1f} s wall")
    vectors = codebook()
    with tempfile.TemporaryDirectory() as cache:
        codebook_umap(vectors[:64], seed=0, use_cache=False)  # import + compile outside the timings below
        with Timer() as warm:
            codebook_umap(vectors, seed=0, cache_dir=cache)
        record("umap warm", "sklearn kNN, 200 epochs, seeded", warm.wall, warm.cpu)
        with Timer() as hit:
            assert codebook_umap(vectors, seed=0, cache_dir=cache).from_cache
        record("umap cache hit", "same codebook hash", hit.wall, hit.cpu)
    import umap

    with Timer() as base, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(random_state=0, n_jobs=1).fit_transform(vectors.numpy())
    record("umap baseline", "umap-learn defaults (pynndescent, 500 ep)", base.wall, base.cpu,
           f"ours warm: {base.cpu / warm.cpu:.1f}x less cpu")


def naive_reservoir(ids: np.ndarray, capacity: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    seen: dict[int, int] = {}
    store: dict[int, list] = {}
    for b, row in enumerate(ids):
        for p, code in enumerate(row.tolist()):
            n = seen.get(code, 0) + 1
            seen[code] = n
            slots = store.setdefault(code, [])
            if n <= capacity:
                slots.append((b, p))
            else:
                j = int(rng.integers(0, n))
                if j < capacity:
                    slots[j] = (b, p)


@torch.no_grad()
def bench_usage(num_images: int, batch_size: int = 250) -> None:
    print(f"codebook usage, {num_images} images, tiny preset", flush=True)
    torch.manual_seed(0)
    model = SFTok(create_config("tiny")).eval()
    usage = CodebookUsage(model.config.codebook_size, model.config.num_latent_tokens, reservoir_size=16)
    gen = torch.Generator().manual_seed(0)
    enc = np.zeros(2)
    upd = np.zeros(2)
    all_ids = []
    for first in range(0, num_images, batch_size):
        images = torch.rand(min(batch_size, num_images - first), 3, 64, 64, generator=gen)
        with Timer() as t_enc:
            ids = model.encode(images)[1]["min_encoding_indices"]
        with Timer() as t_upd:
            usage.update(ids, [str(first + i) for i in range(ids.shape[0])])
        enc += (t_enc.wall, t_enc.cpu)
        upd += (t_upd.wall, t_upd.cpu)
        all_ids.append(ids[:, 0].numpy())
    with Timer() as t_res:
        stats = usage.result()
    upd += (t_res.wall, t_res.cpu)
    record("usage: encode", f"{num_images} images, batch {batch_size}", *enc, f"{num_images / enc[0]:.0f} img/s wall")
    record("usage: accumulate + result", "counts + reservoir 16 (vectorised)", *upd,
           f"{num_images / upd[0]:.0f} img/s; used {stats.utilisation:.3f}, H {stats.entropy_bits:.2f} bits")
    ids = np.concatenate(all_ids)
    with Timer() as naive:
        naive_reservoir(ids, 16, 0)
    record("usage: baseline", "per-occurrence Python Algorithm R", naive.wall, naive.cpu,
           f"vectorised: {naive.cpu / upd[1]:.1f}x less cpu")


@torch.no_grad()
def bench_mi(num_images: int, rows: int = 128) -> None:
    print(f"leave-one-out MI, {num_images} images x 256 slots", flush=True)
    torch.manual_seed(0)
    model = SFTok(create_config("tiny")).eval()
    teacher = MaskGITVQGAN(create_config("tiny").teacher).eval()
    images = torch.rand(num_images, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ids = model.encode(images)[1]["min_encoding_indices"][:, 0]
    z_q = model.quantize.get_codebook_entry(ids)
    targets = teacher.encode(images)
    mask = model.config.mask_id
    with Timer() as full:
        res = leave_one_out_mi(model.decoder, targets, z_q, mask, batch_size=rows, num_bootstrap=1000)
    n_rows = num_images * 256
    record("loo MI", f"{num_images} img x 256 slots, {rows} rows/pass", full.wall, full.cpu,
           f"{n_rows / full.wall:.0f} rows/s wall; mean {res.mean_bits:.4f} bits")
    sub = 32
    with Timer() as one:
        leave_one_out_mi(model.decoder, targets[:1], z_q[:1], mask, positions=range(sub), batch_size=1,
                         num_bootstrap=0)
    scale = n_rows / sub
    record("loo MI baseline", f"1 row/pass ({sub} rows, scaled x {scale:.0f})", one.wall * scale, one.cpu * scale,
           f"batched: {one.cpu * scale / full.cpu:.1f}x less cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="umap,usage,mi")
    parser.add_argument("--usage-images", type=int, default=10_000)
    parser.add_argument("--mi-images", type=int, default=64)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    if "umap" in parts:
        bench_umap()
    if "usage" in parts:
        bench_usage(args.usage_images)
    if "mi" in parts:
        bench_mi(args.mi_images)
    print()
    print(f"{'measurement':<26} {'setting':<44} {'wall s':>8} {'cpu s':>8}  note")
    for name, setting, wall, cpu, note in ROWS:
        print(f"{name:<26} {setting:<44} {wall:8.2f} {cpu:8.2f}  {note}")
    print(f"(load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
