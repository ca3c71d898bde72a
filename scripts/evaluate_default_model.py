#!/usr/bin/env python
"""Measure the default-model runs on held-out images and write workspace/default-model/evaluation.json.

Held-out = the validation crops of photos never seen in training (trainers/data/photos.py), plus the
sample images shipped in assets/samples. Decoding uses the model's default settings (8 steps unless
stated, Gumbel temperature 1.0) with a fixed seed per batch, so the numbers are reproducible.
Every mean comes with a 95% bootstrap interval over images; repeated stage-2 runs (seeds) are
summarised per recipe as mean and sample standard deviation over seeds. Code-level information
(analysis.code_information) is measured for every model against the teacher's codes.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from analysis.code_information import ScreenDefaults, code_information, tokens_tell  # noqa: E402
from analysis.estimators import left_neighbour_cross_entropy, neighbour_mutual_information  # noqa: E402
from analysis.image_metrics import psnr, ssim  # noqa: E402
from analysis.model_mi import bootstrap_mean_ci  # noqa: E402
from analysis.pixel_baselines import fit_thumbnail_probe, thumbnail_psnr  # noqa: E402
from analysis.usage import CodebookUsage  # noqa: E402
from core import MaskGITVQGAN, SFTok, load_pretrained  # noqa: E402
from trainers.data.loaders import make_eval_loader  # noqa: E402
from train_default_model import DATA, PHOTO_SET, TEACHER_PHOTO_SET  # noqa: E402

STEP_COUNTS = (1, 2, 4, 8)
RUNS = ROOT / "workspace" / "default-model"
SEED = 0
SHIPPED = "stage3"  # the run exported as assets/default/sftok
BASELINE_TRAIN_CROPS = 2048  # training crops whose teacher codes build the left-neighbour table
INFO_IMAGES = 64  # held-out crops for the code-information summary (the screen defaults use the first 8)
TRAINING_CROPS = 256  # training crops measured beside the held-out ones (and the teacher on them)
TRAIN_SHARDS = DATA / PHOTO_SET / "train-{000000..000019}.tar"
VAL_SHARD = DATA / PHOTO_SET / "val-000000.tar"
# The default model this build replaces (19 photos, photo set packages-v2), read from git, and the held-out crops it
# was measured on (5 photos): both models are measured on those and on this build's held-out crops.
PREVIOUS = ("794e7f1", "assets/default/sftok")
PREVIOUS_VAL_SHARD = DATA / TEACHER_PHOTO_SET / "val-000000.tar"
THUMBNAIL_SIZES = (1, 2, 4, 8)  # model-free references: each crop rebuilt from its own s x s thumbnail
PROBE_CROPS, PROBE_SIZE, PROBE_RIDGE = 4096, 4, 10.0  # the thumbnail probe of the shipped model's features
SEEDED_RUN = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)$")


def encode(model: SFTok, images: torch.Tensor) -> torch.Tensor:
    """Token ids (B, 1, N), each image's assigned alone (as the workbench encodes one upload)."""
    with torch.inference_mode():
        return model.encode(images, per_image=True)[1]["min_encoding_indices"]


def decode(model: SFTok, ids: torch.Tensor, num_steps: int, seed: int = SEED) -> torch.Tensor:
    """Decode with a fixed seed (the evaluation protocol)."""
    with torch.inference_mode():
        return model.decode_tokens(ids, num_steps=num_steps, generator=torch.Generator().manual_seed(seed))


def reconstruct(model: SFTok, images: torch.Tensor, num_steps: int, seed: int = SEED) -> torch.Tensor:
    """Encode the batch together and decode with a fixed seed."""
    return decode(model, encode(model, images), num_steps, seed)


def load_sample_batch(folder: Path, image_size: int) -> tuple[list[str], torch.Tensor]:
    """Shipped samples, resized/centre-cropped to the model's input size like an upload."""
    from analysis.data import resize_center_crop
    from PIL import Image

    paths = sorted(folder.glob("*.png"))
    tensors = [resize_center_crop(Image.open(p).convert("RGB"), image_size) for p in paths]
    return [p.name for p in paths], torch.stack(tensors)


