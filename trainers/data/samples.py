"""Raw tar members -> a checked sample (RGB image, label, optional proxy codes), or a named reason to skip.

Validation lives here, in one place, so the train loader, the eval loader and the proxy cache
agree on what a good sample is and count bad ones under the same names.
"""
from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .shards import RawSample, decode_npy

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # the official reader's image keys, in preference order
PROXY_MEMBERS = ("proxy.npy", "proxy_flip.npy", "proxy_size")
MAX_PIXELS = 64_000_000  # 8000 x 8000; ImageNet's largest photos are ~ 10x smaller
MAX_ASPECT = 64  # 4000x62 passes; a 100000x1 strip would become gigabytes at any training size
MAX_LABEL = 2**31 - 1
_LABEL = re.compile(rb"[+-]?[0-9]{1,30}")


class SkipSample(Exception):
    """A sample that cannot be used; ``reason`` is one of :data:`trainers.data.stats.SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Sample:
    key: str
    image: Image.Image            # RGB, decoded fully
    class_id: int
    proxy: np.ndarray | None = None       # (S,) teacher codes of the centre-cropped image
    proxy_flip: np.ndarray | None = None  # (S,) codes of its horizontal mirror
    proxy_size: int | None = None         # the image_size the codes were computed at


def image_member(raw: RawSample) -> str:
    for ext in IMAGE_EXTS:
        if ext in raw:
            return ext
    raise SkipSample("missing_image", f"no image member (looked for {', '.join(IMAGE_EXTS)}; has {_members(raw)})")


def decode_image(data: bytes) -> Image.Image:
    """Fully decoded RGB image; truncated or non-image bytes raise ``SkipSample('corrupt_image')``,
    a header claiming more than :data:`MAX_PIXELS` raises ``SkipSample('image_too_large')`` before
    any pixel is decoded (a few kB of PNG can otherwise claim gigabytes)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise SkipSample("image_too_large", f"{width}x{height} pixels is more than {MAX_PIXELS}")
            if max(width, height) > MAX_ASPECT * min(width, height):  # resizing its short side would explode it
                raise SkipSample("image_too_large", f"{width}x{height} is more than {MAX_ASPECT}:1")
            image.load()  # Image.open only reads the header; truncation shows up here
            return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise SkipSample("image_too_large", str(error)) from None
    except (OSError, SyntaxError, ValueError, zlib.error, EOFError) as error:
        raise SkipSample("corrupt_image", f"{type(error).__name__}: {error}") from None


def decode_label(raw: RawSample) -> int:
    if "cls" not in raw:
        raise SkipSample("missing_label", f"no cls member (has {_members(raw)})")
    text = raw["cls"]
    match = _LABEL.fullmatch(text.strip())
    if match is None:  # stricter than int(): no "1_000", no non-ASCII digits, no floats
        raise SkipSample("bad_label", f"cls is not an ASCII integer: {text[:40]!r}")
    label = int(match.group(0))
    if label < 0:
        raise SkipSample("bad_label", f"cls is negative: {label}")
    if label > MAX_LABEL:  # would overflow the int64 label tensor (or is garbage)
        raise SkipSample("bad_label", f"cls {label} is larger than {MAX_LABEL}")
    return label


def decode_proxy(raw: RawSample) -> tuple[np.ndarray, np.ndarray, int]:
    missing = [name for name in PROXY_MEMBERS if name not in raw]
    if missing:
        raise SkipSample("missing_proxy", f"no {', '.join(missing)} member (has {_members(raw)}); "
                                          "build proxy shards with trainers.data.cache_proxy_codes")
    try:
        codes, codes_flip = decode_npy(raw["proxy.npy"]), decode_npy(raw["proxy_flip.npy"])
        size = int(raw["proxy_size"].decode("ascii").strip())
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as error:
        raise SkipSample("bad_proxy", f"{type(error).__name__}: {error}") from None
    for name, array in (("proxy.npy", codes), ("proxy_flip.npy", codes_flip)):
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise SkipSample("bad_proxy", f"{name} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if codes.size and min(int(codes.min()), int(codes_flip.min())) < 0:
        raise SkipSample("bad_proxy", "proxy codes must be >= 0 (they index the teacher's codebook)")
    if codes.shape != codes_flip.shape:
        raise SkipSample("bad_proxy", f"proxy.npy {codes.shape} and proxy_flip.npy {codes_flip.shape} differ")
    return codes, codes_flip, size


def decode_sample(raw: RawSample, with_proxy_codes: bool = False) -> Sample:
    """Check and decode one raw sample; cheap checks (members, label) run before image decoding."""
    ext = image_member(raw)
    label = decode_label(raw)
    proxy = decode_proxy(raw) if with_proxy_codes else (None, None, None)
    return Sample(raw["__key__"], decode_image(raw[ext]), label, *proxy)


def _members(raw: RawSample) -> str:
    return ", ".join(sorted(k for k in raw if not k.startswith("__"))) or "nothing"
