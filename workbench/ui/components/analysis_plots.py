"""Plotly figures of the Codebook and Information screens.

Where :mod:`analysis.render` already draws a result (usage summary, codebook map, self-forcing gap)
its figure is reused; the figures here add what a screen compares side by side or makes clickable.
They only read reports, never compute.
"""
from __future__ import annotations

import base64
import math
from typing import Any
import numpy as np
import plotly.graph_objects as go
from gradio.components.plot import PlotData
from plotly.subplots import make_subplots

from analysis import CodebookEmbedding
from analysis.render import self_forcing_figure, umap_figure, usage_figure

from workbench.services.analyses import CodebookBook, InformationReport
from workbench.ui.components.plots import COLORS, as_plot

MARGIN = dict(l=55, r=25, t=70, b=45)
BELOW_AXES = 75  # px under the x-axis titles where a legend goes when subplot titles fill the space above


def _style(fig: go.Figure, height: int, legend_below: bool = False) -> go.Figure:
    """A legend above the plot shares the top margin with the title; side-by-side panels put their own titles
    there too, so they take the legend below the axes instead (it would cover the figure's title)."""
    if legend_below:
        plot_height = height - MARGIN["t"] - MARGIN["b"]
        legend = dict(orientation="h", y=-BELOW_AXES / plot_height, yanchor="top", x=0)
        fig.update_layout(height=height + BELOW_AXES, margin={**MARGIN, "b": MARGIN["b"] + BELOW_AXES})
    else:
        legend = dict(orientation="h", y=1.08, yanchor="bottom", x=0)
        fig.update_layout(height=height, margin=MARGIN)
    fig.update_layout(template="plotly_white", legend=legend)
    return fig


def json_safe(value: Any) -> Any:
    """Arrays as lists and NaN / inf as None (a gap in plotly), so the browser's JSON.parse accepts them.

    Plotly 6 stores numpy arrays as base64 typed arrays (``{"dtype", "bdata", "shape"}``); they are unpacked.
    """
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            arr = arr.reshape([int(n) for n in str(value["shape"]).split(",")])
        return json_safe(arr)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plot(fig: go.Figure, height: int, legend_below: bool = False) -> PlotData:
    """Styled and sent as plain JSON lists (``go.Figure.to_json`` would base64-pack numpy arrays)."""
    return as_plot(json_safe(_style(fig, height, legend_below).to_plotly_json()))


def usage_plot(book: CodebookBook) -> PlotData:
    """Rank-frequency of the codes, entropy and utilisation per position (the analysis report's figure)."""
    fig = usage_figure(book.stats, book.title)
    fig.update_layout(title_font_size=14)
    fig.update_annotations(font_size=12)  # the subplot titles
    return _plot(fig, 360)


def position_heatmap(book: CodebookBook, top: int = 48) -> PlotData:
    """Counts of the ``top`` most used codes at every position (log colour scale): which positions share codes.
    Where every position has its own codebook (ReVQ) no code is shared: each row is that position's own most used
    ids by rank, so the rows show how concentrated each position's usage is."""
    stats = book.stats
    positions = np.arange(stats.num_positions)
    if stats.per_position:
        k = stats.codes_per_position
        ids = np.arange(k)[None, :].repeat(stats.num_positions, 0)
        if k > top:  # a partial sort: ReVQ's books hold up to 262144 ids a position
            ids = np.argpartition(-stats.position_counts, top - 1, axis=1)[:, :top]
        counts = np.take_along_axis(stats.position_counts, ids, axis=1)
        order = np.argsort(-counts, axis=1, kind="stable")  # (P, top) local ids, most used first
        ids, counts = np.take_along_axis(ids, order, axis=1), np.take_along_axis(counts, order, axis=1)
        x = [str(r) for r in range(1, ids.shape[1] + 1)]
        codes = positions[:, None] * k + ids
        labels = np.char.add(np.char.add(codes.astype(str), " (id "), np.char.add(ids.astype(str), ")"))
        x_title = f"rank within the position's own codebook (its {ids.shape[1]} most used of {k} ids)"
    else:
        chosen = [c for c, _ in stats.most_used[:top]] or list(range(min(top, stats.codebook_size)))
        if len(chosen) < top:  # most_used keeps 20 by default: extend with the next most used codes
            order = np.argsort(-stats.counts, kind="stable")
            chosen = [int(c) for c in order[:top] if stats.counts[c] > 0] or chosen
        counts = stats.position_counts[:, chosen]
        x = [str(c) for c in chosen]
        labels = np.broadcast_to(np.array(x)[None, :], counts.shape)
        x_title = f"code (the {len(chosen)} most used, by rank)"
    where = ([f"cell ({p // book.grid_side}, {p % book.grid_side})" for p in positions] if book.grid_side
             else [f"token {p}" for p in positions])
    custom = np.stack([counts.astype(str), np.broadcast_to(np.array(where)[:, None], counts.shape), labels], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=np.log10(1 + counts), x=x, y=positions, customdata=custom, colorscale="Viridis",
        colorbar=dict(title="log10(1+n)"),
        hovertemplate="code %{customdata[2]}<br>%{customdata[1]}<br>count %{customdata[0]}<extra></extra>"))
    fig.update_xaxes(title_text=x_title, type="category", tickangle=-90, tickfont=dict(size=9))
    fig.update_yaxes(title_text="position", autorange="reversed")
    fig.update_layout(title=f"{book.title}: usage per position")
    return _plot(fig, 420)