def tokenizer_runs(runs: Path, family: str = "sftok") -> list[str]:
    """Every finished run of one model family (SFTok: stage 1, 2 and 3 folders, repeated seeds included; the TiTok
    baseline's runs are measured by evaluate_default_titok.py), in name order."""
    return sorted(p.parent.parent.name for p in runs.glob("stage*/model/model.safetensors")
                  if json.loads((p.parent / "config.json").read_text()).get("model_type") == family)


def mean_ci(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)[:, None]
    low, high = bootstrap_mean_ci(array, seed=SEED)
    return {"mean": float(array.mean()), "ci_low": float(low[0]), "ci_high": float(high[0])}


def seed_groups(names: list[str]) -> dict[str, dict[str, int]]:
    """{recipe: {run name: seed}} for recipes run with more than one seed (runs ``<recipe>`` and
    ``<recipe>-seed<N>``); each seed as the run's own config.json recorded it."""
    groups: dict[str, list[str]] = {}
    for name in names:
        found = SEEDED_RUN.match(name)
        if found:
            groups.setdefault(found["recipe"], []).append(name)
    for recipe, members in groups.items():
        if recipe in names:
            members.append(recipe)
    seed = {name: json.loads((RUNS / name / "config.json").read_text())["seed"] for m in groups.values() for name in m}
    return {recipe: dict(sorted(((n, seed[n]) for n in m), key=lambda kv: kv[1]))
            for recipe, m in groups.items() if len(m) > 1}


CODE_HEADLINES = ("tokens_bits_per_slot", "reveal_drop_bits", "loo_mean_bits")


def code_headline(info: dict) -> dict[str, dict[str, float]]:
    """A model's code-level numbers in the per-model summary's shape: what the tokens tell, how much revealing
    90% of the teacher's codes lowers the cross-entropy of the rest, and the leave-one-out MI (bits/slot)."""
    curve = info["ce_hidden_by_reveal_bits"]
    values = {"tokens_bits_per_slot": info["tokens_bits_per_slot"], "reveal_drop_bits": curve[0] - curve[-1],
              "loo_mean_bits": info["loo_mean_bits"]}
    return {key: {"mean": float(v)} for key, v in values.items()}


def across_seeds(per_model: dict[str, dict], members: dict[str, int], keys: list[str] | None = None) -> dict:
    """Mean and sample standard deviation over a recipe's seeds of each model's headline numbers (``keys``: those of
    a multi-step SFTok when not given)."""
    if keys is None:
        keys = [f"psnr@{k}" for k in STEP_COUNTS] + ["gain_8_minus_1"]
        keys += [k for k in CODE_HEADLINES if all(k in per_model[name] for name in members)]
    out: dict = {"runs": members}
    for key in keys:
        values = [per_model[name][key]["mean"] for name in members]
        out[key] = {"values": values, "mean": statistics.fmean(values), "std": statistics.stdev(values)}
    return out


def neighbour_baseline(teacher: MaskGITVQGAN, held_out_codes: torch.Tensor, image_size: int, batch_size: int) -> dict:
    """What a decoder reading its revealed neighbours could reach: a left-neighbour bigram of training codes."""
    crops = first_crops(str(TRAIN_SHARDS), image_size, BASELINE_TRAIN_CROPS, batch_size)
    with torch.inference_mode():
        train_codes = torch.cat([teacher.encode(batch) for batch in crops.split(batch_size)]).numpy()
    ce = left_neighbour_cross_entropy(train_codes, held_out_codes.numpy(), teacher.config.codebook_size)
    shared = neighbour_mutual_information(held_out_codes.numpy(), num_shuffles=5)
    return {"left_neighbour_ce_bits": ce, "train_crops": int(train_codes.shape[0]),
            "held_out_crops": int(held_out_codes.shape[0]), "smoothing": 0.1,
            "neighbour_mi_bits": {k: {"bits": v.bits, "shuffled_bits": v.shuffle_mean_bits} for k, v in shared.items()}}


