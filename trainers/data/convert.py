"""Image folder -> webdataset shards in the official layout (``python -m trainers.data.convert``).

``SRC_DIR/<class>/**/<image>`` gives integer labels by sorted class-folder name; a flat folder of
images is one class (label 0). Samples are ``__key__`` = running index (8 digits), the image under
its own format's extension (``jpg``/``png``/``webp``; other formats are re-encoded as PNG) and
``cls`` = the label as ASCII text. ``labels.json`` maps class name -> id.

Every file is decoded before it is written, so the shards only hold images the loaders can read;
unreadable files are skipped and listed at the end. Existing shards are never overwritten.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .shards import encode_label, existing_shards, shard_writer
from .transforms import resize_shorter
from .labels import LABELS_FILE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # stored byte-for-byte when not resized


@dataclass
class ConversionReport:
    shards: list[Path]
    samples: int
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    ignored: int = 0  # files without an image suffix


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def list_images(src: Path) -> tuple[list[tuple[Path, int]], list[str], list[tuple[str, str]], int]:
    """(file, label) pairs in a stable order, class names, files outside class folders, ignored count."""
    subdirs = sorted(p for p in src.iterdir() if p.is_dir() and _visible(p))
    if subdirs:
        class_names = [p.name for p in subdirs]
        roots = list(enumerate(subdirs))
        stray = [(p.relative_to(src).as_posix(), "image outside the class folders")
                 for p in sorted(src.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        class_names, roots, stray = [src.resolve().name], [(0, src)], []
    pairs, ignored = [], 0
    for label, root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and _visible(p)):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((path, label))
            else:
                ignored += 1
    return pairs, class_names, stray, ignored


def encode_image(data: bytes, image_size: int | None) -> tuple[str, bytes]:
    """Decode fully (raises on unreadable bytes); keep the bytes when possible, else re-encode."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        fmt = image.format
        if image_size is None and fmt in KEPT_FORMATS:
            return KEPT_FORMATS[fmt], data
        rgb = image.convert("RGB")
    if image_size is not None and min(rgb.size) > image_size:
        rgb = resize_shorter(rgb, image_size)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        rgb.save(buffer, format="JPEG", quality=95)
        return "jpg", buffer.getvalue()
    rgb.save(buffer, format="PNG")
    return "png", buffer.getvalue()


def _check_labels_file(out: Path, labels: dict[str, int]) -> None:
    path = out / LABELS_FILE
    if path.exists() and json.loads(path.read_text()) != labels:
        raise FileExistsError(f"{path} exists with different classes; convert into an empty folder")


def convert_folder(src: str | os.PathLike, out: str | os.PathLike, prefix: str = "train",
                   max_per_shard: int = 1000, image_size: int | None = None, progress: bool = True) -> ConversionReport:
    """Write ``out/<prefix>-%06d.tar`` shards from the images under ``src``.

    ``image_size`` shrinks images whose shorter side is larger (re-encoded: JPEG sources as JPEG
    quality 95, everything else as PNG); without it images are stored as they are.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"SRC_DIR: {src} is not a directory")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size: must be >= 1, got {image_size}")
    existing = existing_shards(out, prefix)
    if existing:
        raise FileExistsError(f"{out} already holds {len(existing)} '{prefix}-*.tar' shards "
                              f"(first: {existing[0].name}); refusing to overwrite, choose another OUT_DIR or --prefix")
    pairs, class_names, skipped, ignored = list_images(src)
    if not pairs:
        raise ValueError(f"SRC_DIR: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {src}")
    labels = {name: index for index, name in enumerate(class_names)}
    out.mkdir(parents=True, exist_ok=True)
    _check_labels_file(out, labels)

    written: list[Path] = []
    count = 0
    writer = shard_writer(out, prefix, max_per_shard)
    writer.post = lambda name: written.append(Path(name))
    with writer:
        for path, label in tqdm(pairs, desc=f"converting {src.name}", unit="img", disable=not progress):
            relative = path.relative_to(src).as_posix()
            try:
                ext, data = encode_image(path.read_bytes(), image_size)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                skipped.append((relative, f"{type(error).__name__}: {error}"))
                continue
            writer.write({"__key__": f"{count:08d}", ext: data, "cls": encode_label(label)})
            count += 1
    (out / LABELS_FILE).write_text(json.dumps(labels, indent=1) + "\n")
    return ConversionReport(written, count, class_names, skipped, ignored)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.data.convert", description=__doc__.split("\n")[0])
    parser.add_argument("src_dir", help="image folder (class sub-folders give labels by sorted name)")
    parser.add_argument("out_dir", help="where <prefix>-%%06d.tar and labels.json are written")
    parser.add_argument("--prefix", default="train", help="shard name prefix (default: train)")
    parser.add_argument("--max-per-shard", type=int, default=1000, help="samples per shard (default: 1000)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="shrink images so the shorter side is at most this (re-encodes them)")
    args = parser.parse_args(argv)
    try:
        report = convert_folder(args.src_dir, args.out_dir, args.prefix, args.max_per_shard, args.image_size)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report.samples} samples in {len(report.shards)} shards to {args.out_dir} "
          f"({len(report.class_names)} classes: {', '.join(report.class_names[:10])}"
          f"{' ...' if len(report.class_names) > 10 else ''})")
    if report.ignored:
        print(f"ignored {report.ignored} files without an image suffix")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files:")
        for name, why in report.skipped:
            print(f"  {name}: {why}")
    if report.samples == 0:
        print("error: no image could be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
