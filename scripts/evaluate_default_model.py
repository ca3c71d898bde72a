#!/usr/bin/env python
"""Measure the default-model runs on held-out images and write workspace/default-model/evaluation.json.

Held-out = the validation crops of photos never seen in training (trainers/data/photos.py), plus the
sample images shipped in assets/samples. Decoding uses the model's default settings (8 steps unless
stated, Gumbel temperature 1.0) with a fixed seed per batch, so the numbers are reproducible.
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

from analysis.image_metrics import psnr, ssim  # noqa: E402
from analysis.usage import CodebookUsage  # noqa: E402
from core import MaskGITVQGAN, SFTok, load_pretrained  # noqa: E402
from trainers.data.loaders import make_eval_loader  # noqa: E402

STEP_COUNTS = (1, 2, 4, 8)
RUNS = ROOT / "workspace" / "default-model"
SEED = 0


def reconstruct(model: SFTok, images: torch.Tensor, num_steps: int, seed: int = SEED) -> torch.Tensor:
    """Encode the batch together and decode with a fixed seed (the evaluation protocol)."""
    with torch.inference_mode():
        ids = model.encode(images)[1]["min_encoding_indices"]
        return model.decode_tokens(ids, num_steps=num_steps, generator=torch.Generator().manual_seed(seed))


def load_sample_batch(folder: Path, image_size: int) -> tuple[list[str], torch.Tensor]:
    """Shipped samples, resized/centre-cropped to the model's input size like an upload."""
    from analysis.data import resize_center_crop
    from PIL import Image

    paths = sorted(folder.glob("*.png"))
    tensors = [resize_center_crop(Image.open(p).convert("RGB"), image_size) for p in paths]
    return [p.name for p in paths], torch.stack(tensors)


def evaluate(num_images: int, batch_size: int) -> dict:
    teacher = load_pretrained(RUNS / "teacher" / "model")
    assert isinstance(teacher, MaskGITVQGAN)
    models: dict[str, SFTok] = {}
    for name in ("stage1", "stage2_sfvr", "stage2_vanilla", "stage3"):
        path = RUNS / name / "model"
        if path.is_dir():
            models[name] = load_pretrained(path)
            models[name].attach_teacher(teacher)
    image_size = next(iter(models.values())).config.image_size
    val = ROOT / "workspace" / "data" / "default" / "val-000000.tar"
    sums: dict[str, dict[str, float]] = {name: {} for name in [*models, "teacher"]}
    usage = {name: CodebookUsage(m.config.codebook_size, m.config.num_latent_tokens) for name, m in models.items()}
    teacher_usage = CodebookUsage(teacher.config.codebook_size, next(iter(models.values())).config.num_proxy_codes)
    seen = 0
    for batch in make_eval_loader(str(val), image_size, batch_size):
        images = batch["image"][: num_images - seen]
        n = images.shape[0]
        with torch.inference_mode():
            codes = teacher.encode(images)
            teacher_recon = teacher.decode_codes(codes)
        teacher_usage.update(codes)
        acc = sums["teacher"]
        acc["psnr"] = acc.get("psnr", 0.0) + float(psnr(teacher_recon, images).sum())
        acc["ssim"] = acc.get("ssim", 0.0) + float(ssim(teacher_recon, images).sum())
        for name, model in models.items():
            with torch.inference_mode():
                usage[name].update(model.encode(images)[1]["min_encoding_indices"][:, 0])
            for k in STEP_COUNTS:
                recon = reconstruct(model, images, k, seed=SEED + seen)
                acc = sums[name]
                acc[f"psnr@{k}"] = acc.get(f"psnr@{k}", 0.0) + float(psnr(recon, images).sum())
                acc[f"ssim@{k}"] = acc.get(f"ssim@{k}", 0.0) + float(ssim(recon, images).sum())
        seen += n
        print(f"  evaluated {seen}/{num_images} held-out crops", flush=True)
        if seen >= num_images:
            break
    result = {
        "protocol": {"held_out_images": seen, "image_size": image_size, "batch_size": batch_size, "seed": SEED,
                     "temperature": "model default (1.0)", "psnr_ssim": "Y channel, data range 1 (analysis.image_metrics)",
                     "lpips": "not measured: the VGG/AlexNet backbone weights are not on this machine"},
        "models": {name: {k: v / seen for k, v in acc.items()} for name, acc in sums.items()},
        "codebook": {name: u.result().summary() for name, u in usage.items()},
        "teacher_codebook": teacher_usage.result().summary(),
    }
    samples_dir = ROOT / "assets" / "samples"
    if "stage3" in models and samples_dir.is_dir() and any(samples_dir.glob("*.png")):
        names, images = load_sample_batch(samples_dir, image_size)
        per = {}
        for k in (1, 8):
            recon = reconstruct(models["stage3"], images, k)
            per[f"psnr@{k}"] = [round(float(v), 4) for v in psnr(recon, images)]
        result["shipped_samples"] = {"names": names, **per,
                                     "note": "all shipped samples encoded as one batch, seed 0, stage-3 model"}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()
    result = evaluate(args.num_images, args.batch_size)
    result["protocol"]["wall_seconds"] = round(time.time() - start, 1)
    out = RUNS / "evaluation.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["models"], indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
