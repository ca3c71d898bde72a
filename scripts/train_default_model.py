#!/usr/bin/env python
"""Reproduce the embedded default model from scratch on a CPU machine, resumably.

Steps (each skipped when its output exists, resumed from its newest checkpoint when interrupted):
  1. the default dataset (crops of photos shipped by scikit-image / scikit-learn) -> workspace/data/default
  2. teacher -> stage 1 -> {stage 2 with SFVR, stage 2 vanilla} (in parallel) -> {stage 3 (from SFVR),
     class-conditional generator over the SFVR model's tokens} (in parallel)
     each as `launch_training.py --stage S --config configs/default/<name>.yaml --run-dir workspace/default-model/<name>`
  3. evaluation on held-out images (workspace/default-model/evaluation.json) and export: assets/default/{teacher,sftok}, assets/samples/*.png, the numbers for the model card

Usage: python scripts/train_default_model.py [--threads-per-run 1] [--skip-export]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "workspace" / "default-model"
DATA = ROOT / "workspace" / "data" / "default"
PLAN: list[list[tuple[str, str]]] = [  # groups run one after another; runs inside a group run in parallel
    [("teacher", "teacher")],
    [("1", "stage1")],
    [("2", "stage2_sfvr"), ("2", "stage2_vanilla")],
    [("3", "stage3"), ("generator", "generator")],  # the generator models the (frozen) stage-2 encoder's tokens
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_group(group: list[tuple[str, str]], threads: int) -> None:
    procs = []
    for stage, name in group:
        run_dir = RUNS / name
        if (run_dir / "model" / "model.safetensors").is_file():
            log(f"{name}: done already")
            continue
        resume = ["--resume"] if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()) else []
        cmd = [sys.executable, str(ROOT / "launch_training.py"), "--stage", stage, "--config",
               str(ROOT / "configs" / "default" / f"{name}.yaml"), "--run-dir", str(run_dir), "--threads", str(threads),
               "--no-progress", *resume]
        run_dir.mkdir(parents=True, exist_ok=True)
        log(f"{name}: {' '.join(cmd[1:])}")
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT, stdout=open(run_dir / "train.log", "a"), stderr=subprocess.STDOUT),
                      time.time()))
    for name, proc, start in procs:
        code = proc.wait()
        if code != 0:
            raise SystemExit(f"{name} failed with exit code {code}; see {RUNS / name / 'train.log'}")
        log(f"{name}: finished in {(time.time() - start) / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads-per-run", type=int, default=1)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from trainers.data.default_dataset import build_default_dataset

    log("default dataset")
    build_default_dataset(DATA, image_size=64)
    for group in PLAN:
        run_group(group, args.threads_per_run)
    if not args.skip_export:
        log("evaluation and export")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "export_default_model.py")], cwd=ROOT, check=True)
    log("all done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
