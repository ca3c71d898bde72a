"""PSNR and SSIM per image, following the protocol of the official evaluation (pyiqa defaults).

Images are (B, 3, H, W) floats in [0, 1]. ``y_channel=True`` (the default, as the official
``VQGANEvaluator`` through pyiqa) compares the BT.601 luma Y = 16/255 + (65.481 R + 128.553 G +
24.966 B) / 255; ``y_channel=False`` compares RGB (SSIM averaged over the three channels).
SSIM is Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, statistics
over the valid region only (equal to scikit-image with ``gaussian_weights=True,
use_sample_covariance=False``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Identical images would give an infinite PSNR; the MSE floor caps them at 100 dB so means stay finite.
MSE_FLOOR = 1e-10


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma in [16/255, 235/255]."""
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255.0
    return (images * weights).sum(dim=1, keepdim=True) + 16.0 / 255.0


def _prepare(x: torch.Tensor, y: torch.Tensor, y_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair(x, y)
    x, y = x.double(), y.double()
    if y_channel and x.shape[1] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, y_channel: bool = True) -> torch.Tensor:
    """Per-image PSNR in dB, shape (B,)."""
    x, y = _prepare(x, y, y_channel)
    mse = (x - y).pow(2).flatten(1).mean(1).clamp(min=MSE_FLOOR)
    return (10.0 * torch.log10(data_range ** 2 / mse)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, y_channel: bool = True, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM, shape (B,), averaged over the valid window positions (and channels)."""
    x, y = _prepare(x, y, y_channel)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images: SSIM needs at least {win_size}x{win_size} pixels, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = gaussian_window(win_size, sigma).to(x.device)
    kernel_h = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    kernel_v = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kernel_h, groups=c), kernel_v, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).float()

