"""Evaluation throughput: images/s of ``analysis eval`` at 1 and 2 processes, and where the time goes.

Runs the embedded default model (assets/default/sftok, 64 px) over ``--images`` photo crops at one step count,
with a random-init Inception in torch-fidelity's file format when the real weights are absent (same network,
same cost). Each configuration is a fresh launch (1 process: ``python bench/eval.py --worker``; 2 processes: the
same under ``torchrun --nproc_per_node 2``); a worker times its own phases (data, model encode+decode,
Inception forward, pixel metrics, statistics bookkeeping, checkpoints) over its pass and writes them. images/s =
images / the slowest rank's pass (start-up and the final Frechet distance excluded: they do not grow with N).

Usage: python bench/eval.py [--images 32] [--batch-size 8] [--steps 8] [--inception-weights FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app_startup import cpu_name  # noqa: E402  (bench/ is the script folder)
PHASES = ("data", "model", "inception", "pixel_metrics", "statistics", "checkpoint")


def worker(args: argparse.Namespace) -> None:
    from analysis.eval_run import EvalConfig, run_evaluation

    config = EvalConfig(models=(str(ROOT / "assets/default/sftok"),), data=(args.data,), out=args.out,
                        steps=(args.steps,), temperatures=(0.0,), num_images=args.images, batch_size=args.batch_size,
                        inception_weights=args.inception_weights, lpips=False, checkpoint_every=10 ** 6)
    result = run_evaluation(config)
    rank = int(os.environ.get("RANK", 0))
    Path(args.out, f"timings-rank{rank}.json").write_text(json.dumps(
        {"images": result.images_this_rank, "seconds": result.timings}))


def prepare(tmp: Path, images: int, weights: str | None) -> tuple[Path, str]:
    from PIL import Image

    from tests.analysis.conftest import photo_crops
    from tests.analysis.random_inception import save_random_inception

    folder = tmp / "images"
    folder.mkdir()
    for i, crop in enumerate(photo_crops(images, size=96, seed=7)):
        Image.fromarray(crop).save(folder / f"{i:05d}.png")
    if weights is None:
        try:
            from analysis.fid import find_inception_weights

            weights = str(find_inception_weights())
        except FileNotFoundError:
            weights = str(save_random_inception(tmp / "inception.pth"))
            print("(real Inception weights absent: a random-init network of the same architecture)")
    return folder, weights


def launch(nproc: int, args: argparse.Namespace, data: Path, weights: str, out: Path) -> dict:
    bench = [str(Path(__file__).resolve()), "--worker", "--data", str(data), "--out", str(out), "--images",
             str(args.images), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--inception-weights", weights]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if nproc == 1:
        command = [sys.executable, *bench]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // nproc))
        command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(nproc),
                   *bench]
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("timings-rank*.json"))]
    slowest = max(sum(r["seconds"].values()) for r in ranks)
    phases = {k: sum(r["seconds"].get(k, 0.0) for r in ranks) for k in PHASES}
    return {"images": sum(r["images"] for r in ranks), "seconds": slowest, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--inception-weights")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data, weights = prepare(Path(tmp), args.images, args.inception_weights)
        rows = {n: launch(n, args, data, weights, Path(tmp) / f"out{n}") for n in (1, 2)}
    print(f"\nanalysis eval on {cpu_name()} ({os.cpu_count()} logical CPUs): default model, {args.images} images, "
          f"{args.steps} steps, batch {args.batch_size}")
    print(f"{'processes':>9} {'images':>6} {'seconds':>8} {'images/s':>8} {'speed-up':>8}  "
          + " ".join(f"{p:>13}" for p in PHASES))
    base = rows[1]["images"] / rows[1]["seconds"]
    for n, r in rows.items():
        total = sum(r["phases"].values())
        shares = " ".join(f"{100 * r['phases'][p] / total:12.1f}%" for p in PHASES)
        rate = r["images"] / r["seconds"]
        print(f"{n:>9} {r['images']:>6} {r['seconds']:8.1f} {rate:8.2f} {rate / base:7.2f}x  {shares}")
    one = rows[1]["phases"]
    print(f"statistics bookkeeping / model encode+decode (1 process): "
          f"{one['statistics'] / one['model']:.3f}; / all evaluation time: "
          f"{one['statistics'] / sum(one.values()):.3%}")


if __name__ == "__main__":
    main()
