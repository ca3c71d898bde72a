"""What the Reconstruct screen does, without Gradio: load a picture, decode it, edit its tokens.

Any tokenizer choice (``registry.tokenizer``): SFTok decodes in its steps, TiTok, ReVQ and the teacher in one
(:mod:`workbench.services.one_step`); token surgery edits any of them within its codebook.

Callbacks in ``workbench.ui.pages.reconstruct`` only translate widget values to these calls and the
results back to widgets, so everything here can be tested directly.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core import SFTok
from core.tokenizer import Tokenizer, as_tokenizer

from workbench.services.decoding import DecodeService, DecodeSettings, SettingsError
from workbench.io.images import ImageInputError, prepare_image
from workbench.services.traces import StepTrace


@dataclass(frozen=True)
class ImageChange:
    """How much an edit changed a decoded image, in 8-bit pixel values: "no effect" and "nothing happened" differ."""

    psnr_db: float  # of the edited decode against the unedited one; inf when identical
    max_abs_delta: int  # largest |after - before| over pixels and channels, 0..255
    changed_pixels: int  # pixels with any channel changed
    pixels: int

    @property
    def identical(self) -> bool:
        return self.max_abs_delta == 0


def image_change(before: np.ndarray, after: np.ndarray) -> ImageChange:
    """PSNR (peak 255) and largest absolute difference between two uint8 images of one shape."""
    if before.shape != after.shape:
        raise ValueError(f"images: shapes differ, {before.shape} against {after.shape}")
    delta = after.astype(np.int16) - before.astype(np.int16)
    mse = float(np.mean(delta.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
    changed = np.any(delta != 0, axis=-1) if delta.ndim == 3 else delta != 0
    return ImageChange(psnr, int(np.abs(delta).max(initial=0)), int(changed.sum()), int(changed.size))


@dataclass
class Reconstruction:
    """One decode ready for display: the cropped input, its trace and the cache key of the trace."""

    trace_key: str
    trace: StepTrace
    input_image: np.ndarray  # (H, W, 3) uint8, what the model saw
    encoded: tuple[int, ...]  # token ids from the encoder
    source: str = ""  # source size / mode and what preprocessing did, one line
    notes: list[str] = field(default_factory=list)  # conversions the user should be warned about
    edit_change: ImageChange | None = None  # with edited tokens: the final image against the unedited decode


def reconstruct_file(service: DecodeService, model_choice: str, source: str | Path, settings: DecodeSettings,
                     tokens: Sequence[int] | None = None, name: str | None = None) -> Reconstruction:
    """The complete :class:`Reconstruction` of :func:`reconstruct_file_stream`."""
    return deque(reconstruct_file_stream(service, model_choice, source, settings, tokens, name), maxlen=1)[0]


def reconstruct_file_stream(service: DecodeService, model_choice: str, source: str | Path, settings: DecodeSettings,
                            tokens: Sequence[int] | None = None, name: str | None = None) -> Iterator[Reconstruction]:
    """Load ``source`` (validated, centre-cropped to the model's size) and decode all steps, yielding the
    reconstruction after every step (its trace growing) and the complete one last.

    With ``tokens`` the encoder's ids are replaced (token surgery); ``encoded`` still reports the
    encoder's own ids so the UI can show what was edited, and the complete result says how the edit changed
    the image (the unedited decode runs first, unstreamed: it is usually cached already).
    """
    size = service.registry.tokenizer(model_choice).tokenizer.info.image_size
    loaded = prepare_image(source, size, name)

    def result(key: str, trace: StepTrace, encoded: tuple[int, ...], change: ImageChange | None = None
               ) -> Reconstruction:
        return Reconstruction(key, trace, np.asarray(loaded.image), encoded, loaded.describe(), loaded.notes, change)

    if tokens is None:
        for key, trace in service.reconstruct_stream(model_choice, loaded.image, settings):
            yield result(key, trace, tuple(int(t) for t in trace.tokens))
        return
    encoded_key, encoded_trace = service.reconstruct(model_choice, loaded.image, settings)
    encoded = tuple(int(t) for t in encoded_trace.tokens)
    if tuple(int(t) for t in tokens) == encoded:
        yield result(encoded_key, encoded_trace, encoded)
        return
    for key, trace in service.reconstruct_stream(model_choice, loaded.image, settings, tokens):
        yield result(key, trace, encoded, image_change(encoded_trace.final, trace.final) if trace.complete else None)


def edit_token(tokens: Sequence[int], position: int | float | None, code: int | float | None,
               codebook_size: int) -> tuple[int, ...]:
    """``tokens`` with one id replaced; positions and codes are checked and named in errors."""
    if position is None or code is None:
        raise SettingsError("token surgery: choose a position and a code")
    if float(position) != int(position) or not 0 <= int(position) < len(tokens):
        raise SettingsError(f"position: must be a whole number in 0..{len(tokens) - 1}, got {position}")
    if float(code) != int(code) or not 0 <= int(code) < codebook_size:
        raise SettingsError(f"code: must be a whole number in 0..{codebook_size - 1}, got {code}")
    out = [int(t) for t in tokens]
    out[int(position)] = int(code)
    return tuple(out)


@torch.no_grad()
def nearest_codes(model: Tokenizer | SFTok, code: int, k: int = 6, position: int = 0) -> list[tuple[int, float]]:
    """The ``k`` codewords most similar (cosine) to ``code``, excluding itself: gentle edits. A tokenizer with one
    codebook per token position (ReVQ) is searched in ``position``'s own."""
    book = as_tokenizer(model).codebook()
    if book.dim() == 3:
        if not 0 <= int(position) < book.shape[0]:
            raise SettingsError(f"position: must be in 0..{book.shape[0] - 1}, got {position}")
        book = book[int(position)]
    if not 0 <= int(code) < book.shape[0]:
        raise SettingsError(f"code: must be in 0..{book.shape[0] - 1}, got {code}")
    book = F.normalize(book.float(), dim=-1)
    sims = book @ book[int(code)]
    sims[int(code)] = -float("inf")
    values, ids = sims.topk(min(k, book.shape[0] - 1))
    return [(int(i), float(v)) for i, v in zip(ids, values)]


__all__ = ["ImageChange", "Reconstruction", "image_change", "reconstruct_file", "reconstruct_file_stream", "edit_token", "nearest_codes", "ImageInputError", "SettingsError"]
