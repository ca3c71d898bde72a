#!/usr/bin/env python
"""How the default recipe's stage 1 scales with training steps and with distinct training photos.

Issue 15 asks for the quality goals or evidence of why they cannot be met at this size. This script trains
stage 1 of ``configs/default/stage1.yaml`` (``launch_training.py``, resumable) at several step budgets on all
training photos, at one budget on nested subsets of the photos (the first K of a seeded shuffle, every crop the
dataset cut from them) and once more with another seed, then measures every run with the evaluation's protocol
on held-out crops and on crops of the run's own training photos. Writes ``workspace/default-model/scaling.json``, which
``scripts/export_default_model.py`` ships beside the card and ``scripts/model_card/scaling.py`` turns into a section.

    python scripts/measure_default_scaling.py            # trains what is missing, then measures
    python scripts/measure_default_scaling.py --measure-only
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from evaluate_default_model import RUNS, crop_protocol, first_crops  # noqa: E402
from train_default_model import DATA as DATA_ROOT, PHOTO_SET, TEACHER_PHOTO_SET  # noqa: E402
from core import load_pretrained  # noqa: E402
from trainers.config import load_config  # noqa: E402
from trainers.data.photos import VAL_PHOTOS, photo_set  # noqa: E402
from trainers.data.shards import expand_shards, read_shard, tar_writer  # noqa: E402

# The study was made on the 19-photo set (packages-v2; its held-out crops stay the yardstick); one more run trains on
# all photos of the recipe's wider set at the photo budget: the next point on the photos axis.
DATA = DATA_ROOT / TEACHER_PHOTO_SET
TRAIN_SHARDS = DATA / "train-{000000..000019}.tar"
RECIPE_SHARDS = DATA_ROOT / PHOTO_SET / "train-{000000..000019}.tar"
OUT = ROOT / "workspace" / "scaling"
CONFIG = ROOT / "configs" / "default" / "stage1.yaml"
STEP_BUDGETS = (800, 2000, 5000)  # on the study's 19 photos (5000: the recipe's steps, as the 19-photo model shipped)
PHOTO_COUNTS = (5, 10)  # at PHOTO_BUDGET steps; all photos at that budget is the step run of the same length
PHOTO_BUDGET = 2000
# Run again with another seed: how far a single run moves (at 800 steps, and at the photo budget, where the photo
# counts are compared).
REPEATS = {"steps-800": 43, "steps-2000": 43}
SHUFFLE_SEED = 0
CROPS = 256  # held-out crops, and crops of each run's own training photos


def photo_order(train_class_ids: list[int], seed: int = SHUFFLE_SEED) -> list[int]:
    """The training photos in the order subsets take them: subsets are nested (5 photos lie inside 10)."""
    order = list(train_class_ids)
    random.Random(seed).shuffle(order)
    return order


def subset_shard(shards: str, class_ids: set[int], out: Path) -> int:
    """Copy every sample of ``shards`` whose label is in ``class_ids`` into the one shard ``out``; returns the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, kept = out.with_suffix(".partial"), 0
    with tar_writer(partial) as writer:
        for url in expand_shards(shards):
            for sample in read_shard(url):
                if int(sample["cls"]) in class_ids:
                    writer.write({k: v for k, v in sample.items() if k != "__url__"})
                    kept += 1
    partial.rename(out)
    return kept


def plan(dataset: dict) -> dict[str, dict]:
    """Run name -> steps, photos (class ids) and training shards; 'stage1' is the shipped recipe's run."""
    photos = dataset["train_class_ids"]
    recipe = load_config("1", str(CONFIG), [], check_paths=False)
    runs = {f"steps-{s}": {"steps": s, "photos": photos, "shards": str(TRAIN_SHARDS), "seed": recipe.seed}
            for s in STEP_BUDGETS}
    order = photo_order(photos)
    for count in PHOTO_COUNTS:
        runs[f"photos-{count}"] = {"steps": PHOTO_BUDGET, "photos": sorted(order[:count]), "seed": recipe.seed,
                                   "shards": str(OUT / f"data-{count}" / "train-000000.tar"), "subset": True}
    wider = {"photos": list(range(len(photo_set(PHOTO_SET).train))), "seed": recipe.seed,  # training photos first
             "shards": str(RECIPE_SHARDS), "photo_set": PHOTO_SET}
    runs[f"photos-{len(wider['photos'])}"] = {"steps": PHOTO_BUDGET, **wider}
    for name, seed in REPEATS.items():
        runs[f"{name}-seed{seed}"] = {**runs[name], "seed": seed, "repeat_of": name}
    runs["stage1"] = {"steps": recipe.max_steps, **wider, "dir": str(RUNS / "stage1")}
    return runs


