"""The embedded default dataset: multi-scale crops of bundled photos, written as webdataset shards.

Each source photo (:mod:`trainers.data.photos`, from the packages in :mod:`trainers.data.photo_sources`)
is a class. Training crops come from the training photos only and validation crops from photos held
out whole, so validation measures generalisation to unseen images, not to other crops of seen ones.
Crops are squares whose side is log-uniform between ``max(image_size, shorter/8)`` and the photo's
shorter side, anywhere in the photo, resized (bicubic, antialiased) to ``image_size`` and stored as
PNG. Training crops are then mirrored and colour-jittered (:mod:`trainers.data.augment`); validation
crops are left as cut. Classes are balanced. The manifest records, per source package, its licence,
which photos it gave to each split and how many crops came from them.

Everything is drawn from ``numpy.random.default_rng([seed, split])`` and the tars have fixed
metadata, so a seed gives byte-identical shards. The build goes to a temporary folder that is
renamed into place at the end: a folder with ``dataset.json`` is always complete.

CLI: ``python -m trainers.data.default_dataset OUT_DIR [--image-size 64] [--train-crops N] [--val-crops M]``
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .augment import DEFAULT, NONE, Augmentation, augment
from .photos import DEFAULT_PHOTO_SET, PHOTO_SETS, SAMPLE_PHOTOS, PhotoSet, load_photo, photo_set
from .photo_sources import SOURCES
from .shards import encode_label, shard_writer
from .labels import LABELS_FILE

MANIFEST = "dataset.json"
FORMAT_VERSION = 2  # 2: more source packages, augmented training crops, per-source counts
READABLE_FORMATS = (1, 2)  # shards of format 1 have the same layout: older workspaces' datasets stay usable
SAMPLES_PER_SHARD = 2000
DEFAULT_TRAIN_CROPS = 40_000
DEFAULT_VAL_CROPS = 1_000
_SPLIT_SEED = {"train": 0, "val": 1}


@dataclass(frozen=True)
class DefaultDataset:
    """A built default dataset; shard lists are absolute paths, ready for the loaders."""

    root: str
    image_size: int
    seed: int
    train_shards: list[str]
    val_shards: list[str]
    train_count: int
    val_count: int
    class_names: list[str]       # index = class id; training photos first, then held-out photos
    train_class_ids: list[int]
    val_class_ids: list[int]
    sources: dict[str, dict] = field(default_factory=dict, compare=False)  # per package: licence, photos, crops

    @classmethod
    def load(cls, root: str | os.PathLike) -> "DefaultDataset":
        """Read ``root/dataset.json`` (written last by :func:`build_default_dataset`)."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no default dataset manifest; build one with build_default_dataset")
        data = json.loads(path.read_text())
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected one of {READABLE_FORMATS}")
        return cls(root=str(root.resolve()), image_size=data["image_size"], seed=data["seed"],
                   train_shards=[str(root.resolve() / name) for name in data["train_shards"]],
                   val_shards=[str(root.resolve() / name) for name in data["val_shards"]],
                   train_count=data["train_count"], val_count=data["val_count"], class_names=data["class_names"],
                   train_class_ids=data["train_class_ids"], val_class_ids=data["val_class_ids"],
                   sources=data.get("sources", {}))  # format 1 kept no per-source record