def codebook_map(embedding: CodebookEmbedding, book: CodebookBook) -> PlotData:
    """The codebook UMAP coloured by usage, hover = code and count; SVG markers so clicks and headless
    browsers work (WebGL ``scattergl`` is not needed for a few thousand points)."""
    fig = umap_figure(embedding, book.map_counts, book.map_title)
    figure = _style(fig, 420).to_plotly_json()
    for trace in figure["data"]:
        trace["type"] = "scatter"
        trace["marker"]["size"] = 6 if embedding.coords.shape[0] <= 2048 else 4
        trace["marker"]["colorbar"] = dict(title="log10(1+count)")
    figure["layout"]["hovermode"] = "closest"
    figure["layout"]["clickmode"] = "event"
    return as_plot(json_safe(figure))


# -- information -----------------------------------------------------------------------------------
def mi_bars(report: InformationReport) -> PlotData:
    """Leave-one-out I(m_i; m_rest | Z_q) per measured slot, a bar per model, bootstrap CIs as error bars."""
    fig = go.Figure()
    for i, m in enumerate(report.models):
        loo = m.loo
        fig.add_trace(go.Bar(
            x=[str(p) for p in loo.positions], y=loo.bits, name=f"{m.label} (mean {loo.mean_bits:.3f})", marker_color=COLORS[i % len(COLORS)],
            error_y=dict(type="data", symmetric=False, array=loo.ci_high - loo.bits, arrayminus=loo.bits - loo.ci_low,
                         thickness=1, width=2),
            hovertemplate="slot %{x}<br>%{y:.3f} bits<extra>" + m.label + "</extra>"))
    conf = report.models[0].loo.confidence if report.models else 0.95
    fig.add_hline(y=0, line_color="#888", line_width=1)
    crowded = len(report.positions) > 16  # upright labels of more slots run into each other
    fig.update_xaxes(title_text="proxy slot", type="category", tickangle=-90 if crowded else 0,
                     tickfont=dict(size=9 if crowded else 12))
    fig.update_yaxes(title_text="bits")
    fig.update_layout(barmode="group", bargap=0.15, title=(
        f"Leave-one-out MI per slot ({len(report.positions)} of {report.num_slots} slots, {report.num_images} images, "
        f"{conf:.0%} bootstrap CI)"))
    return _plot(fig, 380, legend_below=True)  # above, two models' legend ran into the long title


