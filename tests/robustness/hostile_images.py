"""A generated corpus of hostile and unusual image files, each with what the app must do with it.

Every case is built in memory from a few lines of PIL/zlib (nothing is downloaded or checked in), so
the corpus documents itself: the name says what the file is, ``refusal`` is the phrase the error
must contain (``None`` = the image must load), and ``check`` (for loadable ones) asserts the decoded
8-bit RGB pixels are the right ones, not merely that something came out.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

Check = Callable[[np.ndarray], None]


@dataclass(frozen=True)
class Case:
    name: str  # file name, extension included (the extension may lie, as uploads do)
    data: bytes
    refusal: str | None = None  # a phrase the ImageInputError message must contain
    check: Check | None = None  # for accepted images: assertions on the (H, W, 3) uint8 result
    size: tuple[int, int] | None = None  # expected (width, height) after loading, before any crop
    stored_size: tuple[int, int] | None = None  # the file's own size when it differs (EXIF rotation)

    @property
    def reported_size(self) -> tuple[int, int] | None:
        """The size the app reports as the upload's: the stored one."""
        return self.stored_size or self.size


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_header(width: int, height: int, idat: bytes | None = None, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` but whose pixel data is ``idat`` (default: tiny)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gif_with_screen(width: int, height: int) -> bytes:
    """A one-pixel GIF frame on a logical screen of ``width`` x ``height``."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _uniform(colour: tuple[int, int, int], tol: int = 0) -> Check:
    def check(arr: np.ndarray) -> None:
        diff = np.abs(arr.astype(int) - np.array(colour)).max()
        assert diff <= tol, f"expected every pixel {colour} (+-{tol}), max deviation {diff}"
    return check


def _equals(expected: np.ndarray, tol: int = 0) -> Check:
    def check(arr: np.ndarray) -> None:
        assert arr.shape == expected.shape, f"shape {arr.shape} != {expected.shape}"
        diff = np.abs(arr.astype(int) - expected.astype(int)).max()
        assert diff <= tol, f"max pixel deviation {diff} > {tol}"
    return check


def _rows(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Check:
    def check(arr: np.ndarray) -> None:
        h = arr.shape[0]
        assert tuple(arr[0, 0]) == top and tuple(arr[h - 1, 0]) == bottom, (tuple(arr[0, 0]), tuple(arr[h - 1, 0]))
    return check


def build_corpus() -> list[Case]:
    """Every hostile input, refused ones first. Deterministic: the same bytes on every run."""
    noise = _noise(40, 60)
    png = _encode(Image.fromarray(noise), "PNG")
    jpeg = _encode(Image.fromarray(_noise(64, 96, 1)), "JPEG", quality=90)
    cases = [
        # -- refused: not an image at all ------------------------------------------------------------
        Case("zero_bytes.png", b"", refusal="empty"),
        Case("text_renamed.png", b"this is a text file, not a PNG\n" * 20, refusal="not an image"),
        Case("html_renamed.jpg", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
             refusal="not an image"),
        Case("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                            b'<rect width="64" height="64" fill="red"/></svg>', refusal="not an image"),
        Case("png_signature_only.png", b"\x89PNG\r\n\x1a\n", refusal="not an image"),
        Case("random_bytes.jpg", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             refusal="not an image"),
        # -- refused: damaged ------------------------------------------------------------------------
        Case("truncated_half.png", png[: len(png) // 2], refusal="truncated or corrupt"),
        Case("truncated_half.jpg", jpeg[: len(jpeg) // 2], refusal="truncated or corrupt"),
        Case("truncated_header.jpg", jpeg[:100], refusal="could not"),
        Case("png_bad_zlib.png", png_with_header(8, 8, idat=b"\x78\x9c" + b"\xff" * 40), refusal="corrupt"),
        Case("png_zero_size.png", png_with_header(0, 0), refusal="not an image"),
        # -- refused: dimensions (decided from the header, before any pixel is decoded) --------------
        Case("bomb_7000x7000_1bit.png", _encode(Image.new("1", (7000, 7000), 0), "PNG"), refusal="too large"),
        Case("header_20000x20000.png", png_with_header(20000, 20000), refusal="too large"),
        Case("header_20000x20.png", png_with_header(20000, 20), refusal="too large"),
        Case("gif_screen_65535.gif", gif_with_screen(65535, 65535), refusal="too large"),
        # -- accepted, converted ---------------------------------------------------------------------
        Case("plain.png", png, check=_equals(noise), size=(60, 40)),
        Case("one_pixel.png", _encode(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG"),
             check=_uniform((12, 34, 56)), size=(1, 1)),
        Case("cmyk.jpg", _encode(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=95),
             check=_uniform((255, 0, 0), tol=8), size=(32, 24)),
        Case("grey16.png", _encode(Image.fromarray(np.full((20, 20), 65535 // 4, np.uint16)), "PNG"),
             check=_uniform((64, 64, 64)), size=(20, 20)),
        Case("float32.tiff", _encode(Image.fromarray(np.tile(np.linspace(-1, 3, 16, dtype=np.float32), (8, 1))), "TIFF"),
             check=lambda a: (np.testing.assert_array_equal(a[0, [0, -1]], [[0, 0, 0], [255, 255, 255]]),
                              np.testing.assert_array_equal(np.diff(a[0, :, 0].astype(int)) >= 0, True)),
             size=(16, 8)),
        Case("palette.png", _encode(Image.new("RGB", (16, 16), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE),
                                     "PNG"),
             check=_uniform((0, 128, 255)), size=(16, 16)),
        Case("palette_transparent.png", _palette_with_transparency(), check=_rows((255, 0, 0), (255, 255, 255)),
             size=(16, 16)),
        Case("rgba_half_transparent.png", _rgba_half(), check=_rows((200, 0, 0), (255, 255, 255)), size=(16, 16)),
        Case("grey_alpha.png", _encode(Image.new("LA", (8, 8), (90, 255)), "PNG"), check=_uniform((90, 90, 90)),
             size=(8, 8)),
        Case("one_bit.png", _encode(Image.new("1", (8, 8), 1), "PNG"), check=_uniform((255, 255, 255)), size=(8, 8)),
        Case("animated.gif", _animated_gif(), check=_uniform((255, 0, 0)), size=(24, 24)),
        Case("exif_rotated.jpg", _exif_rotated(), check=_uniform((10, 20, 30), tol=4), size=(10, 30), stored_size=(30, 10)),
        Case("exif_garbage.jpg", _encode(Image.new("RGB", (12, 12), (0, 200, 0)), "JPEG", quality=95,
                                         exif=b"Exif\x00\x00" + b"\xff" * 64),
             check=_uniform((0, 200, 0), tol=6), size=(12, 12)),
        Case("trailing_garbage.png", png + b"\x00garbage" * 100, check=_equals(noise), size=(60, 40)),
        Case("png_named.jpg", png, check=_equals(noise), size=(60, 40)),
        Case("multipage.tiff", _multipage_tiff(), check=_uniform((0, 0, 255)), size=(10, 10)),
        Case("lossless.webp", _encode(Image.fromarray(noise), "WEBP", lossless=True), check=_equals(noise),
             size=(60, 40)),
        Case("plain.bmp", _encode(Image.fromarray(noise), "BMP"), check=_equals(noise), size=(60, 40)),
        Case("thin_4000x3.png", _encode(Image.new("RGB", (4000, 3), (7, 7, 7)), "PNG"),
             check=_uniform((7, 7, 7)), size=(4000, 3)),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def _palette_with_transparency() -> bytes:
    im = Image.new("P", (16, 16), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 8, 16, 16))
    return _encode(im, "PNG", transparency=1)


def _rgba_half() -> bytes:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255
    return _encode(Image.fromarray(rgba, "RGBA"), "PNG")


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    return _encode(Image.new("RGB", (30, 10), (10, 20, 30)), "JPEG", exif=exif)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (10, 10), (0, 0, 255)), Image.new("RGB", (10, 10), (255, 255, 0))]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def bomb_within_limits() -> bytes:
    """The largest image the app accepts, as a few-kB PNG: the bounded-memory case for a bomb."""
    return _encode(Image.new("1", (6000, 6000), 0), "PNG")
