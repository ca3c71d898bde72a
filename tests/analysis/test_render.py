"""Renderers turn result dataclasses into plotly figures holding exactly the result's numbers."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from analysis.model_mi import leave_one_out_mi
from analysis.render import loo_mi_figure, per_step_figure, step_sweep_figure, usage_figure
from analysis.steps import QualityRow, StepQuality
from analysis.usage import usage_from_counts

from .conftest import CopyLeftDecoder


def quality(rfid: float | None) -> StepQuality:
    rows = tuple(QualityRow(f"step {s + 1}/3", 3, s, 4, 1 - s / 3, 20.0 + s, 0.1, 0.5 + s / 10, 0.01, None, None, rfid)
                 for s in range(3))
    sweep = tuple(QualityRow(f"{n} steps", n, None, 4, None, 20.0 + n, 0.1, 0.6, 0.01) for n in (1, 2, 4))
    return StepQuality(rows, sweep, 3, 1.0, 0, 4)


def test_quality_figures_show_only_measured_metrics() -> None:
    fig = per_step_figure(quality(rfid=None))
    assert [a.text for a in fig.layout.annotations] == ["PSNR (dB)", "SSIM"]
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[0].y) == [20.0, 21.0, 22.0]
    with_fid = per_step_figure(quality(rfid=5.0))
    assert [a.text for a in with_fid.layout.annotations] == ["PSNR (dB)", "SSIM", "rFID"]
    sweep = step_sweep_figure(quality(None))
    assert list(sweep.data[0].x) == [1, 2, 4] and sweep.layout.xaxis.type == "log"


def test_usage_and_mi_figures() -> None:
    stats = usage_from_counts(np.array([[3, 1, 0, 0], [0, 1, 0, 2]]), 4)
    fig = usage_figure(stats, "book")
    assert "3/4 codes used" in fig.layout.title.text
    assert list(fig.data[0].y) == [3, 2, 2, 0]
    codes = np.zeros((2, 16), dtype=np.int64)
    res = leave_one_out_mi(CopyLeftDecoder(8, 8), torch.from_numpy(codes), torch.zeros(2, 1), 8, num_bootstrap=20)
    fig = loo_mi_figure(res)
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == 1 and np.asarray(heat[0].z).shape == (4, 4)
    assert np.asarray(heat[0].z)[0, 1] == res.bits[1]
