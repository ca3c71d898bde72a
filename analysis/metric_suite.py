"""The set of reconstruction metrics available on this machine: networks that have local weights.

LPIPS and rFID need weight files that cannot ship with the project. When one is missing the suite
still runs, without that metric, and ``skipped`` carries the message naming the file and where it
goes; nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from core.perceptual import MissingWeightsError, build_lpips

from .fid import FeatureFn, build_inception

PairMetric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # images in [0, 1] -> (B,)


@dataclass(frozen=True)
class MetricSuite:
    lpips: PairMetric | None = None
    inception: FeatureFn | None = None
    feature_dim: int = 2048
    skipped: Mapping[str, str] = field(default_factory=dict)


def wrap_lpips(model: torch.nn.Module) -> PairMetric:
    """An ``lpips.LPIPS`` (inputs in [-1, 1]) as a per-image distance on [0, 1] images."""

    @torch.no_grad()
    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x * 2 - 1, y * 2 - 1).flatten().float()

    return distance


def load_metric_suite(lpips: bool = True, fid: bool = True, lpips_net: str = "alex",
                      lpips_weights: str | os.PathLike | None = None,
                      inception_weights: str | os.PathLike | None = None,
                      device: str | torch.device = "cpu") -> MetricSuite:
    """Build the metrics whose weights exist locally; the others go to ``skipped`` with the reason.

    LPIPS uses AlexNet by default, as the official evaluation does.
    """
    skipped: dict[str, str] = {}
    lpips_fn = inception = None
    if lpips:
        try:
            lpips_fn = wrap_lpips(build_lpips(lpips_net, lpips_weights).to(device))
        except MissingWeightsError as err:
            skipped["lpips"] = str(err)
    else:
        skipped["lpips"] = "disabled"
    if fid:
        try:
            inception = build_inception(inception_weights, device)
        except MissingWeightsError as err:
            skipped["rfid"] = str(err)
    else:
        skipped["rfid"] = "disabled"
    return MetricSuite(lpips=lpips_fn, inception=inception, skipped=skipped)
