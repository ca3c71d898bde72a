#!/usr/bin/env python
"""Measure the TiTok baseline runs against the default SFTok and write workspace/default-model/titok_evaluation.json.

The baseline is TiTok trained by SFTok's own stage-1 recipe (``stage1_titok``, ``-seed43``, ``-seed44``: the same
config, data, teacher and 5000 steps, ``model_family=titok``), so the two tokenizers differ only in what TiTok is.
It is measured with evaluate_default_model.py's protocol on the same held-out crops: Y-channel PSNR/SSIM, 95%
bootstrap intervals over images, what the tokens tell about the teacher's codes (one pass over the first 64 crops),
codebook usage. That the crops are the same is checked, not assumed: the shipped SFTok is re-measured on them and
must reach the PSNR@1 the default's own evaluation.json states. TiTok decodes in one pass: its argmax proxy codes
rendered by the teacher, as SFTok's stage-1/2 models are.

Usage: python scripts/evaluate_default_titok.py [--runs DIR] [--num-images 512] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from analysis.code_information import TokensTell  # noqa: E402
from analysis.image_metrics import psnr, ssim  # noqa: E402
from analysis.usage import CodebookUsage  # noqa: E402
from core import MaskGITVQGAN, SFTok, load_pretrained_as  # noqa: E402
from core.tokenizer import Tokenizer, load_tokenizer  # noqa: E402
from evaluate_default_model import (INFO_IMAGES, RUNS, SEED, VAL_SHARD, across_seeds, decode, encode,  # noqa: E402
                                    first_crops, load_sample_batch, mean_ci, tokenizer_runs)
from model_card.runs import run_minutes, run_threads  # noqa: E402
from model_card.sources import ASSETS  # noqa: E402

SHIPPED = "stage1_titok"  # the first seed's run, exported as assets/default/titok (as stage 2 ships its first seed)
REPORT = "titok_evaluation.json"
SEED_KEYS = ["psnr@1", "ssim@1", "tokens_bits_per_slot", "used_codes"]
SAME_CROPS_DB = 0.01  # the shipped SFTok's re-measured PSNR@1 against its stated one: equal up to float noise


def teacher_of(runs: Path) -> MaskGITVQGAN:
    """The teacher the runs were trained against: the runs folder's (adopted or retrained), else the shipped one."""
    folder = runs / "teacher" / "model"
    return load_pretrained_as(folder if folder.is_dir() else ASSETS / "default" / "teacher", MaskGITVQGAN).eval()


def measure(tokenizer: Tokenizer, teacher: MaskGITVQGAN, images: torch.Tensor, batch_size: int) -> dict:
    """One tokenizer on ``images``: PSNR/SSIM of its one-step decode, codebook usage, and what its tokens tell
    about the teacher's codes (its proxy logits over the first ``INFO_IMAGES`` crops)."""
    rows: dict[str, list[float]] = {"psnr@1": [], "ssim@1": []}
    usage = CodebookUsage(tokenizer.info.codebook_size, tokenizer.info.num_tokens)
    tell = TokensTell()
    with torch.inference_mode():
        for first in range(0, images.shape[0], batch_size):
            batch = images[first:first + batch_size]
            ids = tokenizer.encode_each(batch)
            usage.update(ids)
            recon = tokenizer.decode(ids)
            rows["psnr@1"].extend(psnr(recon, batch).tolist())
            rows["ssim@1"].extend(ssim(recon, batch).tolist())
            if first < INFO_IMAGES:
                tell.add(tokenizer.proxy_logits(ids[:INFO_IMAGES - first]), teacher.encode(batch[:INFO_IMAGES - first]))
    codebook = usage.result().summary()
    return {key: mean_ci(values) for key, values in rows.items()} | {
        "tokens_bits_per_slot": {"mean": tell.bits_per_slot()},
        "ce_given_tokens_bits": {"mean": float(tell.per_image_ce().mean())},
        "used_codes": {"mean": float(codebook["used_codes"])}, "codebook": codebook}