def mi_grids(report: InformationReport) -> PlotData:
    """The same estimates on the proxy grid, one panel per model; unmeasured slots are blank."""
    side = int(round(math.sqrt(report.num_slots)))
    n = max(1, len(report.models))
    fig = make_subplots(rows=1, cols=n, subplot_titles=[m.label for m in report.models], horizontal_spacing=0.12)
    values = [m.loo.bits for m in report.models]
    finite = np.concatenate(values) if values else np.zeros(1)
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    for i, m in enumerate(report.models):
        grid = np.full(side * side, np.nan)
        grid[m.loo.positions] = m.loo.bits
        fig.add_trace(go.Heatmap(z=grid.reshape(side, side), zmin=-bound, zmax=bound, colorscale="RdBu_r",
                                 showscale=i == n - 1, colorbar=dict(title="bits"),
                                 hovertemplate="row %{y}, col %{x}<br>%{z:.3f} bits<extra></extra>"), 1, i + 1)
        fig.update_xaxes(range=[-0.5, side - 0.5], constrain="domain", row=1, col=i + 1)
        fig.update_yaxes(range=[side - 0.5, -0.5], constrain="domain", scaleanchor=f"x{'' if i == 0 else i + 1}",
                         row=1, col=i + 1)
    fig.update_layout(title="Leave-one-out MI on the proxy grid (blank = not measured)")
    return _plot(fig, 380)


def trajectory_plot(report: InformationReport) -> PlotData:
    """Per decode step: CE of the still-masked true codes with every slot masked, given the model's own
    committed codes, and given the teacher's codes at those slots; the information each gives (solid: own,
    dashed: teacher's); and the total correlation of the block committed in parallel."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=(
        "CE of still-masked true codes (bits/slot)", "information gain (bits/image)",
        "block total correlation (bits/image)"))
    for i, m in enumerate(report.models):
        color = COLORS[i % len(COLORS)]
        rows = m.trajectory.rows
        steps = [r.step + 1 for r in rows]
        fig.add_trace(go.Scatter(x=steps, y=[r.ce_context_free_bits for r in rows], name=f"{m.label}: all masked",
                                 mode="lines+markers", line=dict(color=color, dash="dot")), 1, 1)
        fig.add_trace(go.Scatter(x=steps, y=[r.ce_context_bits for r in rows], name=f"{m.label}: given its own codes",
                                 mode="lines+markers", line=dict(color=color)), 1, 1)
        fig.add_trace(go.Scatter(x=steps, y=[r.ce_teacher_context_bits for r in rows], mode="lines+markers",
                                 name=f"{m.label}: given the teacher's codes there", line=dict(color=color, dash="dash")),
                      1, 1)
        fig.add_trace(go.Scatter(x=steps, y=[r.info_gain_bits_per_image for r in rows], mode="lines+markers",
                                 line=dict(color=color), showlegend=False, name=f"{m.label}: own codes"), 1, 2)
        fig.add_trace(go.Scatter(x=steps, y=[r.teacher_gain_bits_per_image for r in rows], mode="lines+markers",
                                 line=dict(color=color, dash="dash"), showlegend=False,
                                 name=f"{m.label}: teacher's codes"), 1, 2)
        fig.add_trace(go.Scatter(x=steps, y=[r.block_tc_bits for r in rows], mode="lines+markers",
                                 line=dict(color=color), showlegend=False, name=m.label,
                                 error_y=dict(type="data", array=[0.0 if np.isnan(r.block_tc_sem) else r.block_tc_sem
                                                                  for r in rows], thickness=1)), 1, 3)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="decode step", dtick=1, row=1, col=col)
    fig.update_layout(title=f"Information along the decode trajectory ({report.num_steps} steps, "
                            f"temperature {report.temperature:g})")
    return _plot(fig, 400, legend_below=True)


def self_forcing_plot(report: InformationReport) -> PlotData:
    """KL between teacher-forced and self-forced predictions, and accuracies, per step and model."""
    fig = self_forcing_figure({m.label: m.gap for m in report.models},
                              "Self-forcing gap: predictions from own vs. teacher codes")
    for i, trace in enumerate(fig.data):
        trace.line.color = COLORS[(i // 3) % len(COLORS)]
    fig.update_xaxes(dtick=1)
    return _plot(fig, 380, legend_below=True)


def empty_plot(message: str) -> PlotData:
    """A blank figure carrying a short message (before anything has run)."""
    return as_plot({"data": [], "layout": {"template": "plotly_white", "height": 240, "xaxis": {"visible": False},
                                   "yaxis": {"visible": False},
                                   "annotations": [{"text": message, "showarrow": False, "font": {"size": 14}}]}})
