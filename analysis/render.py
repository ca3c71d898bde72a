"""Plotly figures of analysis results, shared by the CLI's HTML report and the workbench UI.

Renderers only read result dataclasses; they compute nothing that is not already in the result.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .umap_embedding import CodebookEmbedding
from .estimators import PairwiseMI
from .model_mi import LeaveOneOutMI, SelfForcingGap, TrajectoryInformation
from .steps import QualityRow, StepQuality
from .usage import UsageStats

QUALITY_METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS"), ("rfid", "rFID"))


def _quality_figure(rows: Sequence[QualityRow], x: Sequence[float], x_title: str, title: str, log_x: bool) -> go.Figure:
    shown = [(k, name) for k, name in QUALITY_METRICS if any(getattr(r, k) is not None for r in rows)]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=[name for _, name in shown])
    for col, (key, name) in enumerate(shown, start=1):
        y = [getattr(r, key) for r in rows]
        sem = getattr(rows[0], f"{key}_sem", None) if rows else None
        err = dict(type="data", array=[getattr(r, f"{key}_sem") for r in rows]) if sem is not None else None
        fig.add_trace(go.Scatter(x=list(x), y=y, mode="lines+markers", name=name, error_y=err, showlegend=False), 1, col)
        fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", row=1, col=col)
    fig.update_layout(title=title, height=340, margin=dict(t=70, b=40, l=50, r=20))
    return fig


def per_step_figure(result: StepQuality) -> go.Figure:
    """Quality of each step's soft preview along one N-step decode; dashed, the same passes with the teacher's
    codes at the committed slots, when measured."""
    steps = [r.step + 1 for r in result.per_step]
    fig = _quality_figure(result.per_step, steps, "decode step",
                          f"Quality after each step ({result.num_steps}-step decode, {result.num_images} images)", False)
    if result.teacher_context:
        shown = [k for k, _ in QUALITY_METRICS if any(getattr(r, k) is not None for r in result.per_step)]
        for col, key in enumerate(shown, start=1):
            fig.add_trace(go.Scatter(x=steps, y=[getattr(r, key) for r in result.teacher_context], mode="lines+markers",
                                     line=dict(dash="dash"), name="teacher's codes committed",
                                     showlegend=col == 1), 1, col)
    return fig


def step_sweep_figure(result: StepQuality) -> go.Figure:
    """The step ablation: final quality against the number of decode steps (log axis)."""
    return _quality_figure(result.sweep, [r.num_steps for r in result.sweep], "number of steps",
                           f"Step-count sweep ({result.num_images} images)", True)


RANK_POINTS = 2048  # a rank-frequency curve over more codes is drawn at this many log-spaced ranks


def usage_figure(stats: UsageStats, title: str = "Codebook usage") -> go.Figure:
    """Rank-frequency of code usage, and per-position entropy and utilisation."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "usage by rank", "entropy per position (bits)", "codes seen per position (fraction)"))
    ranked = np.sort(stats.counts)[::-1]
    ranks = np.arange(1, ranked.size + 1)
    if ranked.size > RANK_POINTS:  # ReVQ's millions of position-codes: log-spaced ranks draw the same curve
        used = max(2, stats.used_codes)
        ranks = np.unique(np.round(np.geomspace(1, used, RANK_POINTS)).astype(np.int64))
    fig.add_trace(go.Scatter(x=ranks, y=ranked[ranks - 1], mode="lines", name="count"), 1, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", title_text="rank", row=1, col=1)
    positions = np.arange(stats.num_positions)
    fig.add_trace(go.Bar(x=positions, y=stats.position_entropy_bits, name="entropy"), 1, 2)
    fig.add_hline(y=math.log2(stats.codes_per_position), line_dash="dot", row=1, col=2)  # a position's maximum
    fig.add_trace(go.Bar(x=positions, y=stats.position_utilisation, name="utilisation"), 1, 3)
    for col in (2, 3):
        fig.update_xaxes(title_text="position", row=1, col=col)
    codes = "position-codes" if stats.per_position else "codes"
    fig.update_layout(title=(f"{title}: {stats.used_codes}/{stats.codebook_size} {codes} used, "
                             f"entropy {stats.entropy_bits:.2f} bits, perplexity {stats.perplexity:.1f}"),
                      height=340, showlegend=False, margin=dict(t=70, b=40, l=50, r=20))
    return fig


def umap_figure(embedding: CodebookEmbedding, counts: np.ndarray | None = None, title: str = "Codebook UMAP") -> go.Figure:
    """Codebook vectors in 2-D, coloured by log10(1 + usage count) when counts are given."""
    codes = np.arange(embedding.coords.shape[0])
    marker: dict = dict(size=4)
    hover = "code %{customdata[0]}"
    custom = codes[:, None]
    if counts is not None:
        counts = np.asarray(counts)
        marker.update(color=np.log10(1 + counts), colorscale="Viridis", showscale=True,
                      colorbar=dict(title="log10(1+count)"))
        custom = np.stack([codes, counts], axis=1)
        hover += "<br>count %{customdata[1]}"
    fig = go.Figure(go.Scattergl(x=embedding.coords[:, 0], y=embedding.coords[:, 1], mode="markers", marker=marker,
                                 customdata=custom, hovertemplate=hover + "<extra></extra>"))
    fig.update_layout(title=title, height=520, xaxis_title="UMAP 1", yaxis_title="UMAP 2")
    return fig


def loo_mi_figure(result: LeaveOneOutMI, title: str = "Leave-one-out I(m_i; m_rest | Z_q)") -> go.Figure:
    """Per-position MI: a grid heat map when every slot of a square grid was measured, and a CI band."""
    side = int(round(math.sqrt(result.positions.size)))
    full_grid = side * side == result.positions.size and np.array_equal(result.positions, np.arange(side * side))
    fig = make_subplots(rows=1, cols=2 if full_grid else 1, subplot_titles=(
        ("bits per slot (grid)", "bits per slot with CI") if full_grid else ("bits per slot with CI",)))
    col = 1
    if full_grid:
        fig.add_trace(go.Heatmap(z=result.bits.reshape(side, side), colorscale="Magma", colorbar=dict(x=0.45)), 1, 1)
        fig.update_yaxes(autorange="reversed", row=1, col=1)
        col = 2
    x = result.positions
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([result.ci_high, result.ci_low[::-1]]),
                             fill="toself", line=dict(width=0), opacity=0.3, name=f"{result.confidence:.0%} CI"), 1, col)
    fig.add_trace(go.Scatter(x=x, y=result.bits, mode="lines", name="estimate"), 1, col)
    fig.update_xaxes(title_text="slot", row=1, col=col)
    fig.update_layout(title=(f"{title}: mean {result.mean_bits:.3f} bits "
                             f"[{result.mean_ci[0]:.3f}, {result.mean_ci[1]:.3f}] over {result.num_images} images"),
                      height=380, showlegend=False)
    return fig


