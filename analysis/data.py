"""Image batches for the analysis CLI: a folder of images or a set of webdataset tar shards.

Shard sets may be given as files, globs or webdataset brace patterns (``data-{000000..000003}.tar``).

Every image is converted to RGB, its shorter side resized to the model's size (PIL bicubic, which
antialiases when shrinking) and centre-cropped, then scaled to [0, 1]. Each sample keeps a key
(the file's path relative to the folder, or ``shard.tar/key`` for shards) so codebook reservoirs
can point back at the images without storing them.
"""
from __future__ import annotations

import glob
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageBatch:
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    keys: tuple[str, ...]


def batch_images(batch: torch.Tensor | ImageBatch) -> torch.Tensor:
    return batch.images if isinstance(batch, ImageBatch) else batch


def batch_keys(batch: torch.Tensor | ImageBatch, offset: int) -> list[str]:
    """The batch's sample keys, or running indices for bare tensors."""
    if isinstance(batch, ImageBatch):
        return list(batch.keys)
    return [str(offset + i) for i in range(batch.shape[0])]


def resize_center_crop(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) float tensor in [0, 1]: shorter side to ``size``, centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def decode_sample(key: str, data: bytes, size: int) -> torch.Tensor:
    """One sample's bytes -> the protocol's (3, size, size) tensor; an undecodable file names its key."""
    try:
        return resize_center_crop(Image.open(io.BytesIO(data)), size)
    except OSError as err:
        raise ValueError(f"data: cannot decode image {key!r}: {err}") from err


def _expand(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in _expand(s)]
    text = str(source)
    if "{" in text and ".." in text:  # webdataset brace pattern, e.g. train-{000000..000009}.tar
        from braceexpand import braceexpand

        return [p for part in braceexpand(text) for p in _expand(part)]
    matches = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
    if not matches or not Path(matches[0]).exists():
        raise FileNotFoundError(f"data: no files match {text!r}")
    return [Path(m) for m in matches]


def _folder_samples(folder: Path) -> Iterator[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"data: no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    for path in files:
        yield str(path.relative_to(folder)), path.read_bytes()


def _shard_samples(shard: Path) -> Iterator[tuple[str, bytes]]:
    """(key, image bytes) per sample of a webdataset tar: the first member with an image extension."""
    done: set[str] = set()
    with tarfile.open(shard, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name
            base = os.path.basename(name)
            key = os.path.join(os.path.dirname(name), base.split(".", 1)[0])
            ext = "." + base.split(".", 1)[1].lower() if "." in base else ""
            if key in done or ext not in IMAGE_EXTENSIONS:
                continue
            done.add(key)
            yield f"{shard.name}/{key}", tar.extractfile(member).read()


def iter_samples(source: str | os.PathLike | Sequence[str | os.PathLike]) -> Iterator[tuple[str, bytes]]:
    for path in _expand(source):
        if path.is_dir():
            yield from _folder_samples(path)
        elif path.suffix == ".tar" or path.name.endswith((".tar.gz", ".tgz")):
            yield from _shard_samples(path)
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            yield path.name, path.read_bytes()
        else:
            raise FileNotFoundError(f"data: {path} is not a folder, a .tar shard or an image file")


def iter_image_batches(source: str | os.PathLike | Sequence[str | os.PathLike], image_size: int, batch_size: int = 32,
                       limit: int | None = None) -> Iterator[ImageBatch]:
    """Batches of preprocessed images (the last one may be smaller), at most ``limit`` images in all."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    images: list[torch.Tensor] = []
    keys: list[str] = []
    seen = 0
    for key, data in iter_samples(source):
        if limit is not None and seen >= limit:
            break
        images.append(decode_sample(key, data, image_size))
        keys.append(key)
        seen += 1
        if len(images) == batch_size:
            yield ImageBatch(torch.stack(images), tuple(keys))
            images, keys = [], []
    if images:
        yield ImageBatch(torch.stack(images), tuple(keys))
