#!/usr/bin/env python
"""Measure the default class-conditional generator and draw its sample grid.

Writes <out>/generator_evaluation.json (settings, class-match accuracy of generated samples against
colour-histogram centroids of real training crops, the same for held-back real crops as a ceiling,
and the centroids themselves so tests can re-check without the dataset) and <out>/generator_samples.png
(one column per class, 4 samples each). See analysis/class_match.py for the measure.

Usage: python scripts/evaluate_default_generator.py [--generator DIR] [--tokenizer DIR] [--out assets/default]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from analysis.class_match import class_match, colour_histograms  # noqa: E402
from core import MaskGITGenerator, SFTok, load_pretrained  # noqa: E402
from trainers.data.loaders import make_eval_loader  # noqa: E402
from train_default_model import DATA, PHOTO_SET  # noqa: E402

SETTINGS = {"num_steps": 8, "guidance_scale": 4.5, "temperature": 1.0, "seed": 0, "samples_per_class": 8,
            "tokenizer_steps": 8, "tokenizer_temperature": 0.0, "centroid_crops": 48, "ceiling_crops": 16}


def crops_per_class(shards: list[str], size: int, classes: int, per_class: int) -> dict[int, torch.Tensor]:
    """The first ``per_class`` centre crops of every class, in shard order."""
    found: dict[int, list[torch.Tensor]] = {c: [] for c in range(classes)}
    for batch in make_eval_loader(shards, size, 64):
        for image, label in zip(batch["image"], batch["class_id"].tolist()):
            if label < classes and len(found[label]) < per_class:
                found[label].append(image)
        if all(len(v) == per_class for v in found.values()):
            break
    return {c: torch.stack(v) for c, v in found.items()}


def sample_images(generator: MaskGITGenerator, tokenizer: SFTok, classes: torch.Tensor, settings: dict) -> torch.Tensor:
    """Generated images (N, 3, H, W) for class ids (N,), decoded as the Generate screen does."""
    with torch.inference_mode():
        rng = torch.Generator().manual_seed(settings["seed"])
        ids, _ = generator.generate(classes, settings["num_steps"], settings["guidance_scale"], settings["temperature"],
                                    generator=rng)
        return tokenizer.decode_tokens(ids, num_steps=settings["tokenizer_steps"],
                                       temperature=settings["tokenizer_temperature"])


def grid(images: torch.Tensor, rows: int, cols: int, scale: int = 2) -> Image.Image:
    """Images ordered class-major (cols classes x rows samples) -> one PNG, a column per class."""
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    h, w = arr.shape[1:3]
    canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, tile in enumerate(arr):
        c, r = divmod(i, rows)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return Image.fromarray(canvas).resize((cols * w * scale, rows * h * scale), Image.Resampling.NEAREST)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", type=Path, default=ROOT / "workspace" / "default-model" / "generator" / "model")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "assets" / "default" / "sftok")
    parser.add_argument("--data", type=Path, default=DATA / PHOTO_SET,
                        help="the dataset the generator was trained on (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator, tokenizer = load_pretrained(args.generator).eval(), load_pretrained(args.tokenizer).eval()
    dataset = json.loads((args.data / "dataset.json").read_text())
    names = dataset["train_sources"]
    size, n_cls, s = tokenizer.config.image_size, len(names), SETTINGS
    real = crops_per_class([str(args.data / name) for name in dataset["train_shards"]], size,
                           n_cls, s["centroid_crops"] + s["ceiling_crops"])
    centroids, ceiling_hists = [], []
    for c in range(n_cls):
        with torch.inference_mode():
            hists = colour_histograms(tokenizer.reconstruct(real[c], num_steps=8, temperature=0.0))
        centroids.append(hists[:s["centroid_crops"]].mean(0))
        ceiling_hists.append(hists[s["centroid_crops"]:])
    centroids = torch.stack(centroids)
    per = s["ceiling_crops"]
    ceiling = class_match(torch.cat(ceiling_hists), torch.arange(n_cls).repeat_interleave(per), centroids)
    classes = torch.arange(n_cls).repeat_interleave(s["samples_per_class"])
    samples = sample_images(generator, tokenizer, classes, s)
    match = class_match(colour_histograms(samples), classes, centroids)
    report = {"settings": s, "class_names": names, "chance": match.chance,
              "generated": {"accuracy": match.accuracy, "per_class": match.per_class, "predicted": match.predicted},
              "real_reconstructions": {"accuracy": ceiling.accuracy, "per_class": ceiling.per_class},
              "centroids": centroids.tolist()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generator_evaluation.json").write_text(json.dumps(report) + "\n")
    shown = samples.view(n_cls, s["samples_per_class"], *samples.shape[1:])[:, :4].reshape(-1, *samples.shape[1:])
    grid(shown, 4, n_cls).save(args.out / "generator_samples.png", optimize=True)
    print(f"class match: generated {match.accuracy:.1%}, real reconstructions {ceiling.accuracy:.1%}, "
          f"chance {match.chance:.1%}")
    for name, acc, real_acc in zip(names, match.per_class, ceiling.per_class):
        print(f"  {name:<22} generated {acc:5.0%}   real {real_acc:5.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
