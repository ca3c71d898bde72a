"""Does a class-conditional sample look like its class? A nearest-centroid check on colour histograms.

Without a trained classifier (none ships, nothing is downloaded) the cheapest honest judge of a
small generator is colour: each class's centroid is the mean joint RGB histogram of real images
of that class (passed through the same tokenizer, so both sides share its blur), and a sample
counts as matching when its histogram is closest to its own class's centroid. Chance is 1 / classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def colour_histograms(images: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> normalised joint RGB histograms (B, bins**3)."""
    q = (images.clamp(0, 1) * bins).long().clamp_(max=bins - 1)  # (B, 3, H, W) bin per channel
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # (B, H, W)
    hist = torch.zeros(images.shape[0], bins ** 3, dtype=torch.float64)
    hist.scatter_add_(1, index.flatten(1), torch.ones(index.flatten(1).shape, dtype=torch.float64))
    return hist / hist.sum(1, keepdim=True)


def chi2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise chi-squared distance between histogram rows: (N, K), (M, K) -> (N, M)."""
    num = (a[:, None] - b[None]) ** 2
    den = (a[:, None] + b[None]).clamp_min(1e-12)
    return 0.5 * (num / den).sum(-1)


@dataclass
class ClassMatch:
    accuracy: float  # fraction of samples nearest to their own class centroid
    chance: float
    per_class: list[float]  # accuracy of each class's samples
    predicted: list[int]  # nearest centroid of each sample


def class_match(samples: torch.Tensor, sample_classes: torch.Tensor, centroids: torch.Tensor) -> ClassMatch:
    """Score sample histograms (N, K) with classes (N,) against class centroids (C, K)."""
    predicted = chi2_distance(samples, centroids).argmin(1)
    hit = (predicted == sample_classes).double()
    per_class = [float(hit[sample_classes == c].mean()) if (sample_classes == c).any() else float("nan")
                 for c in range(centroids.shape[0])]
    return ClassMatch(float(hit.mean()), 1.0 / centroids.shape[0], per_class, predicted.tolist())
