"""Figures and tables of the Train screen that compare runs: curves split into training and eval
panels, the eval-sample gallery at one step, and a sweep metric against its swept value."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
from gradio.components.plot import PlotData

from workbench.runs.records import RunRecord
from workbench.runs.store import Store
from workbench.services.run_results import eval_images, nearest_step, sample_columns
from workbench.ui.components.analysis_plots import empty_plot
from workbench.ui.components.plots import COLORS, as_plot, number_axis, training_curves

WAITING = "waiting for the first metrics"
CURVE_COLUMNS = ["run_id", "run_name", "key", "step", "value"]


def split_keys(keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training keys, eval keys): eval metrics get their own panel."""
    return [k for k in keys if not k.startswith("eval/")], [k for k in keys if k.startswith("eval/")]


def curves(store: Store, run_ids: Sequence[str], keys: Sequence[str], smoothing: float, title: str) -> PlotData:
    """One panel per key, one colour per run; a message instead of empty axes before the first point."""
    run_ids, keys = [r for r in run_ids if r], list(keys)
    if not run_ids:
        return empty_plot(f"{title}: choose a run")
    frame = store.compare(run_ids, keys, max_points=600, smoothing=smoothing) if keys else pd.DataFrame(
        columns=CURVE_COLUMNS)
    if not len(frame):
        return empty_plot(f"{title}: {WAITING}")
    return as_plot(training_curves(frame, keys, title))


def gallery_items(runs: Sequence[RunRecord], step: float | None) -> tuple[list[tuple[str, str]], list[int]]:
    """(images side by side: one per run at the eval step nearest ``step``, all steps any run has)."""
    per_run = [(run, eval_images(run.run_dir)) for run in runs]
    steps = sorted({s for _, images in per_run for s in images})
    items = []
    for run, images in per_run:
        shown = nearest_step(list(images), step)
        if shown is not None:
            items.append((str(images[shown]), f"{run.name or run.id} @ step {shown}: {sample_columns(run)}"))
    return items, steps


def sweep_plot(table: pd.DataFrame, swept: str, metric: str) -> PlotData:
    """A metric against the swept value, one point per run (numeric axes when the values are numbers)."""
    if table.empty or swept not in table or metric not in table:
        return empty_plot("choose a sweep, a swept field and a metric")
    data = table[[swept, metric, "run"]].dropna()
    if data.empty:
        return empty_plot(f"{metric}: {WAITING}")
    x = pd.to_numeric(data[swept], errors="coerce")
    # one distinct number has no scale to draw (plotly spans -1..1 around it): show it as a label instead
    numeric = bool(x.notna().all()) and x.nunique() > 1
    order = (x if numeric else data[swept]).argsort()
    figure: dict[str, Any] = {
        "data": [{"type": "scatter", "mode": "lines+markers",
                  "x": (x if numeric else data[swept].astype(str)).iloc[order].tolist(),
                  "y": data[metric].iloc[order].tolist(), "text": data["run"].iloc[order].tolist(),
                  "marker": {"size": 9, "color": COLORS[0]}, "hovertemplate": "%{text}<br>%{x}: %{y}<extra></extra>"}],
        "layout": {"template": "plotly_white", "height": 300, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
                   "title": {"text": f"{metric} against {swept}"}, "xaxis": {"title": {"text": swept},
                   **(number_axis(x) if numeric else {}),
                   "type": ("log" if (x > 0).all() and x.max() / max(x.min(), 1e-30) >= 100 else "linear")
                   if numeric else "category"},
                   "yaxis": {"title": {"text": metric}}}}
    return as_plot(figure)


def sample_slider(steps: Sequence[int], wanted: float | None) -> dict[str, Any]:
    """Slider settings over the eval steps that wrote samples, at the one nearest ``wanted``.

    The minimum stays 0: the browser may still hold an earlier value (1 on a fresh page) when the step list
    changes, and a value below the minimum is refused on the next event that reads the slider."""
    shown = nearest_step(list(steps), wanted)
    gap = math.gcd(*steps)  # every eval step is a multiple of it, so each one can be reached
    count = f"{len(steps)} evaluation{'s' if len(steps) != 1 else ''}"
    where = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}..{steps[-1]}"
    return {"minimum": 0, "maximum": max(steps[-1], 1), "value": shown, "step": max(1, gap),
            "label": f"Eval step ({count}: {where})"}
