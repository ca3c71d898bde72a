"""Checks on what callers hand a tokenizer: image batches and token ids, refused with a message that says what fits.

Every tokenizer family (SFTok, TiTok, ReVQ) reads images in [0, 1] and integer ids, so the checks live here once.
"""
from __future__ import annotations

import torch


class InputError(ValueError):
    """An input tensor has the wrong shape, dtype or range; the message says what was expected."""


def check_images(images: object, size: int) -> None:
    """Refuse anything but a finite float (B, 3, size, size) batch with values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise InputError(f"images: expected a float tensor in [0, 1], got dtype {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
        raise InputError(f"images: expected shape (B, 3, {size}, {size}), got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise InputError("images: contain NaN or Inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"images: values must lie in [0, 1] (got min {lo:.3f}, max {hi:.3f}); "
                         "convert uint8 with x / 255 and [-1, 1] data with (x + 1) / 2")


def check_token_ids(ids: object, num_tokens: int, codebook_size: int) -> torch.Tensor:
    """Accept (B, 1, N) or (B, N) integer ids in [0, codebook_size); return them as (B, N) int64."""
    n, k = num_tokens, codebook_size
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise InputError(f"token ids: expected an integer tensor, got {getattr(ids, 'dtype', type(ids).__name__)}")
    if ids.dim() == 3 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.dim() != 2 or ids.shape[1] != n:
        raise InputError(f"token ids: expected shape (B, {n}) or (B, 1, {n}), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
        raise InputError(f"token ids: values must lie in [0, {k}), got [{int(ids.min())}, {int(ids.max())}]")
    return ids.long()