def train(name: str, run: dict, threads: int) -> None:
    run_dir = Path(run.get("dir", OUT / name))
    if (run_dir / "model" / "model.safetensors").is_file():
        return
    if run.get("subset") and not Path(run["shards"]).is_file():  # a photo subset: cut its shard first
        count = subset_shard(str(TRAIN_SHARDS), set(run["photos"]), Path(run["shards"]))
        print(f"{name}: {count} crops of {len(run['photos'])} photos", flush=True)
    resume = ["--resume"] if (run_dir / "checkpoints").is_dir() else []
    subprocess.run([sys.executable, str(ROOT / "launch_training.py"), "--stage", "1", "--config", str(CONFIG),
                    "--run-dir", str(run_dir), "--threads", str(threads), "--no-progress", *resume,
                    f"max_steps={run['steps']}", f"eval_every={min(1000, run['steps'])}",
                    f"data.train_shards={run['shards']}", f"seed={run['seed']}"], check=True, cwd=ROOT)


def measure(runs: dict[str, dict], batch_size: int) -> dict:
    teacher = load_pretrained(RUNS / "teacher" / "model").eval()
    held_out = first_crops(str(DATA / "val-000000.tar"), 64, CROPS, batch_size)
    wide_shard = DATA_ROOT / PHOTO_SET / "val-000000.tar"  # the recipe's held-out photos, a superset of those
    wide = first_crops(str(wide_shard), 64, CROPS, batch_size) if wide_shard.is_file() else None
    result: dict = {"protocol": {"crops": CROPS, "shuffle_seed": SHUFFLE_SEED, "config": str(CONFIG.relative_to(ROOT)),
                                 "held_out": f"the first {CROPS} held-out crops of photo set {TEACHER_PHOTO_SET}, "
                                             f"{len(VAL_PHOTOS)} photos",
                                 **({"held_out_wide": f"the first {CROPS} held-out crops of photo set {PHOTO_SET}, "
                                                      f"{len(photo_set(PHOTO_SET).held_out)} photos"} if wide is not None
                                    else {})},
                    "runs": {}}
    own_crops: dict[str, torch.Tensor] = {}  # training crops per shard set: most runs share the full one
    for name, run in runs.items():
        folder = Path(run.get("dir", OUT / name)) / "model"
        if not (folder / "model.safetensors").is_file():
            print(f"  {name}: not trained yet, left out", flush=True)
            continue
        model = load_pretrained(folder).eval()
        model.attach_teacher(teacher)
        if run["shards"] not in own_crops:
            own_crops[run["shards"]] = first_crops(run["shards"], 64, CROPS, batch_size)
        own = own_crops[run["shards"]]
        result["runs"][name] = {
            "steps": run["steps"], "photos": len(run["photos"]), "seed": run["seed"],
            **{key: run[key] for key in ("repeat_of", "photo_set") if key in run},
            "held_out": crop_protocol({name: model}, teacher, held_out, batch_size, "held-out")[name],
            "training": crop_protocol({name: model}, teacher, own, batch_size, "own training crops")[name]}
        if wide is not None:
            result["runs"][name]["held_out_wide"] = crop_protocol({name: model}, teacher, wide, batch_size,
                                                                  "wider held-out")[name]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-only", action="store_true", help="measure the runs that exist, train nothing")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="train only these runs (e.g. photos-10), then stop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    runs = plan(json.loads((DATA / "dataset.json").read_text()))
    if not args.measure_only:
        for name, run in runs.items():
            if not args.only or name in args.only:
                train(name, run, args.threads)
        if args.only:
            return 0
    torch.set_num_threads(2)
    result = measure(runs, args.batch_size)
    out = RUNS / "scaling.json"
    out.write_text(json.dumps(result, indent=2))
    for name, row in result["runs"].items():
        print(f"{name:>12}: {row['steps']} steps, {row['photos']} photos | held-out PSNR@8 "
              f"{row['held_out']['psnr@8']['mean']:.2f}, tokens {row['held_out']['tokens_bits_per_slot']:.2f} b/slot | "
              f"own training PSNR@8 {row['training']['psnr@8']['mean']:.2f}, "
              f"tokens {row['training']['tokens_bits_per_slot']:.2f} b/slot")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
