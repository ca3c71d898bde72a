"""rFID with a pinned protocol: streaming Inception statistics and the Frechet distance.

Protocol (``FID_PROTOCOL``), chosen to match the official in-training evaluation:
1. Real images are the tokenizer's inputs: shorter side resized to the model's image size
   (PIL bicubic, antialiased) and centre-cropped; reconstructions are the model's outputs.
2. Both are clamped to [0, 1] and quantised to uint8 with round(255 x).
3. Features: torch-fidelity's ``FeatureExtractorInceptionV3`` ("inception-v3-compat"), 2048-d pool
   features, weights ``weights-inception-2015-12-05-6726825d.pth`` (the TF Inception of 2015-12-05
   used by TTUR / pytorch-fid, converted by torch-fidelity); it resizes to 299 x 299 with its
   TF1-compatible bilinear and scales (x - 128) / 128 internally; float32 inside the network.
4. Mean and unbiased covariance from float64 running sums; distance by torch-fidelity's
   ``fid_statistics_to_metric`` (eigenvalues of sigma1 @ sigma2). No precomputed reference
   statistics: reals and reconstructions of the same images are compared.
The weights are never downloaded: pass a path or put the file in the torch hub cache.
rFID on a few hundred images is strongly biased upwards; compare numbers only at equal image counts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.perceptual import find_local_weights

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
FID_PROTOCOL = ("inputs resized (shorter side, bicubic) + centre-cropped to the model size; clamp [0,1]; "
                "uint8 = round(255x); torch-fidelity inception-v3-compat 2048-d features "
                f"({INCEPTION_WEIGHTS_FILE}), TF1 bilinear resize to 299; float64 mean + unbiased covariance; "
                "torch-fidelity fid_statistics_to_metric")

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) -> (B, D) features


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 by round(255 x) after clamping (step 2 of the protocol)."""
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class FeatureStats:
    """Running mean and covariance of feature vectors in float64 (features are never stored)."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.count = 0
        self._sum = np.zeros(dim, dtype=np.float64)
        self._outer = np.zeros((dim, dim), dtype=np.float64)

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features: expected (B, {self.dim}), got {f.shape}")
        self.count += f.shape[0]
        self._sum += f.sum(axis=0)
        self._outer += f.T @ f

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self.count

    def state(self) -> dict[str, np.ndarray]:
        """The running sums as arrays (checkpoints, all-reduce across ranks)."""
        return {"sum": self._sum.copy(), "outer": self._outer.copy(), "count": np.array(self.count, np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if np.shape(state["sum"]) != (self.dim,):
            raise ValueError(f"feature statistics: expected dimension {self.dim}, got {np.shape(state['sum'])}")
        self._sum = np.array(state["sum"], np.float64)
        self._outer = np.array(state["outer"], np.float64)
        self.count = int(state["count"])

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased (N - 1) covariance, as ``np.cov``."""
        if self.count < 2:
            raise ValueError(f"covariance: needs at least 2 samples, got {self.count}")
        mu = self.mean
        return (self._outer - self.count * np.outer(mu, mu)) / (self.count - 1)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), computed by torch-fidelity's routine."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    stats = [{"mu": np.asarray(m, np.float64), "sigma": np.asarray(s, np.float64)} for m, s in ((mu1, sigma1), (mu2, sigma2))]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID])


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The local Inception weights file, or a MissingWeightsError saying which file goes where."""
    return find_local_weights(INCEPTION_WEIGHTS_FILE, path, "rFID",
                              f"torch-fidelity's Inception, published at {INCEPTION_WEIGHTS_URL}")


def inception_network(path: str | os.PathLike | None, outputs: list[str], device: str | torch.device = "cpu"
                      ) -> torch.nn.Module:
    """torch-fidelity's Inception with the named ``outputs`` ("2048", "logits_unbiased"), local weights only."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = find_inception_weights(path)
    # torch-fidelity reads the file with weights_only=False; refuse files that would run code first.
    torch.load(str(weights), map_location="cpu", weights_only=True)
    net = FeatureExtractorInceptionV3("inception-v3-compat", outputs, feature_extractor_weights_path=str(weights))
    return net.to(device).eval()


def build_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FeatureFn:
    """A uint8 -> (B, 2048) feature function from local weights only (step 3 of the protocol)."""
    net = inception_network(path, ["2048"], device)

    @torch.no_grad()
    def features(images_uint8: torch.Tensor) -> torch.Tensor:
        return net(images_uint8.to(device))[0].double()

    return features