def crop_box(width: int, height: int, image_size: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(left, top, side) of a random square: side log-uniform in [max(image_size, shorter/8), shorter]."""
    short = min(width, height)
    low = min(short, max(image_size, short // 8))
    side = int(round(math.exp(rng.uniform(math.log(low), math.log(short))))) if low < short else short
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    return left, top, side


def cut(photo: Image.Image, box: tuple[int, int, int], size: int) -> Image.Image:
    left, top, side = box
    return photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _balanced_labels(class_ids: list[int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` labels, as equal per class as possible, in random order."""
    per_class = [count // len(class_ids) + (i < count % len(class_ids)) for i in range(len(class_ids))]
    labels = np.repeat(np.array(class_ids), per_class)
    return labels[rng.permutation(len(labels))]


@dataclass
class _SplitWritten:
    shards: list[str]
    labels: np.ndarray
    flipped: int = 0
    jittered: int = 0


def _write_split(folder: Path, split: str, photos: dict[int, Image.Image], count: int, image_size: int,
                 seed: int, settings: Augmentation, progress: bool) -> _SplitWritten:
    rng = np.random.default_rng([seed, _SPLIT_SEED[split]])
    written = _SplitWritten([], _balanced_labels(sorted(photos), count, rng))
    writer = shard_writer(folder, split, SAMPLES_PER_SHARD)
    writer.post = lambda name: written.shards.append(Path(name).name)
    with writer:
        for index, label in enumerate(tqdm(written.labels, desc=f"{split} crops", unit="crop", disable=not progress)):
            photo = photos[int(label)]
            crop = cut(photo, crop_box(photo.width, photo.height, image_size, rng), image_size)
            if settings != NONE:
                crop, applied = augment(crop, settings, rng)
                written.flipped += applied.flipped
                written.jittered += applied.factors is not None
            writer.write({"__key__": f"{index:08d}", "png": png_bytes(crop), "cls": encode_label(int(label))})
    return written


def _per_source(photos: PhotoSet, class_names: list[str], train: _SplitWritten,
                val: _SplitWritten) -> dict[str, dict]:
    """Per source package that gave photos: its licence, the photos it gave each split and the crops cut from them."""
    crops = {"train": np.bincount(train.labels, minlength=len(class_names)),
             "val": np.bincount(val.labels, minlength=len(class_names))}
    report = {}
    for source in SOURCES:
        names = {photo.name for photo in source.photos}
        ids = [i for i, name in enumerate(class_names) if name in names]
        if not ids:
            continue
        report[source.distribution] = {
            "licence": source.licence,
            "kind": source.kind,
            "photo_licences": {photo.name: photo.licence for photo in source.photos if photo.name in class_names},
            "train_photos": [class_names[i] for i in ids if class_names[i] in photos.train],
            "held_out_photos": [class_names[i] for i in ids if class_names[i] in photos.held_out],
            "train_crops": int(sum(crops["train"][i] for i in ids)),
            "val_crops": int(sum(crops["val"][i] for i in ids)),
        }
    return report


def _params(image_size: int, train_crops: int, val_crops: int, seed: int, augmentation: Augmentation,
            photos: PhotoSet) -> dict:
    return {"format": FORMAT_VERSION, "image_size": image_size, "train_crops": train_crops,
            "val_crops": val_crops, "seed": seed, "train_sources": list(photos.train),
            "val_sources": list(photos.held_out), "augmentation": augmentation.as_dict()}


def build_default_dataset(out_dir: str | os.PathLike, image_size: int = 64, train_crops: int = DEFAULT_TRAIN_CROPS,
                          val_crops: int = DEFAULT_VAL_CROPS, seed: int = 0, progress: bool = False,
                          augmentation: Augmentation = DEFAULT, photos: str = DEFAULT_PHOTO_SET) -> DefaultDataset:
    """Build (or reuse) the default dataset in ``out_dir``; ``augmentation`` applies to training crops only.

    ``photos`` names the photo set (:data:`trainers.data.photos.PHOTO_SETS`); sets with Debian photos need
    their packages fetched first (``python -m trainers.data.debian_packages``).

    A folder already holding a dataset built with the same parameters is reused as is; one with
    other parameters, or with other files, is refused rather than overwritten.
    """
    if image_size < 8:
        raise ValueError(f"image_size: must be >= 8, got {image_size}")
    if train_crops < 1 or val_crops < 1:
        raise ValueError(f"train_crops / val_crops: must be >= 1, got {train_crops} / {val_crops}")
    out = Path(out_dir)
    chosen = photo_set(photos)
    params = _params(image_size, train_crops, val_crops, seed, augmentation, chosen)
    if (out / MANIFEST).is_file():
        found = json.loads((out / MANIFEST).read_text())
        if {k: found.get(k) for k in params} == params:
            return DefaultDataset.load(out)
        differences = ", ".join(f"{k}={found.get(k)!r} (asked {params[k]!r})"
                                for k in params if found.get(k) != params[k])
        raise FileExistsError(f"{out} holds a default dataset built with other parameters: {differences}; "
                              "choose another folder or delete it")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no {MANIFEST}; refusing to write shards into it")

    class_names = list(chosen.train + chosen.held_out)
    train_ids = list(range(len(chosen.train)))
    val_ids = list(range(len(chosen.train), len(class_names)))
    images = {index: load_photo(name) for index, name in enumerate(class_names)}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        train = _write_split(staging, "train", {i: images[i] for i in train_ids}, train_crops, image_size,
                             seed, augmentation, progress)
        val = _write_split(staging, "val", {i: images[i] for i in val_ids}, val_crops, image_size,
                           seed, NONE, progress)
        (staging / LABELS_FILE).write_text(json.dumps({n: i for i, n in enumerate(class_names)}, indent=1) + "\n")
        manifest = {**params, "photo_set": chosen.name, "class_names": class_names, "train_class_ids": train_ids,
                    "val_class_ids": val_ids,
                    "train_shards": train.shards, "val_shards": val.shards,
                    "train_count": train_crops, "val_count": val_crops,
                    "distinct_photos": {"train": len(train_ids), "held_out": len(val_ids)},
                    "augmented": {"flipped": train.flipped, "jittered": train.jittered},
                    "sources": _per_source(chosen, class_names, train, val)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DefaultDataset.load(out)


def export_samples(out_dir: str | os.PathLike, n: int = 6, size: int = 256) -> list[Path]:
    """Write ``n`` PNG views of the held-out photos (never seen in training) for demos.

    Views go round the first held-out photos (``SAMPLE_PHOTOS``): first the largest centred square of each,
    then centred
    squares zoomed in by 0.75, 0.75**2, ... Each is resized to ``size`` x ``size``.
    Existing files with the same names are replaced (the content is deterministic).
    """
    if n < 1 or size < 8:
        raise ValueError(f"n / size: must be >= 1 / >= 8, got {n} / {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos = {name: load_photo(name) for name in SAMPLE_PHOTOS}
    paths = []
    for i in range(n):
        name, zoom = SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)], i // len(SAMPLE_PHOTOS)
        photo = photos[name]
        side = max(1, round(min(photo.size) * 0.75 ** zoom))
        box = ((photo.width - side) // 2, (photo.height - side) // 2, side)
        path = out / (f"{name}.png" if zoom == 0 else f"{name}_zoom{zoom}.png")
        cut(photo, box, size).save(path, format="PNG")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.default_dataset",
                                     description="Build the default dataset from photos that installed packages "
                                                 "ship (python -m trainers.data.photo_sources lists them).")
    parser.add_argument("out_dir")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-crops", type=int, default=DEFAULT_TRAIN_CROPS)
    parser.add_argument("--val-crops", type=int, default=DEFAULT_VAL_CROPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="store training crops as cut (no flips, no jitter)")
    parser.add_argument("--photos", default=DEFAULT_PHOTO_SET, choices=sorted(PHOTO_SETS),
                        help="photo set (packages-v3 adds Debian packages' photos; fetch them first)")
    parser.add_argument("--samples", metavar="DIR", help="also export held-out sample images (PNG) to DIR")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        data = build_default_dataset(args.out_dir, args.image_size, args.train_crops, args.val_crops, args.seed,
                                     progress=True, augmentation=NONE if args.no_augment else DEFAULT,
                                     photos=args.photos)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"default dataset in {data.root}: {data.train_count} train crops in {len(data.train_shards)} shards, "
          f"{data.val_count} val crops in {len(data.val_shards)} shards, {len(data.class_names)} classes, "
          f"{data.image_size}px ({time.perf_counter() - start:.1f} s)")
    for name, counts in data.sources.items():
        print(f"  {name} ({counts['licence']}): {len(counts['train_photos'])} training photos, "
              f"{len(counts['held_out_photos'])} held out; {counts['train_crops']} train / {counts['val_crops']} val crops")
    if args.samples:
        paths = export_samples(args.samples)
        print(f"wrote {len(paths)} held-out sample images to {args.samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