def trajectory_figure(result: TrajectoryInformation, title: str = "Information along the decode trajectory") -> go.Figure:
    steps = [r.step + 1 for r in result.rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("CE of still-masked true codes (bits/slot)",
                                                        "bits per image"))
    fig.add_trace(go.Scatter(x=steps, y=[r.ce_context_free_bits for r in result.rows], name="all masked"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.ce_context_bits for r in result.rows], name="given own revealed"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.ce_teacher_context_bits for r in result.rows],
                             name="given teacher's codes there"), 1, 1)
    fig.add_trace(go.Bar(x=steps, y=[r.info_gain_bits_per_image for r in result.rows], name="info gain (own codes)"), 1, 2)
    fig.add_trace(go.Bar(x=steps, y=[r.teacher_gain_bits_per_image for r in result.rows],
                         name="info gain (teacher's codes)"), 1, 2)
    fig.add_trace(go.Bar(x=steps, y=[r.block_tc_bits for r in result.rows], name="block total correlation",
                         error_y=dict(type="data", array=[r.block_tc_sem for r in result.rows])), 1, 2)
    for col in (1, 2):
        fig.update_xaxes(title_text="decode step", row=1, col=col)
    fig.update_layout(title=f"{title} ({result.num_steps} steps, {result.num_images} images)", height=360,
                      barmode="group")
    return fig


def self_forcing_figure(gaps: Mapping[str, SelfForcingGap], title: str = "Self-forcing gap") -> go.Figure:
    """KL(teacher-context || own-context) and accuracies per step, one line per checkpoint."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("KL (bits/slot)", "revealed-slot accuracy",
                                                        "committed-slot accuracy"))
    for label, gap in gaps.items():
        steps = [r.step + 1 for r in gap.rows]
        for col, key in enumerate(("kl_bits", "revealed_accuracy", "committed_accuracy"), start=1):
            fig.add_trace(go.Scatter(x=steps, y=[getattr(r, key) for r in gap.rows], mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=col == 1), 1, col)
            fig.update_xaxes(title_text="decode step", row=1, col=col)
    fig.update_layout(title=title, height=360)
    return fig


def pairwise_mi_figure(result: PairwiseMI, title: str = "Token MI between positions") -> go.Figure:
    """Heat map of MI between positions (excess over the shuffle baseline when available)."""
    excess = result.shuffle_mean_bits is not None
    z = (result.excess_bits if excess else result.bits).copy()
    np.fill_diagonal(z, np.nan)
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis", colorbar=dict(title="bits")))
    fig.update_layout(title=f"{title} ({'minus shuffle baseline, ' if excess else ''}{result.num_samples} samples, "
                            f"{result.correction})", height=480, yaxis_autorange="reversed")
    return fig