def same_crops_check() -> dict:
    """The shipped SFTok re-measured with evaluate_default_model.py's decode on the first crops of the held-out shard
    (as many as its evaluation measured): equal to the PSNR@1 that evaluation states only if these are its crops
    and its protocol, so the first ``n`` crops measured here are the first ``n`` of those."""
    stated = json.loads((ASSETS / "default" / "evaluation.json").read_text())
    shipped = stated["shipped"]
    model = load_pretrained_as(ASSETS / "default" / "sftok", SFTok).eval()
    batch_size = stated["protocol"]["batch_size"]  # decode seeds go by batch, as there
    images = first_crops(str(VAL_SHARD), model.config.image_size, stated["protocol"]["held_out_images"], batch_size)
    values = []
    for first in range(0, images.shape[0], batch_size):
        batch = images[first:first + batch_size]
        values.extend(psnr(decode(model, encode(model, batch), 1, seed=SEED + first), batch).tolist())
    measured, expected = sum(values) / len(values), stated["models"][shipped]["psnr@1"]["mean"]
    if abs(measured - expected) > SAME_CROPS_DB:
        raise SystemExit(f"the held-out crops differ from the default's evaluation: the shipped SFTok reaches PSNR@1 "
                         f"{measured:.3f} dB on them, its evaluation states {expected:.3f} dB (rebuild the dataset?)")
    return {"model": "assets/default/sftok", "run": shipped, "psnr@1_stated": expected, "psnr@1_measured": measured}


def shipped_samples(tokenizer: Tokenizer) -> dict:
    """PSNR of the shipped samples (assets/samples) through the shipped TiTok, each encoded alone."""
    names, images = load_sample_batch(ASSETS / "samples", tokenizer.info.image_size)
    with torch.inference_mode():
        values = psnr(tokenizer.decode(tokenizer.encode_each(images)), images)
    return {"names": names, "psnr@1": [round(float(v), 4) for v in values],
            "note": f"each shipped sample encoded alone, {SHIPPED} model"}


def evaluate(runs: Path, num_images: int, batch_size: int) -> dict:
    names = tokenizer_runs(runs, "titok")
    if not names:
        raise SystemExit(f"no finished TiTok runs in {runs} (stage1_titok*: scripts/train_default_model.py trains them)")
    teacher = teacher_of(runs)
    tokenizers = {name: load_tokenizer(runs / name / "model", teacher=teacher) for name in names}
    for tok in tokenizers.values():
        tok.module.eval()
    images = first_crops(str(VAL_SHARD), next(iter(tokenizers.values())).info.image_size, num_images, batch_size)
    check = same_crops_check()
    per_run = {}
    for name, tok in tokenizers.items():
        steps, minutes = run_minutes(runs, name)
        seed = json.loads((runs / name / "config.json").read_text())["seed"]
        per_run[name] = {"seed": seed, "steps": steps, "wall_minutes": round(minutes, 1),
                         "threads": run_threads(runs, name), **measure(tok, teacher, images, batch_size)}
        print(f"  {name}: PSNR@1 {per_run[name]['psnr@1']['mean']:.2f} dB", flush=True)
    members = {name: per_run[name]["seed"] for name in names}
    return {
        "protocol": {"held_out_images": int(images.shape[0]), "batch_size": batch_size,
                     "psnr_ssim": "Y channel, data range 1 (analysis.image_metrics)",
                     "intervals": "95% bootstrap over held-out images (1000 resamples)",
                     "information_images": min(INFO_IMAGES, int(images.shape[0])),
                     "decode": "one pass: argmax proxy codes rendered by the teacher", "same_crops": check},
        "shipped": SHIPPED,
        "runs": per_run,
        "seeds": across_seeds(per_run, members, SEED_KEYS) if len(members) > 1 else None,
        "shipped_samples": shipped_samples(tokenizers[SHIPPED]) if SHIPPED in tokenizers else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()
    report = evaluate(args.runs.resolve(), args.num_images, args.batch_size)
    report["protocol"]["wall_seconds"] = round(time.time() - start, 1)
    out = args.runs / REPORT
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