def first_crops(shards: str, image_size: int, count: int, batch_size: int) -> torch.Tensor:
    """The first ``count`` crops of ``shards`` in file order (the default dataset's shards mix all photos)."""
    batches, seen = [], 0
    for batch in make_eval_loader(shards, image_size, batch_size):
        batches.append(batch["image"][: count - seen])
        seen += batches[-1].shape[0]
        if seen >= count:
            break
    return torch.cat(batches)


def crop_protocol(models: dict[str, SFTok], teacher: MaskGITVQGAN, images: torch.Tensor, batch_size: int,
                  label: str) -> dict[str, dict]:
    """Per model: PSNR@1/@8 (decoded with the protocol's seeds) and what its tokens tell about the teacher's codes on
    the first ``INFO_IMAGES`` of ``images``; the measurement the held-out-against-training comparisons share."""
    out: dict[str, dict] = {}
    for name, model in models.items():
        rows: dict[str, list[float]] = {"psnr@1": [], "psnr@8": []}
        for first in range(0, images.shape[0], batch_size):
            batch = images[first:first + batch_size]
            ids = encode(model, batch)
            for k in (1, 8):
                rows[f"psnr@{k}"].extend(psnr(decode(model, ids, k, seed=SEED + first), batch).tolist())
        tell = tokens_tell(model, teacher, images[:INFO_IMAGES], batch_size)
        out[name] = {key: mean_ci(values) for key, values in rows.items()} | {
            "tokens_bits_per_slot": tell.bits_per_slot()}
        print(f"  {label}: {name}", flush=True)
    return out


def training_photos(models: dict[str, SFTok], teacher: MaskGITVQGAN, images: torch.Tensor, batch_size: int) -> dict:
    """The held-out protocol (PSNR@1/@8, what the tokens tell) on crops of the training photos, with the teacher on
    the same crops: it tells harder held-out photos (the teacher drops too) from what a model does not carry over."""
    teacher_psnr = mean_ci(psnr(teacher.decode_codes(teacher.encode(images)), images).tolist())
    return {"crops": int(images.shape[0]), "teacher": {"psnr": teacher_psnr},
            **crop_protocol(models, teacher, images, batch_size, "training photos")}


def previous_model(folder: Path) -> SFTok | None:
    """The model shipped before this build, written out of git into ``folder`` (None where git lacks it)."""
    revision, path = PREVIOUS
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        blob = subprocess.run(["git", "show", f"{revision}:{path}/{name}"], cwd=ROOT, capture_output=True)
        if blob.returncode != 0:
            return None
        (folder / name).write_bytes(blob.stdout)
    return load_pretrained(folder).eval()


def against_previous(shipped: SFTok, teacher: MaskGITVQGAN, held_out: torch.Tensor, batch_size: int,
                     shipped_held_out: dict) -> dict | None:
    """The shipped model and the one it replaces on the same crops: the previous build's held-out photos and this
    build's (with the same teacher, so what the tokens tell is comparable too). ``shipped_held_out`` is what the
    evaluation already measured of the shipped model on ``held_out`` with this protocol; it is not decoded again."""
    previous = previous_model(RUNS / "previous-default")
    if previous is None or not PREVIOUS_VAL_SHARD.is_file():
        return None
    previous.attach_teacher(teacher)
    image_size = shipped.config.image_size
    earlier = first_crops(str(PREVIOUS_VAL_SHARD), image_size, held_out.shape[0], batch_size)
    measures = {"previous held-out": crop_protocol({"previous": previous, "shipped": shipped}, teacher, earlier,
                                                   batch_size, "previous held-out"),
                "held-out": {**crop_protocol({"previous": previous}, teacher, held_out, batch_size, "held-out"),
                             "shipped": shipped_held_out}}
    return {"revision": PREVIOUS[0], "photo_sets": {"previous held-out": TEACHER_PHOTO_SET, "held-out": PHOTO_SET},
            "crops": {"previous held-out": int(earlier.shape[0]), "held-out": int(held_out.shape[0])},
            "measures": measures}


