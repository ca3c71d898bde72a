"""Turn whatever a user uploads into the RGB square the model expects, or say plainly why not.

Every upload path in the app goes through :func:`load_image`, so the robustness rules live in one
place and tests can call them without a browser: refuse what cannot be an image (not an image,
truncated, absurd dimensions, too many bytes); convert what can (CMYK, 16-bit, float, palette,
alpha, animated, EXIF-rotated) and report each conversion in ``notes`` so the UI can show it.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; above this decoding alone needs hundreds of MB
MAX_SIDE = 16_384


class ImageInputError(ValueError):
    """An upload cannot be used as an image; the message is written for the person who uploaded it."""


@dataclass
class LoadedImage:
    """An upload decoded to 8-bit RGB, with what it was and what was done to it."""

    image: Image.Image
    source_size: tuple[int, int]
    source_mode: str
    source_format: str | None
    notes: list[str] = field(default_factory=list)  # conversions the user should know about
    resized_from: tuple[int, int] | None = None  # set by prepare_image when the crop changed the size

    def describe(self) -> str:
        """One line for a status box: source size and mode, and what preprocessing did."""
        w, h = self.source_size
        text = f"{w} x {h} {self.source_mode}" + (f" {self.source_format}" if self.source_format else "")
        if self.resized_from is not None:
            side = self.image.size[0]
            verb = "centre-cropped and resized" if self.resized_from[0] != self.resized_from[1] else "resized"
            text += f", {verb} to {side} x {side}"
        return text


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    if isinstance(source, bytes):
        if len(source) > MAX_FILE_BYTES:
            raise ImageInputError(f"{name}: {_fmt_bytes(len(source))} is larger than the {_fmt_bytes(MAX_FILE_BYTES)} limit")
        data = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageInputError(f"{name}: no such file")
        size = path.stat().st_size
        if size == 0:
            raise ImageInputError(f"{name}: the file is empty")
        if size > MAX_FILE_BYTES:
            raise ImageInputError(f"{name}: {_fmt_bytes(size)} is larger than the {_fmt_bytes(MAX_FILE_BYTES)} limit")
        data = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(f"{name}: the image dimensions are too large ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageInputError(f"{name}: not an image, or a format this app cannot read "
                              "(use PNG, JPEG, WebP, GIF, BMP or TIFF)") from err
    except OSError as err:
        raise ImageInputError(f"{name}: could not be read ({err})") from err


def _check_dimensions(im: Image.Image, name: str) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageInputError(f"{name}: the image has no pixels ({w} x {h})")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ImageInputError(f"{name}: {w} x {h} pixels is too large (limit {MAX_SIDE} px per side and "
                              f"{MAX_PIXELS / 1e6:.0f} megapixels); downscale it first")


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float greyscale -> 8-bit RGB by its own value range (PIL would clip)."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and arr.max(initial=0) <= 65535 and arr.min(initial=0) >= 0):
        scaled = arr / 65535.0
    else:
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    grey = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        notes.append(f"{'float' if mode == 'F' else 'high bit-depth'} greyscale ({mode}) scaled to 8-bit RGB")
        return _high_depth_to_rgb(im)
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB (colours are approximate without a colour profile)")
        return im.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        # Paste onto white through the alpha mask: one RGB canvas and one alpha plane, instead of
        # full-size RGBA copies for a composite (a 36 MP upload peaked at ~690 MB that way).
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            notes.append("transparent areas composited onto white")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=alpha)
        return canvas
    return im.convert("RGB")


def load_image(source: str | os.PathLike | bytes | Image.Image, name: str | None = None) -> LoadedImage:
    """Decode and validate an upload; raise :class:`ImageInputError` with a readable reason."""
    name = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else "upload")
    if isinstance(source, Image.Image):
        im = source
    else:
        im = _open(source, name)
    _check_dimensions(im, name)
    notes: list[str] = []
    source_mode, source_format, source_size = im.mode, im.format, im.size
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated image with {frames} frames: using the first frame")
        im.seek(0)
    try:
        im.load()
    except OSError as err:  # truncated or corrupt pixel data
        raise ImageInputError(f"{name}: the file is truncated or corrupt ({err})") from err
    except (Image.DecompressionBombError, ValueError) as err:
        raise ImageInputError(f"{name}: could not be decoded ({err})") from err
    try:
        transposed = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not make a good image unusable
        transposed = im
    if transposed is not None and transposed.size != im.size:
        notes.append("rotated according to its EXIF orientation")
    im = transposed if transposed is not None else im
    rgb = _to_rgb(im, notes)
    if rgb is im:
        rgb = im.copy()  # detach from the file handle
    return LoadedImage(rgb, source_size, source_mode, source_format, notes)


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Evaluation preprocessing of the official code: shorter side -> ``size`` (bicubic), centre crop."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    resized = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return resized.crop((left, top, left + size, top + size))


def prepare_image(source: str | os.PathLike | bytes | Image.Image, size: int, name: str | None = None) -> LoadedImage:
    """:func:`load_image` then :func:`center_crop_resize` (``resized_from`` records the size before)."""
    loaded = load_image(source, name)
    if loaded.image.size != (size, size):
        loaded.resized_from = loaded.image.size
    loaded.image = center_crop_resize(loaded.image, size)
    return loaded


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) float tensor in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8, rounded."""
    arr = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).cpu().numpy()


def image_digest(image: Image.Image) -> str:
    """Content hash of the pixels (not the file), so re-uploads of the same picture share a cache entry."""
    h = hashlib.sha1(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:20]
