"""Model-free reference points for reconstruction PSNR, and a probe of what a model's features carry.

A tokenizer's PSNR on a new set of photos says little alone. Each image's ``s x s`` area average, upsampled
back bicubically, says what ``3 s^2`` numbers per image already reach (``s = 1``: the image's mean colour).
A ridge-regression probe from a model's features to those thumbnails says whether the features carry the
image's coarse layout: if the probe does no better than the mean colour, they do not (at least not linearly).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .image_metrics import psnr


def thumbnail(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, size, size) area averages of (B, 3, H, W) images."""
    return F.interpolate(images, size=size, mode="area")


def upsample(thumbnails: torch.Tensor, size: int) -> torch.Tensor:
    """Thumbnails back to ``size`` px: bicubic, clamped to [0, 1]; a 1x1 thumbnail fills the image."""
    if thumbnails.shape[-1] == 1:
        return thumbnails.clamp(0, 1).expand(-1, -1, size, size)
    return F.interpolate(thumbnails, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def thumbnail_psnr(images: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image PSNR (Y, as the evaluation) of the image rebuilt from its own ``size x size`` thumbnail."""
    return psnr(upsample(thumbnail(images, size), images.shape[-1]), images)


@dataclass(frozen=True)
class ThumbnailProbe:
    """Ridge regression from flat features (B, F) to flat thumbnails (B, 3 s^2)."""

    weight: torch.Tensor
    feature_mean: torch.Tensor
    target_mean: torch.Tensor
    size: int

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        flat = (features.flatten(1).double() - self.feature_mean) @ self.weight + self.target_mean
        return flat.float().view(features.shape[0], 3, self.size, self.size)

    def psnr(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR of the images rebuilt from the thumbnails the probe reads off their features."""
        return psnr(upsample(self.predict(features), images.shape[-1]), images)


def fit_thumbnail_probe(features: torch.Tensor, images: torch.Tensor, size: int, ridge: float = 10.0) -> ThumbnailProbe:
    """Fit the probe on (features, images) pairs; ``ridge`` keeps it stable with more features than images."""
    if features.shape[0] != images.shape[0]:
        raise ValueError(f"features: {features.shape[0]} rows for {images.shape[0]} images")
    x = features.flatten(1).double()
    y = thumbnail(images, size).flatten(1).double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    centred = x - x_mean
    gram = centred.T @ centred + ridge * torch.eye(centred.shape[1], dtype=torch.double)
    weight = torch.linalg.solve(gram, centred.T @ (y - y_mean))
    return ThumbnailProbe(weight, x_mean, y_mean, size)


__all__ = ["ThumbnailProbe", "fit_thumbnail_probe", "thumbnail", "thumbnail_psnr", "upsample"]