def thumbnail_references(images: torch.Tensor) -> dict[str, dict[str, float]]:
    """PSNR of each crop rebuilt from its own s x s thumbnail (s = 1: its mean colour), per size."""
    return {str(s): mean_ci(thumbnail_psnr(images, s).tolist()) for s in THUMBNAIL_SIZES}


def thumbnail_probes(model: SFTok, held_out: torch.Tensor, image_size: int, batch_size: int) -> dict:
    """Do the model's features carry a crop's layout? Ridge probes from its quantised tokens and from its encoder's
    continuous outputs to the 4x4 thumbnail, fit on training crops, measured on the held-out ones."""
    train = first_crops(str(TRAIN_SHARDS), image_size, PROBE_CROPS, batch_size)

    def features(images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens, continuous = [], []
        for first in range(0, images.shape[0], batch_size):
            batch = images[first:first + batch_size]
            z = model.encode_continuous(batch)  # encoded once: the tokens are its quantisation (as SFTok.encode)
            tokens.append(model.quantize(z, per_image=True)[0].flatten(1))
            continuous.append(torch.nn.functional.normalize(z, dim=1).flatten(1))
        return {"tokens": torch.cat(tokens), "continuous": torch.cat(continuous)}

    fit, measure = features(train), features(held_out)
    out: dict = {"train_crops": int(train.shape[0]), "thumbnail": PROBE_SIZE, "ridge": PROBE_RIDGE}
    for key in ("tokens", "continuous"):
        probe = fit_thumbnail_probe(fit[key], train, PROBE_SIZE, ridge=PROBE_RIDGE)
        out[key] = mean_ci(probe.psnr(measure[key], held_out).tolist())
    return out


def evaluate(num_images: int, batch_size: int) -> dict:
    teacher = load_pretrained(RUNS / "teacher" / "model")
    assert isinstance(teacher, MaskGITVQGAN)
    models: dict[str, SFTok] = {}
    for name in tokenizer_runs(RUNS):
        models[name] = load_pretrained(RUNS / name / "model").eval()
        models[name].attach_teacher(teacher)
    image_size = next(iter(models.values())).config.image_size
    val = VAL_SHARD
    per_image: dict[str, dict[str, list[float]]] = {name: {} for name in [*models, "teacher"]}
    usage = {name: CodebookUsage(m.config.codebook_size, m.config.num_latent_tokens) for name, m in models.items()}
    teacher_usage = CodebookUsage(teacher.config.codebook_size, next(iter(models.values())).config.num_proxy_codes)
    info_images: list[torch.Tensor] = []
    held_out_images: list[torch.Tensor] = []
    held_out_codes: list[torch.Tensor] = []
    seen = 0
    for batch in make_eval_loader(str(val), image_size, batch_size):
        images = batch["image"][: num_images - seen]
        n = images.shape[0]
        if seen < INFO_IMAGES:
            info_images.append(images[: INFO_IMAGES - seen])
        with torch.inference_mode():
            codes = teacher.encode(images)
            teacher_recon = teacher.decode_codes(codes)
        teacher_usage.update(codes)
        held_out_codes.append(codes)
        held_out_images.append(images)
        rows = per_image["teacher"]
        rows.setdefault("psnr", []).extend(psnr(teacher_recon, images).tolist())
        rows.setdefault("ssim", []).extend(ssim(teacher_recon, images).tolist())
        for name, model in models.items():
            ids = encode(model, images)
            usage[name].update(ids[:, 0])
            rows = per_image[name]
            for k in STEP_COUNTS:
                recon = decode(model, ids, k, seed=SEED + seen)
                rows.setdefault(f"psnr@{k}", []).extend(psnr(recon, images).tolist())
                rows.setdefault(f"ssim@{k}", []).extend(ssim(recon, images).tolist())
        seen += n
        print(f"  evaluated {seen}/{num_images} held-out crops", flush=True)
        if seen >= num_images:
            break
    for name in models:
        rows = per_image[name]
        rows["gain_8_minus_1"] = [b - a for a, b in zip(rows["psnr@1"], rows["psnr@8"])]
    summary = {name: {key: mean_ci(values) for key, values in rows.items()} for name, rows in per_image.items()}
    info_batch = torch.cat(info_images)
    screen = ScreenDefaults()
    information = {}
    for name, model in models.items():
        print(f"  code information: {name}", flush=True)
        information[name] = code_information(model, teacher, info_batch, screen).as_dict()
    result = {
        "protocol": {"held_out_images": seen, "image_size": image_size, "batch_size": batch_size, "seed": SEED,
                     "temperature": "model default (1.0)", "psnr_ssim": "Y channel, data range 1 (analysis.image_metrics)",
                     "intervals": "95% bootstrap over held-out images (1000 resamples)",
                     "information_images": int(info_batch.shape[0]),
                     "information_screen_defaults": screen.__dict__,
                     "lpips": "not measured: the VGG/AlexNet backbone weights are not on this machine"},
        "shipped": SHIPPED,
        "shipped_from": Path(json.loads((RUNS / SHIPPED / "config.json").read_text())["init_weights"]).parent.name,
        "models": summary,
        "seeds": {recipe: across_seeds({n: {**summary[n], **code_headline(information[n])} for n in models}, members)
                  for recipe, members in seed_groups(list(models)).items()},
        "information": information,
        "codebook": {name: u.result().summary() for name, u in usage.items()},
        "teacher_codebook": teacher_usage.result().summary(),
        "code_baseline": neighbour_baseline(teacher, torch.cat(held_out_codes), image_size, batch_size),
    }
    held_out = torch.cat(held_out_images)
    with torch.inference_mode():
        training = first_crops(str(TRAIN_SHARDS), image_size, TRAINING_CROPS, batch_size)
        result["training_photos"] = training_photos(models, teacher, training, batch_size)
        result["thumbnails"] = {"held_out": thumbnail_references(held_out), "training": thumbnail_references(training),
                                "upsampling": "area average down, bicubic up"}
        if SHIPPED in models:
            result["thumbnail_probes"] = thumbnail_probes(models[SHIPPED], held_out, image_size, batch_size)
            shipped_held_out = {key: summary[SHIPPED][key] for key in ("psnr@1", "psnr@8")} | {
                "tokens_bits_per_slot": information[SHIPPED]["tokens_bits_per_slot"]}  # crop_protocol's measures
            result["against_previous"] = against_previous(models[SHIPPED], teacher, held_out, batch_size,
                                                          shipped_held_out)
    samples_dir = ROOT / "assets" / "samples"
    if SHIPPED in models and samples_dir.is_dir() and any(samples_dir.glob("*.png")):
        names, images = load_sample_batch(samples_dir, image_size)
        per = {}
        ids = encode(models[SHIPPED], images)
        for k in (1, 8):
            recon = decode(models[SHIPPED], ids, k)
            per[f"psnr@{k}"] = [round(float(v), 4) for v in psnr(recon, images)]
        info = code_information(models[SHIPPED], teacher, images, ScreenDefaults(images=images.shape[0]))
        result["shipped_samples"] = {"names": names, **per, "information": info.as_dict(),
                                     "note": f"each shipped sample encoded alone, seed 0, {SHIPPED} model"}
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
    print(json.dumps({name: {k: round(v["mean"], 2) for k, v in rows.items()} for name, rows in result["models"].items()},
                     indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
