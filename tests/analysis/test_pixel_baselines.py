"""Thumbnail baselines and the thumbnail probe on images whose answers are known by hand."""
from __future__ import annotations

import math

import pytest
import torch

from analysis.image_metrics import psnr
from analysis.pixel_baselines import fit_thumbnail_probe, thumbnail, thumbnail_psnr

LUMA = 219 / 255  # a grey step of d in [0, 1] is a step of LUMA * d in BT.601 Y


def halves(left: float, right: float, size: int = 16) -> torch.Tensor:
    """One grey image, ``left`` on its left half and ``right`` on its right half."""
    image = torch.full((1, 3, size, size), left)
    image[..., size // 2:] = right
    return image


def test_the_mean_colour_of_two_halves_misses_each_by_half_the_step() -> None:
    image = halves(0.2, 0.6)
    expected = -10 * math.log10((LUMA * 0.4 / 2) ** 2)  # every pixel is off by half the step
    assert thumbnail(image, 1).flatten().tolist() == pytest.approx([0.4] * 3)
    assert thumbnail_psnr(image, 1).item() == pytest.approx(expected, abs=1e-3)
    assert thumbnail_psnr(image, 16).item() == pytest.approx(100.0)  # full size: the image itself (MSE floor)
    assert thumbnail_psnr(halves(0.3, 0.3), 1).item() == pytest.approx(100.0)  # a flat image is its mean colour


def test_a_probe_of_features_that_hold_the_thumbnail_rebuilds_it() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(200, 3, 16, 16, generator=g)
    features = thumbnail(images, 2).flatten(1) * 3.0 - 1.0  # an affine copy of the 2x2 thumbnail
    probe = fit_thumbnail_probe(features[:150], images[:150], size=2, ridge=1e-8)
    held = probe.psnr(features[150:], images[150:])
    assert torch.allclose(held, thumbnail_psnr(images[150:], 2), atol=1e-3)


def test_a_probe_of_unrelated_features_falls_back_to_the_average_thumbnail() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(400, 3, 16, 16, generator=g) * 0.2 + torch.rand(400, 3, 1, 1, generator=g) * 0.8
    noise = torch.randn(400, 8, generator=g)
    probe = fit_thumbnail_probe(noise[:300], images[:300], size=2, ridge=1e3)  # strong ridge: about the mean
    average = thumbnail(images[:300], 2).mean(0, keepdim=True).expand(100, -1, -1, -1)
    fallback = psnr(torch.nn.functional.interpolate(average, size=16, mode="bicubic", align_corners=False), images[300:])
    assert probe.psnr(noise[300:], images[300:]).mean().item() == pytest.approx(fallback.mean().item(), abs=0.1)
    # the images' own mean colours are far better than anything the noise says
    assert thumbnail_psnr(images[300:], 1).mean() > probe.psnr(noise[300:], images[300:]).mean() + 3


def test_rows_must_match() -> None:
    with pytest.raises(ValueError, match="3 rows for 4 images"):
        fit_thumbnail_probe(torch.zeros(3, 5), torch.zeros(4, 3, 8, 8), size=1)
