"""PSNR and SSIM on hand-checkable images, and SSIM against scikit-image's reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from analysis.image_metrics import psnr, rgb_to_y, ssim


def const(value: float, size: int = 16, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, 3, size, size), value)


def test_psnr_by_hand() -> None:
    # RGB: black vs 0.1 grey -> MSE 0.01 -> 20 dB.
    assert psnr(const(0.0), const(0.1), y_channel=False).item() == pytest.approx(20.0, abs=1e-4)
    # Y channel: grey g maps to 16/255 + g * 219/255, so the difference is 0.1 * 219/255.
    assert psnr(const(0.0), const(0.1)).item() == pytest.approx(-20 * math.log10(0.1 * 219 / 255), abs=1e-4)
    # Half the pixels off by 0.2 in one channel of three: MSE = 0.04 / 6.
    x = const(0.5)
    y = x.clone()
    y[:, 0, :8] += 0.2
    assert psnr(x, y, y_channel=False).item() == pytest.approx(10 * math.log10(6 / 0.04), abs=1e-4)
    same = psnr(x, x)
    assert same.item() == pytest.approx(100.0)  # MSE floor instead of inf
    assert psnr(const(0.0, batch=3), const(0.1, batch=3), y_channel=False).shape == (3,)


def test_rgb_to_y_matches_bt601_on_primaries() -> None:
    rgb = torch.eye(3).view(3, 3, 1, 1)
    y = rgb_to_y(rgb).flatten()
    assert y.tolist() == pytest.approx([(16 + 65.481) / 255, (16 + 128.553) / 255, (16 + 24.966) / 255])


def test_ssim_by_hand_and_against_skimage() -> None:
    # Constant images: variances and covariance are 0, SSIM is the luminance term alone.
    a, b = 0.2, 0.6
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1) * (c2 / c2)
    assert ssim(const(a), const(b), y_channel=False).item() == pytest.approx(expected, abs=1e-6)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = ssim(x, y, y_channel=False)
    for i in range(2):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy().astype(np.float64),
                                    y[i].permute(1, 2, 0).numpy().astype(np.float64), channel_axis=2,
                                    data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    ours_y = ssim(x, y)
    ref_y = structural_similarity(rgb_to_y(x)[0, 0].double().numpy(), rgb_to_y(y)[0, 0].double().numpy(),
                                  data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours_y[0].item() == pytest.approx(ref_y, abs=1e-5)
    assert ours_y[0].item() < 0.99 and ours[0].item() < ours_y[0].item()  # luma averages the channel noise


def test_metrics_reject_mismatched_or_tiny_images() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(const(0.0, 16), const(0.0, 17))
    with pytest.raises(ValueError, match="11x11"):
        ssim(const(0.0, 8), const(0.0, 8))
